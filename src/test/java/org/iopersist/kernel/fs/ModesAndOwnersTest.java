package org.iopersist.kernel.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.ChildJvm;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.iopersist.testing.Trees;

/**
 * The modes and owners Linux gives what a VMM opens, checked at open (issue 16, bug 5): /dev/iommu
 * 0660 and /dev/vfio/devices/vfioN 0600, root's; /dev/vfio/vfio 0666; sysfs attributes 0444, 0644
 * when writable, handover blobs 0400; the guestmemfs mount root's 0755 and its files their creator's
 * 0600; a persisted context's node its owner's. Root passes every check. First in the kernel, with
 * processes of any uid and gid; then across the socket, from a real process of another uid.
 */
class ModesAndOwnersTest {
    private static final String CMDLINE = "guestmemfs=64M";

    @TempDir
    Path tmp;

    /** A path in the process's stack, where a libc would build it. */
    private static long path(final UserProcess p, final String s) {
        final byte[] b = (s + "\0").getBytes(StandardCharsets.UTF_8);
        p.mm().copyToUser(p.stackVa(), MemorySegment.ofArray(b), 0, b.length);
        return p.stackVa();
    }

    private static long open(final KernelRig rig, final UserProcess p, final String s, final int flags) {
        return rig.kernel.syscalls().call(p, Syscall.OPEN, path(p, s), flags, 0, 0, 0, 0);
    }

    private static void eacces(final long ret, final String what) {
        assertEquals(-Errno.EACCES.number, ret, what);
    }

    private static void opens(final long ret, final String what) {
        assertTrue(ret >= 0, what + ": " + (ret < 0 ? Errno.of((int) -ret) : ""));
    }

    @Test
    void modesAreCheckedAtOpenForEveryUidAndGid() throws Exception {
        try (KernelRig rig = KernelRig.boot(tmp.resolve("m"), MachineConfig.small(), CMDLINE);
             SyscallServer server = rig.kernel.serve(tmp.resolve("k.sock"))) {
            final UserProcess user = server.newProcess(1000, 1000);
            final UserProcess kvmGroup = server.newProcess(1000, 0);
            final UserProcess root = server.newProcess(0, 0);
            final int rw = Syscall.O_RDWR;
            // /dev/iommu: 0660 root:root, so the group may, others may not.
            eacces(open(rig, user, "/dev/iommu", rw), "/dev/iommu for another uid");
            opens(open(rig, kvmGroup, "/dev/iommu", rw), "/dev/iommu for its group");
            opens(open(rig, root, "/dev/iommu", rw), "/dev/iommu for root");
            // /dev/vfio/vfio: 0666.
            opens(open(rig, user, Vfio.CONTAINER_PATH, rw), Vfio.CONTAINER_PATH);
            // VFIO device cdevs: 0600 root:root, even for the group.
            eacces(open(rig, kvmGroup, Vfio.cdevPath(0), rw), "vfio0 for the group");
            eacces(open(rig, user, Vfio.cdevPath(0), Syscall.O_RDONLY), "vfio0 read-only");
            opens(open(rig, root, Vfio.cdevPath(0), rw), "vfio0 for root");
            // sysfs: 0444 read by all; 0644 written by root only; the handover 0400.
            opens(open(rig, user, "/sys/kernel/boot/kind", Syscall.O_RDONLY), "a 0444 attribute");
            opens(open(rig, user, "/sys/kernel/kho/finalize", Syscall.O_RDONLY), "reading a 0644 attribute");
            eacces(open(rig, user, "/sys/kernel/kho/finalize", Syscall.O_WRONLY), "writing a 0644 attribute");
            opens(open(rig, root, "/sys/kernel/kho/finalize", Syscall.O_WRONLY), "root writing it");
            eacces(open(rig, user, "/sys/kernel/kho/fdt", Syscall.O_RDONLY), "the 0400 handover");
            eacces(open(rig, root, "/sys/kernel/boot/kind", Syscall.O_WRONLY), "no store: not even root writes");
            // guestmemfs: the mount root's 0755; a file its creator's 0600.
            opens(open(rig, root, "/guestmemfs/vm0-ram", Syscall.O_CREAT | rw), "root creates");
            eacces(open(rig, user, "/guestmemfs/vm0-ram", Syscall.O_RDONLY), "another uid's 0600 file");
            eacces(open(rig, kvmGroup, "/guestmemfs/vm0-ram", Syscall.O_RDONLY), "0600 gives the group nothing");
            eacces(open(rig, user, "/guestmemfs/mine", Syscall.O_CREAT | rw), "creating in a 0755 root directory");
            eacces(rig.kernel.syscalls().call(user, Syscall.UNLINK, path(user, "/guestmemfs/vm0-ram"), 0, 0, 0, 0, 0),
                    "unlinking in it");
            assertEquals(-Errno.ENOENT.number, rig.kernel.syscalls().call(user, Syscall.UNLINK, path(user, "/guestmemfs/none"),
                    0, 0, 0, 0, 0), "the lookup fails before the permission check");
            assertEquals(-Errno.EEXIST.number, open(rig, user, "/guestmemfs/vm0-ram", Syscall.O_CREAT | Syscall.O_EXCL | rw),
                    "O_EXCL over an existing name");
            opens(open(rig, user, "/guestmemfs", Syscall.O_RDONLY | Syscall.O_DIRECTORY), "listing the mount");
            assertEquals(0, rig.kernel.syscalls().call(user, Syscall.STAT, path(user, "/guestmemfs/vm0-ram"),
                    user.stackVa() + 1024, 0, 0, 0, 0), "stat needs search on the directory only");
            // A file its owner made (as if the administrator had handed it over): the owner may.
            rig.kernel.guestmemfs().lookup("users", true, false, 1000);
            opens(open(rig, user, "/guestmemfs/users", rw), "the owner of a 0600 file");
            eacces(open(rig, server.newProcess(1001, 1000), "/guestmemfs/users", Syscall.O_RDONLY), "another uid of its group");
            opens(open(rig, user, "/proc/self/pagemap", Syscall.O_RDONLY), "pagemap");
        }
    }

