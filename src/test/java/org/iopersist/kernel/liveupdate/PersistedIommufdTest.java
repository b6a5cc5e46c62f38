package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.kernel.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.iommufd.PersistentContexts;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.ChildJvm;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.Iommufd;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDevice;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole RFC flow: a VMM with a persistent iommufd, guest RAM on guestmemfs and two devices
 * doing DMA; finalize; kexec; the new kernel restores the context; a restarted VMM reopens it
 * through sysfs, binds its devices again and carries on. Three times in a row.
 */
class PersistedIommufdTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=128M liveupdate.finish_timeout=0";
    private static final long RAM = 32 * MIB;

    @TempDir
    Path dir;

    private Machine machine(final Path at) throws Exception {
        final MachineConfig config = MachineConfig.small().withMemorySize(512 * MIB)
                .withUnits(List.of(UnitConfig.DEFAULT.withCaches(8, 4)));
        final Machine m = Machine.create(at, config).start();
        Files.writeString(at.resolve("boot").resolve("cmdline"), CMDLINE);
        return m;
    }

    /** What a test compares across a kexec: object ids, areas, pins, translations, attachments. */
    private static String snapshot(final Kernel k, final int pid, final long[] probes) {
        final StringBuilder b = new StringBuilder();
        b.append(k.persistedContexts().context(pid).objectCount()).append(" objects; ");
        final var fs = k.guestmemfs();
        for (long off = 0; off < RAM; off += 2 * MIB) {
            b.append(fs.pinsAt("vm0-ram", off));
        }
        b.append("; ");
        for (IommuDevice d : k.iommu().devices()) {
            final IommuDomain dom = k.iommu().domainOf(d);
            b.append(d).append(dom.type() == IommuDomain.Type.PAGING ? " paging" : " blocked");
            for (long iova : probes) {
                b.append(String.format(" %x->%x", iova, dom.type() == IommuDomain.Type.PAGING ? dom.iovaToPhys(iova) : -1));
            }
            b.append("; ");
        }
        return b.toString();
    }

    @Test
    void threeKexecsWithDevicesRunningAndMapsBetweenThem() throws Exception {
        try (Machine m = machine(dir.resolve("m"))) {
            Kernel k = Kernel.boot(m.board());
            SyscallServer server = k.serve(dir.resolve("k0.sock"));
            KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", RAM);
            Iommufd iommufd = Iommufd.open(vmm);
            final int pid = (int) iommufd.makePersistent();
            final int ioas = iommufd.ioasAlloc();
            iommufd.mapFixed(ioas, ram.va(), 16 * MIB, 0);
            final VfioDevice d0 = VfioDevice.open(vmm, 0);
            final int dev0 = d0.bind(iommufd);
            final int autoHwpt = d0.attach(ioas);
            final VfioDevice d1 = VfioDevice.open(vmm, 1);
            final int dev1 = d1.bind(iommufd);
            final int hwpt1 = iommufd.hwptAlloc(dev1, ioas);
            assertEquals(hwpt1, d1.attach(hwpt1));
            final DeviceBar[] bars = {new DeviceBar(m.board().deviceBar(0)), new DeviceBar(m.board().deviceBar(1))};
            final WorkloadSettings[] work = {WorkloadSettings.writeVerify(MIB, 64 * 4096, 512, 1),
                WorkloadSettings.writeVerify(4 * MIB, 64 * 4096, 512, 2)};
            for (int i = 0; i < 2; i++) {
                bars[i].start(work[i]);
                bars[i].awaitSeq(500);
            }
            final long[] probes = {0, MIB + 0x1000, 4 * MIB, 15 * MIB, 20 * MIB};
            int extraMaps = 0;
            for (int round = 1; round <= 3; round++) {
                // Between updates the VMM changes its mappings: one more area each round.
                final long iova = (16 + 2L * round) * MIB;
                iommufd.mapFixed(ioas, ram.va() + iova - 16 * MIB + 16 * MIB, MIB, iova);
                extraMaps++;
                final String before = snapshot(k, pid, probes);
                assertTrue(before.contains("0000:00:02.0 paging") && before.contains("0000:00:03.0 paging")
                        && before.contains("11111111"), before);
                final List<Integer> idsBefore = List.of(ioas, autoHwpt, dev0, hwpt1, dev1);
                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                final Iommufd frozenFd = iommufd;
                assertEquals(Errno.EBUSY.number, org.junit.jupiter.api.Assertions.assertThrows(ErrnoException.class,
                        frozenFd::ioasAlloc).errno(), "frozen after finalize");
                k.kexecLoad(CMDLINE);
                k.kexec(); // the VMM's connection is cut, as a kexec ends userspace
                final Kernel next = Kernel.boot(m.board());
                assertEquals(Kernel.BootKind.LIVE_UPDATE, next.bootKind(), next.coldBootReason());
                assertEquals(List.of(pid), next.persistedContexts().restoredIds());
                assertEquals(before, snapshot(next, pid, probes), "round " + round + ": the same state after the kexec");
                assertEquals(Integer.toString(vmm.uid()), next.sysfs().read(PersistentContexts.SYSFS_DIR + "/" + pid + "/owner").trim());
                // The restarted VMM: reopen, rebind, carry on.
                k = next;
                server = k.serve(dir.resolve("k" + round + ".sock"));
                vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
                final int fd = vmm.open(PersistentContexts.SYSFS_DIR + "/" + pid + "/iommufd", Syscall.O_RDWR);
                iommufd = Iommufd.of(vmm, fd);
                assertEquals(pid, iommufd.persistentId(), "the same persistent id");
                assertEquals(List.of(), k.persistedContexts().restoredIds(), "reopened");
                final int fdAgain = round; // a second open of the same context is refused
                final KernelClient v = vmm;
                assertEquals(Errno.EBUSY.number, org.junit.jupiter.api.Assertions.assertThrows(ErrnoException.class,
                        () -> v.open(PersistentContexts.SYSFS_DIR + "/" + pid + "/iommufd", Syscall.O_RDWR)).errno(), "round " + fdAgain);
                assertEquals(dev0, VfioDevice.open(vmm, 0).bind(iommufd), "the restored device object, same id");
                assertEquals(dev1, VfioDevice.open(vmm, 1).bind(iommufd));
                assertEquals(idsBefore.get(2), dev0);
                final GuestRam ramAgain = GuestRam.open(vmm, "vm0-ram");
                // Everything works as before: unmap and map again, HWPT_ALLOC, replace.
                assertEquals(MIB, iommufd.unmap(ioas, iova, MIB));
                iommufd.mapFixed(ioas, ramAgain.va() + 16 * MIB, MIB, iova);
                final int h = iommufd.hwptAlloc(dev1, ioas);
                iommufd.destroy(h);
                assertTrue(k.log().contains("finished"), "the last reopen finished the update");
            }
            for (int i = 0; i < 2; i++) {
                bars[i].stop();
                final DeviceCounters c = bars[i].counters();
                assertEquals(0, c.faults(), "device " + i + " never faulted through three updates: " + c);
                assertEquals(0, c.corrupt(), c.toString());
                final Kernel kk = k;
                final RecordChecker.Report r = new RecordChecker(m.board().memory()).check(bars[i].window(),
                        iova -> kk.iommu().domainOf(kk.iommu().devices().get(0)).iovaToPhys(iova));
                assertTrue(r.clean(), r.toString());
            }
            assertEquals(3, extraMaps);
            vmm.close();
            server.close();
        }
    }

    @Test
    void finishFreesWhatNobodyReopenedAndBlocksItsDevices() throws Exception {
        try (Machine m = machine(dir.resolve("m"))) {
            final Kernel a = Kernel.boot(m.board());
            final SyscallServer server = a.serve(dir.resolve("k.sock"));
            final KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", RAM);
            final Map<Integer, Integer> pidByDevice = new TreeMap<>();
            for (int i = 0; i < 2; i++) {
                final Iommufd f = Iommufd.open(vmm);
                pidByDevice.put(i, (int) f.makePersistent());
                final int ioas = f.ioasAlloc();
                f.mapFixed(ioas, ram.va() + i * 8 * MIB, 8 * MIB, 0);
                final VfioDevice d = VfioDevice.open(vmm, i);
                d.bind(f);
                d.attach(ioas);
            }
            assertNotEquals(pidByDevice.get(0), pidByDevice.get(1));
            final long freeBefore = a.frames().stats().freeFrames();
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            a.kexecLoad(CMDLINE);
            a.kexec();
            final Kernel b = Kernel.boot(m.board());
            assertEquals(2, b.persistedContexts().restoredIds().size());
            final SyscallServer s2 = b.serve(dir.resolve("k2.sock"));
            final KernelClient vmm2 = KernelClient.connect(s2.path(), dir.resolve("m").resolve("memory"));
            vmm2.open(PersistentContexts.SYSFS_DIR + "/" + pidByDevice.get(0) + "/iommufd", Syscall.O_RDWR);
            vmm2.writeFile("/sys/kernel/liveupdate/finish", "1");
            assertEquals(List.of(), b.persistedContexts().restoredIds());
            final IommuDevice dev1 = b.iommu().devices().get(1);
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(dev1), "the unopened context's device is blocked");
            assertEquals(IommuDomain.Type.PAGING, b.iommu().domainOf(b.iommu().devices().get(0)).type());
            assertEquals(0, b.guestmemfs().pinsAt("vm0-ram", 8 * MIB), "its areas are unpinned");
            assertEquals(1, b.guestmemfs().pinsAt("vm0-ram", 0), "the reopened one keeps its pins");
            assertTrue(!b.sysfs().exists(PersistentContexts.SYSFS_DIR + "/" + pidByDevice.get(1)) || "reopened".equals(
                    b.sysfs().read(PersistentContexts.SYSFS_DIR + "/" + pidByDevice.get(1) + "/state").trim())
                    || !b.persistedContexts().restoredIds().contains(pidByDevice.get(1)));
            assertEquals(0, b.liveUpdate().unclaimedFrames(), "nothing left unclaimed");
            final var st = b.frames().stats();
            assertEquals(st.totalFrames(), st.freeFrames() + st.reservedFrames() + st.allocatedFrames());
            assertTrue(st.freeFrames() >= freeBefore - 64, "no leak beyond the reopened context's tables: " + st + " vs " + freeBefore);
            vmm2.close();
            s2.close();
        }
    }

    @Test
    void closingAPersistedIommufdAfterFinalizeAbortsTheFinalize() throws Exception {
        try (Machine m = machine(dir.resolve("m"))) {
            final Kernel a = Kernel.boot(m.board());
            final SyscallServer server = a.serve(dir.resolve("k.sock"));
            try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                final GuestRam ram = GuestRam.create(vmm, "vm0-ram", 4 * MIB);
                final Iommufd f = Iommufd.open(vmm);
                f.makePersistent();
                f.mapFixed(f.ioasAlloc(), ram.va(), 4 * MIB, 0);
                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                assertEquals("1", vmm.readFile("/sys/kernel/kho/finalize").trim());
                f.close();
                assertEquals("0", vmm.readFile("/sys/kernel/kho/finalize").trim(), "closing it aborted the finalize");
                assertTrue(a.log().contains("closed after KHO finalize: aborting the finalize"));
            }
            server.close();
        }
    }

    /** A process of another uid: tries to reopen a persisted context. */
    public static final class Intruder {
        public static void main(final String[] args) throws Exception {
            try (KernelClient c = KernelClient.connect(Path.of(args[0]), Path.of(args[1]))) {
                try {
                    c.open(args[2], Syscall.O_RDWR);
                    System.out.println("opened as uid " + c.uid());
                } catch (ErrnoException e) {
                    System.out.println("uid " + c.uid() + ": " + e.error());
                }
            }
        }
    }

    @Test
    void onlyTheOwnerOrRootMayReopen() throws Exception {
        // setpriv needs CAP_SETUID: this test runs where the suite runs as root (CI and the README set-up do).
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")),
                "a second real uid needs root to switch to it");
        final Path shared = Files.createTempDirectory("iopersist-shared");
        Files.setPosixFilePermissions(shared, PosixFilePermissions.fromString("rwxrwxrwx"));
        try (Machine m = machine(shared.resolve("m"))) {
            Files.setPosixFilePermissions(shared.resolve("m"), PosixFilePermissions.fromString("rwxrwxrwx"));
            Files.setPosixFilePermissions(shared.resolve("m").resolve("memory"), PosixFilePermissions.fromString("rw-rw-rw-"));
            final Kernel a = Kernel.boot(m.board());
            final SyscallServer server = a.serve(shared.resolve("k.sock"));
            final KernelClient vmm = KernelClient.connect(server.path(), shared.resolve("m").resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", 4 * MIB);
            final Iommufd f = Iommufd.open(vmm);
            final int pid = (int) f.makePersistent();
            f.mapFixed(f.ioasAlloc(), ram.va(), 4 * MIB, 0);
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            a.kexecLoad(CMDLINE);
            a.kexec();
            final Kernel b = Kernel.boot(m.board());
            final SyscallServer s2 = b.serve(shared.resolve("k2.sock"));
            Files.setPosixFilePermissions(s2.path(), PosixFilePermissions.fromString("rwxrwxrwx"));
            final String node = PersistentContexts.SYSFS_DIR + "/" + pid + "/iommufd";
            try (ChildJvm child = ChildJvm.startAs("65534", dir.resolve("intruder.log"), Intruder.class,
                    s2.path().toString(), shared.resolve("m").resolve("memory").toString(), node)) {
                assertEquals(0, child.waitFor(60), child.output());
                assertTrue(child.output().contains("uid 65534: EACCES"), child.output());
            }
            assertEquals(List.of(pid), b.persistedContexts().restoredIds(), "still waiting for its owner");
            try (KernelClient owner = KernelClient.connect(s2.path(), shared.resolve("m").resolve("memory"))) {
                assertTrue(owner.open(node, Syscall.O_RDWR) >= 0, "the owner (root here) may");
            }
            s2.close();
        } finally {
            try (var walk = Files.walk(shared)) {
                for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }
}
