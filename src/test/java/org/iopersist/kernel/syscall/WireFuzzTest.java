package org.iopersist.kernel.syscall;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.init.Accounting;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommufd.IommufdFile;
import org.iopersist.testing.ChildJvm;
import org.iopersist.testing.Reach;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.Wire;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.iopersist.testing.Trees;

/**
 * The wire and the syscalls, fuzzed by real processes of another uid ({@link Fuzzer}, as uid 65534):
 * random syscall numbers with random arguments, pointers into their own memory and anywhere else,
 * ioctls with random commands and random structs of random sizes, paths that name every device,
 * sysfs file and filesystem the kernel has, {@code fail-nth} set at random, and now and then a
 * connection that sends garbage frames. Meanwhile a root VMM runs a device through its own context.
 * <ul>
 *   <li>the kernel stays up: no syscall of a well-formed frame loses its process, and no kernel thread
 *       dies of an exception;</li>
 *   <li>the VMM sees no change: its device never faults and its records are all in place, its
 *       context, mappings, guest RAM file and the live-update state are as before, and it still
 *       maps and unmaps;</li>
 *   <li>the books balance: after each fuzzing process exits (one at a time first), and after many at
 *       once, the kernel's {@link Accounting} is back at the baseline.</li>
 * </ul>
 * CI runs 12 processes one at a time and 3 × 6 at once, 400 calls each;
 * {@code -Diopersist.fuzz.full=true} runs 60 and 4 × 40.
 */
class WireFuzzTest {
    private static final long MIB = 1L << 20;
    private static final boolean FULL = Boolean.getBoolean("iopersist.fuzz.full");

    @TempDir
    Path dir;

    /**
     * A fuzzing process: {@code Fuzzer SOCKET MEMORY SEED PROCESSES CALLS SERIAL}. Each of its
     * PROCESSES connections is one process of the kernel's; with SERIAL it prints {@code exited N}
     * after each and waits for a line on stdin. Prints {@code lost N} if the kernel dropped a
     * connection that sent only well-formed frames.
     */
    public static final class Fuzzer {
        static final String[] PATHS = {"/dev/iommu", "/dev/vfio/devices/vfio0", "/dev/vfio/devices/vfio1",
            "/dev/vfio/devices/vfio7", "/sys/kernel/kho/finalize", "/sys/kernel/kho/fdt", "/sys/kernel/liveupdate/finish",
            "/sys/kernel/liveupdate/state", "/sys/kernel/mm/frames/free", "/sys/kernel/boot/kind", "/proc/thread-self/fail-nth",
            "/proc/self/pagemap", "/guestmemfs", "/guestmemfs/victim", "/guestmemfs/fz", "/guestmemfs/../x",
            "/sys/kernel/iommufd_persisted/1/iommufd", "/sys", "/", "", "relative", "/dev/iommu\u0000tail",
            "/sys/bus/pci/devices/0000:00:02.0/vfio-dev/vfio0/dev"};
        static final int[] NRS = {Syscall.READ, Syscall.WRITE, Syscall.OPEN, Syscall.CLOSE, Syscall.STAT, Syscall.FSTAT,
            Syscall.LSEEK, Syscall.MMAP, Syscall.MUNMAP, Syscall.IOCTL, Syscall.PREAD64, Syscall.PWRITE64, Syscall.GETPID,
            Syscall.FTRUNCATE, Syscall.GETDENTS64, Syscall.STATFS, Syscall.MKDIR, Syscall.UNLINK, Syscall.GETUID,
            Syscall.REBOOT, Syscall.KEXEC_LOAD, Syscall.MEMFD_CREATE};
        static final int[] CMDS = {Iommufd.IOMMU_DESTROY, Iommufd.IOMMU_IOAS_ALLOC, Iommufd.IOMMU_IOAS_ALLOW_IOVAS,
            Iommufd.IOMMU_IOAS_COPY, Iommufd.IOMMU_IOAS_IOVA_RANGES, Iommufd.IOMMU_IOAS_MAP, Iommufd.IOMMU_IOAS_UNMAP,
            Iommufd.IOMMU_OPTION, Iommufd.IOMMU_VFIO_IOAS, Iommufd.IOMMU_HWPT_ALLOC, Iommufd.IOMMU_GET_HW_INFO,
            Iommufd.IOMMU_IOAS_MAP_FILE, Vfio.VFIO_DEVICE_BIND_IOMMUFD, Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
            Vfio.VFIO_DEVICE_DETACH_IOMMUFD_PT};