    /** A process of another uid: tries each open and prints what it got, one line per path. */
    public static final class Probe {
        public static void main(final String[] args) throws Exception {
            try (KernelClient c = KernelClient.connect(Path.of(args[0]), Path.of(args[1]))) {
                System.out.println("uid " + c.uid());
                for (int i = 2; i + 1 < args.length; i += 2) {
                    final String path = args[i];
                    final int flags = Integer.parseInt(args[i + 1]);
                    try {
                        c.open(path, flags);
                        System.out.println(path + " " + flags + " ok");
                    } catch (ErrnoException e) {
                        System.out.println(path + " " + flags + " " + e.error());
                    }
                }
                try {
                    c.unlink("/guestmemfs/vm0-ram");
                    System.out.println("unlink ok");
                } catch (ErrnoException e) {
                    System.out.println("unlink " + e.error());
                }
            }
        }
    }

    @Test
    void aProcessOfAnotherUidMeetsTheModesThroughTheSocket() throws Exception {
        // setpriv needs CAP_SETUID: this runs where the suite runs as root (CI and the README set-up do).
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "a second real uid needs root to switch to it");
        final Path shared = Files.createTempDirectory("iopersist-modes");
        Files.setPosixFilePermissions(shared, PosixFilePermissions.fromString("rwxrwxrwx"));
        try (KernelRig rig = KernelRig.boot(shared.resolve("m"), MachineConfig.small(), CMDLINE);
             SyscallServer server = rig.kernel.serve(shared.resolve("k.sock"))) {
            Files.setPosixFilePermissions(shared.resolve("m"), PosixFilePermissions.fromString("rwxrwxrwx"));
            Files.setPosixFilePermissions(shared.resolve("m").resolve("memory"), PosixFilePermissions.fromString("rw-rw-rw-"));
            try (KernelClient vmm = KernelClient.connect(server.path(), shared.resolve("m").resolve("memory"))) {
                vmm.close(vmm.open("/guestmemfs/vm0-ram", Syscall.O_CREAT | Syscall.O_RDWR));
            }
            final String rw = Integer.toString(Syscall.O_RDWR);
            final String ro = Integer.toString(Syscall.O_RDONLY);
            final String wo = Integer.toString(Syscall.O_WRONLY);
            final List<String> args = new ArrayList<>(List.of(server.path().toString(), shared.resolve("m").resolve("memory").toString(),
                    "/dev/iommu", rw, Vfio.CONTAINER_PATH, rw, Vfio.cdevPath(0), rw, "/sys/kernel/kho/finalize", ro,
                    "/sys/kernel/kho/finalize", wo, "/sys/kernel/kho/fdt", ro, "/guestmemfs/vm0-ram", ro,
                    "/guestmemfs/new", Integer.toString(Syscall.O_CREAT | Syscall.O_RDWR), "/proc/self/pagemap", ro));
            try (ChildJvm child = ChildJvm.startAs("65534", shared.resolve("probe.log"), Probe.class, args.toArray(String[]::new))) {
                assertEquals(0, child.waitFor(60), child.output());
                final String out = child.output();
                assertTrue(out.contains("uid 65534"), out);
                for (String expect : List.of("/dev/iommu " + rw + " EACCES", Vfio.CONTAINER_PATH + " " + rw + " ok",
                        Vfio.cdevPath(0) + " " + rw + " EACCES", "/sys/kernel/kho/finalize " + ro + " ok",
                        "/sys/kernel/kho/finalize " + wo + " EACCES", "/sys/kernel/kho/fdt " + ro + " EACCES",
                        "/guestmemfs/vm0-ram " + ro + " EACCES", "/guestmemfs/new " + (Syscall.O_CREAT | Syscall.O_RDWR) + " EACCES",
                        "/proc/self/pagemap " + ro + " ok", "unlink EACCES")) {
                    assertTrue(out.contains(expect), "expected '" + expect + "' in:\n" + out);
                }
            }
            assertTrue(rig.kernel.guestmemfs().list().contains("vm0-ram"), "the file is still there");
        } finally {
            Trees.delete(shared);
        }
    }
}