        public static void main(final String[] args) throws Exception {
            final Path sock = Path.of(args[0]);
            final Path memory = Path.of(args[1]);
            final long seed = Long.parseLong(args[2]);
            final int processes = Integer.parseInt(args[3]);
            final int calls = Integer.parseInt(args[4]);
            final boolean serial = Boolean.parseBoolean(args[5]);
            final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            for (int i = 0; i < processes; i++) {
                final SplittableRandom rng = new SplittableRandom(seed * 7919 + i);
                if (rng.nextInt(8) == 0) {
                    garbage(sock, rng);
                } else if (!oneProcess(sock, memory, rng, calls)) {
                    System.out.println("lost " + i);
                }
                if (serial) {
                    System.out.println("exited " + i);
                    System.out.flush();
                    in.readLine();
                }
            }
            System.out.println("fuzzer done");
        }

        /** A process that sends frames of random length and content: the kernel may drop it, nothing more. */
        static void garbage(final Path sock, final SplittableRandom rng) {
            try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                ch.connect(UnixDomainSocketAddress.of(sock));
                Wire.readHello(ch, Wire.buffer(Wire.MAX_HELLO));
                final ByteBuffer b = ByteBuffer.allocate(256).order(ByteOrder.LITTLE_ENDIAN);
                for (int f = 0; f < 1 + rng.nextInt(8); f++) {
                    b.clear();
                    b.putInt(rng.nextBoolean() ? Wire.REQUEST_SIZE : rng.nextInt());
                    while (b.hasRemaining()) {
                        b.put((byte) rng.nextInt());
                    }
                    b.flip().limit(1 + rng.nextInt(256));
                    ch.write(b);
                }
                ch.shutdownOutput();
                final ByteBuffer sink = ByteBuffer.allocate(256);
                while (ch.read(sink.clear()) >= 0) {
                    // the kernel answers or drops it
                }
            } catch (java.io.IOException e) {
                // dropped: fine for garbage
            }
        }

        /** Random well-formed syscalls; false if the kernel dropped the connection. */
        static boolean oneProcess(final Path sock, final Path memory, final SplittableRandom rng, final int calls) throws Exception {
            try (KernelClient c = KernelClient.connect(sock, memory)) {
                final long buf = c.mmapAnonymous(64 * 1024);
                final long[] vas = {buf, c.scratch(), 0, -1L, 0x7000_0000_0000L, rng.nextLong()};
                for (int k = 0; k < calls; k++) {
                    try {
                        call(c, rng, buf, vas);
                    } catch (IllegalStateException lost) {
                        return false;
                    } catch (IllegalArgumentException segv) {
                        // it unmapped its own buffer, then touched it: a SIGSEGV, the process goes on regardless
                    } catch (org.iopersist.uapi.ErrnoException libc) {
                        // the client library's own call failed (fail-nth hit its pagemap read): as a libc error
                    }
                }
            }
            return true;
        }

        private static long ptr(final SplittableRandom rng, final long buf, final long[] vas) {
            return switch (rng.nextInt(6)) {
                case 0, 1, 2 -> buf + rng.nextInt(60 * 1024);
                case 3 -> vas[1] + rng.nextInt(60 * 1024);
                default -> vas[rng.nextInt(vas.length)];
            };
        }

        /** A descriptor: mostly one this process has open, sometimes any small number. */
        private static long fd(final SplittableRandom rng) {
            return rng.nextInt(4) == 0 ? rng.nextInt(-1, 12) : rng.nextInt(3, 12);
        }

        private static long small(final SplittableRandom rng) {
            return rng.nextInt(-2, 12);
        }

        private static void call(final KernelClient c, final SplittableRandom rng, final long buf, final long[] vas) {
            if (rng.nextInt(40) == 0) {
                // fail_nth now and then: the error paths of whatever comes next.
                c.memory().writeBytes(buf, (Integer.toString(1 + rng.nextInt(20)) + "\0").getBytes(StandardCharsets.US_ASCII));
                final long fd = c.syscall(Syscall.OPEN, writePath(c, buf + 4096, "/proc/thread-self/fail-nth"), Syscall.O_RDWR);
                if (fd >= 0) {
                    c.syscall(Syscall.WRITE, fd, buf, 2);
                    c.syscall(Syscall.CLOSE, fd);
                }
                return;
            }
            if (rng.nextInt(20) == 0) {
                // A poke at a file a process may not write: open it writable, write a value, close.
                final String[] files = {"/sys/kernel/kho/finalize", "/sys/kernel/liveupdate/finish", "/proc/thread-self/fail-nth",
                    "/sys/kernel/liveupdate/state", "/guestmemfs/victim"};
                final long fd = c.syscall(Syscall.OPEN, writePath(c, buf + 4096, files[rng.nextInt(files.length)]),
                        rng.nextBoolean() ? Syscall.O_WRONLY : Syscall.O_RDWR);
                if (fd >= 0) {
                    c.memory().writeBytes(buf + 8192, new byte[] {(byte) (rng.nextBoolean() ? '1' : '0')});
                    c.syscall(Syscall.WRITE, fd, buf + 8192, 1);
                    c.syscall(Syscall.CLOSE, fd);
                }
                return;
            }
            final int nr = rng.nextInt(10) == 0 ? rng.nextInt(-5, 500) : NRS[rng.nextInt(NRS.length)];
            final long[] a = new long[6];
            for (int i = 0; i < 6; i++) {
                a[i] = rng.nextBoolean() ? small(rng) : rng.nextBoolean() ? ptr(rng, buf, vas) : rng.nextLong();
            }
            switch (nr) {
                case Syscall.OPEN, Syscall.STAT, Syscall.STATFS, Syscall.UNLINK, Syscall.MEMFD_CREATE, Syscall.KEXEC_LOAD -> {
                    a[0] = rng.nextInt(5) == 0 ? ptr(rng, buf, vas) : writePath(c, buf + 4096,
                            rng.nextInt(6) == 0 ? randomString(rng) : PATHS[rng.nextInt(PATHS.length)]);
                    a[1] = nr == Syscall.OPEN ? new long[] {Syscall.O_RDONLY, Syscall.O_WRONLY, Syscall.O_RDWR,
                        Syscall.O_RDWR | Syscall.O_CREAT, Syscall.O_RDWR | Syscall.O_CREAT | Syscall.O_EXCL, Syscall.O_DIRECTORY,
                        rng.nextInt()}[rng.nextInt(7)] : nr == Syscall.STAT || nr == Syscall.STATFS ? ptr(rng, buf, vas) : a[1];
                }
                case Syscall.IOCTL -> {
                    a[0] = fd(rng);
                    a[1] = rng.nextInt(8) == 0 ? rng.nextInt() : CMDS[rng.nextInt(CMDS.length)];
                    a[2] = rng.nextInt(6) == 0 ? ptr(rng, buf, vas) : buf;
                    randomStruct(c, rng, buf, vas);
                }
                case Syscall.MMAP -> {
                    a[0] = rng.nextInt(4) == 0 ? ptr(rng, buf, vas) & ~0xFFFL : 0;
                    a[1] = new long[] {4096, 8192, 2 * MIB, 0, -1, rng.nextInt(1 << 24)}[rng.nextInt(6)];
                    a[2] = rng.nextInt(4);
                    a[3] = new long[] {Syscall.MAP_PRIVATE | Syscall.MAP_ANONYMOUS, Syscall.MAP_SHARED, Syscall.MAP_SHARED
                        | Syscall.MAP_FIXED, rng.nextInt()}[rng.nextInt(4)];
                    a[4] = fd(rng);
                    a[5] = rng.nextBoolean() ? 0 : rng.nextInt(1 << 24) & ~0xFFF;
                }
                case Syscall.READ, Syscall.WRITE, Syscall.PREAD64, Syscall.PWRITE64, Syscall.GETDENTS64 -> {
                    a[0] = fd(rng);
                    a[1] = rng.nextBoolean() ? buf + 8192 : ptr(rng, buf, vas);
                    a[2] = new long[] {0, 1, 2, 8, 64, 4096, 1 << 20, -1, rng.nextInt()}[rng.nextInt(9)];
                    c.memory().writeBytes(buf + 8192, new String[] {"1", "0", "1\n", "x", "99"}[rng.nextInt(5)]
                            .getBytes(StandardCharsets.US_ASCII));
                }
                case Syscall.CLOSE, Syscall.FTRUNCATE, Syscall.LSEEK -> a[0] = fd(rng);
                case Syscall.REBOOT -> {
                    a[0] = Syscall.LINUX_REBOOT_MAGIC1;
                    a[1] = Syscall.LINUX_REBOOT_MAGIC2;
                    a[2] = Syscall.LINUX_REBOOT_CMD_KEXEC;
                }
                default -> {
                    // as drawn
                }
            }
            if (nr == Syscall.MUNMAP && Long.compareUnsigned(a[0], c.scratch() + c.scratchLength()) < 0
                    && Long.compareUnsigned(c.scratch(), a[0] + a[1]) < 0) {
                return; // its own stack: a real process would not live to make its next call
            }
            c.syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        }

        private static String randomString(final SplittableRandom rng) {
            final StringBuilder b = new StringBuilder();
            for (int i = 0; i < rng.nextInt(80); i++) {
                b.append((char) rng.nextInt(1, 128));
            }
            return b.toString();
        }

        private static long writePath(final KernelClient c, final long va, final String path) {
            c.memory().writeBytes(va, (path + "\0").getBytes(StandardCharsets.UTF_8));
            return va;
        }

        /** A struct of a random size and random fields, most of them small ids, page-aligned IOVAs or own addresses. */
        private static void randomStruct(final KernelClient c, final SplittableRandom rng, final long buf, final long[] vas) {
            final int size = new int[] {0, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64, 80, 4096, rng.nextInt()}[rng.nextInt(14)];
            final ByteBuffer b = ByteBuffer.allocate(96).order(ByteOrder.LITTLE_ENDIAN);
            b.putInt(size);
            while (b.remaining() >= 8) {
                switch (rng.nextInt(5)) {
                    case 0 -> b.putInt(rng.nextInt(0, 6)).putInt(rng.nextInt(0, 6));
                    case 1 -> b.putLong(rng.nextInt(0, 64) * 4096L);
                    case 2 -> b.putLong(ptr(rng, buf, vas) & ~0xFFFL);
                    case 3 -> b.putLong(0);
                    default -> b.putLong(rng.nextLong());
                }
            }
            c.memory().writeBytes(buf, b.array());
        }
    }

    @Test
    void randomProcessesLeaveTheKernelUpTheVmmUntouchedAndTheBooksBalanced() throws Exception {
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "a second real uid needs root to switch to it");
        final List<Throwable> died = new CopyOnWriteArrayList<>();
        final Thread.UncaughtExceptionHandler before = Thread.getDefaultUncaughtExceptionHandler();
        Thread.setDefaultUncaughtExceptionHandler((t, e) -> died.add(new AssertionError("thread " + t.getName() + " died", e)));
        final Path shared = Files.createTempDirectory("iopersist-fuzz");
        try {
            Files.setPosixFilePermissions(shared, PosixFilePermissions.fromString("rwxrwxrwx"));
            fuzz(shared, died);
        } finally {
            Thread.setDefaultUncaughtExceptionHandler(before);
            Trees.delete(shared);
        }
    }

    private void fuzz(final Path shared, final List<Throwable> died) throws Exception {
        final Path mdir = shared.resolve("m");
        try (Machine m = Machine.create(mdir, MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            Files.setPosixFilePermissions(mdir, PosixFilePermissions.fromString("rwxrwxrwx"));
            Files.setPosixFilePermissions(mdir.resolve("memory"), PosixFilePermissions.fromString("rw-rw-rw-"));
            Files.writeString(mdir.resolve("boot").resolve(Kernel.CMDLINE_FILE), "guestmemfs=32M liveupdate.finish_timeout=0 page_poison=on");
            final Kernel k = Kernel.boot(m.board());
            final SyscallServer server = k.serve(shared.resolve("k.sock"));
            final DeviceBar bar = new DeviceBar(m.board().deviceBar(0));
            try (KernelClient vmm = KernelClient.connect(server.path(), mdir.resolve("memory"))) {
                // The VMM: its guest RAM, a context mapping it, device 0 writing records through it.
                final GuestRam ram = GuestRam.create(vmm, "victim", 8 * MIB);
                final IommufdHandle fd = IommufdHandle.open(vmm);
                final int ioas = fd.ioasAlloc();
                fd.mapFixed(ioas, ram.va(), ram.size(), 0);
                final VfioDeviceHandle d0 = VfioDeviceHandle.open(vmm, 0);
                d0.bind(fd);
                d0.attach(ioas);
                bar.start(WorkloadSettings.writeVerify(MIB, 2 * MIB, 512, 3).withPace(50_000));
                bar.awaitSeq(100);
                final IommufdHandle probe = fd;
                final String vmmBefore = vmmState(server, vmm, probe, ioas);
                final IommuDevice dev0 = k.iommu().devices().get(0);
                final long pgd = k.iommu().domainOf(dev0).ops().handoverKey();
                final Accounting baseline = k.accounting();
                final int serial = FULL ? 60 : 12;
                final int calls = FULL ? 1000 : 400;
                // One process at a time: the books after each exit.
                try (ChildJvm f = ChildJvm.startAs("65534", dir.resolve("fuzz-serial.log"), Fuzzer.class, server.path().toString(),
                        mdir.resolve("memory").toString(), "1", Integer.toString(serial), Integer.toString(calls), "true")) {
                    for (int i = 0; i < serial; i++) {
                        await(f, "exited " + i);
                        final List<String> leaks = settled(k, baseline);
                        assertEquals(List.of(), leaks, "after fuzzing process " + i + " exited; log:\n" + tail(f));
                        f.process().getOutputStream().write('\n');
                        f.process().getOutputStream().flush();
                    }
                    assertEquals(0, f.waitFor(120), f.output());
                    assertTrue(!f.output().contains("lost"), "the kernel dropped a well-formed process:\n" + f.output());
                }
                // Many at once.
                final List<ChildJvm> burst = new ArrayList<>();
                try {
                    for (int j = 0; j < (FULL ? 4 : 3); j++) {
                        burst.add(ChildJvm.startAs("65534", dir.resolve("fuzz-" + j + ".log"), Fuzzer.class, server.path().toString(),
                                mdir.resolve("memory").toString(), Integer.toString(100 + j), Integer.toString(FULL ? 40 : 6),
                                Integer.toString(calls), "false"));
                    }
                    for (ChildJvm f : burst) {
                        assertEquals(0, f.waitFor(300), f.output());
                        assertTrue(!f.output().contains("lost"), "the kernel dropped a well-formed process:\n" + f.output());
                    }
                } finally {
                    burst.forEach(ChildJvm::close);
                }
                assertEquals(List.of(), settled(k, baseline), "after the burst");
                assertEquals(List.of(), died, "kernel threads that died");
                // The VMM saw no change.
                bar.awaitSeq(bar.counters().nextSeq() + 100);
                bar.stop();
                assertEquals(0, bar.counters().faults(), bar.counters().toString());
                assertEquals(0, bar.counters().corrupt(), bar.counters().toString());
                assertEquals(pgd, k.iommu().domainOf(dev0).ops().handoverKey(), "device 0 on its tables");
                assertTrue(new RecordChecker(m.board().memory()).check(bar.window(), iova -> k.iommu().domainOf(dev0).iovaToPhys(iova))
                        .clean());
                assertEquals(vmmBefore, vmmState(server, vmm, probe, ioas));
                final int scratchIoas = probe.ioasAlloc();
                probe.mapFixed(scratchIoas, ram.va(), 2 * MIB, 0);
                assertEquals(2 * MIB, probe.unmap(scratchIoas, 0, 2 * MIB));
                probe.destroy(scratchIoas);
                assertEquals(List.of(), DeviceStates.halfStates(k));
                assertEquals(List.of(), Reach.freeButReachable(m.board(), k.frames()::isFree, 10));
            } finally {
                bar.stop();
                server.close();
            }
        }
    }

    /**
     * A process that runs out of descriptors gets EMFILE, and what it opened last is released, not
     * kept: a restarted VMM whose reopen of its persisted iommufd finds no free descriptor can close
     * one and reopen it (were the context handed to it without a descriptor, nobody could ever reach
     * it again: EBUSY for good).
     */
    @Test
    void aFullDescriptorTableReleasesWhatItCouldNotInstall() throws Exception {
        final Path mdir = dir.resolve("m");
        try (Machine m = Machine.create(mdir, MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            Files.writeString(mdir.resolve("boot").resolve(Kernel.CMDLINE_FILE), "guestmemfs=32M liveupdate.finish_timeout=0");
            final Kernel k1 = Kernel.boot(m.board());
            final SyscallServer s1 = k1.serve(dir.resolve("k.sock"));
            final int pid;
            try (KernelClient vmm = KernelClient.connect(s1.path(), mdir.resolve("memory"))) {
                final GuestRam ram = GuestRam.create(vmm, "vm0", 4 * MIB);
                final IommufdHandle fd = IommufdHandle.open(vmm);
                pid = (int) fd.makePersistent();
                fd.mapFixed(fd.ioasAlloc(), ram.va(), ram.size(), 0);
                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                vmm.kexecLoad("guestmemfs=32M liveupdate.finish_timeout=0");
                vmm.rebootKexec();
            }
            s1.close();
            final Kernel k = Kernel.boot(m.board());
            final SyscallServer server = k.serve(dir.resolve("k.sock"));
            try (KernelClient c = KernelClient.connect(server.path(), mdir.resolve("memory"))) {
                int opened = 0;
                while (c.syscall(Syscall.OPEN, writeString(c, "/dev/iommu"), Syscall.O_RDWR) >= 0) {
                    opened++;
                }
                assertEquals(org.iopersist.kernel.fs.FdTable.DEFAULT_NOFILE, opened);
                assertEquals(-org.iopersist.uapi.Errno.EMFILE.number,
                        c.syscall(Syscall.OPEN, writeString(c, Iommufd.persistedNode(pid)), Syscall.O_RDWR));
                assertEquals(-org.iopersist.uapi.Errno.EMFILE.number, c.syscall(Syscall.MEMFD_CREATE, writeString(c, "x"), 0));
                c.close(5);
                assertTrue(c.open(Iommufd.persistedNode(pid), Syscall.O_RDWR) >= 0, "the reopen after the EMFILE");
            }
            server.close();
        }
    }

    private static long writeString(final KernelClient c, final String s) {
        c.memory().writeBytes(c.scratch(), (s + "\0").getBytes(StandardCharsets.UTF_8));
        return c.scratch();
    }

    /** What the VMM can see of its own world: its context, its IOAS, its guest RAM, the live-update state. */
    private static String vmmState(final SyscallServer server, final KernelClient vmm, final IommufdHandle fd, final int ioas) {
        final var ctx = ((IommufdFile) server.process(vmm.pid()).fds().get(fd.fd())).ctx();
        return "objects " + ctx.objects().stream().map(o -> o.id() + ":" + o.getClass().getSimpleName()).toList()
                + "; ranges " + fd.iovaRanges(ioas) + "; ram " + java.util.Arrays.toString(vmm.stat("/guestmemfs/victim"))
                + "; state " + vmm.readFile("/sys/kernel/liveupdate/state").trim()
                + "; finalize " + vmm.readFile("/sys/kernel/kho/finalize").trim();
    }

    /** The books once the kernel has run every exit: compared with {@code baseline}, a moment to settle. */
    private static List<String> settled(final Kernel k, final Accounting baseline) throws InterruptedException {
        List<String> leaks = k.accounting().leaksAgainst(baseline);
        for (int i = 0; i < 100 && !leaks.isEmpty(); i++) {
            Thread.sleep(20);
            leaks = k.accounting().leaksAgainst(baseline);
        }
        return leaks;
    }

    private static void await(final ChildJvm child, final String line) throws Exception {
        final long deadline = System.nanoTime() + 120_000_000_000L;
        while (!child.output().contains(line + "\n")) {
            if (!child.process().isAlive() || System.nanoTime() > deadline) {
                throw new AssertionError("no '" + line + "'; log:\n" + child.output());
            }
            Thread.sleep(5);
        }
    }

    private static String tail(final ChildJvm f) throws Exception {
        final String out = f.output();
        return out.substring(Math.max(0, out.length() - 2000));
    }
}
