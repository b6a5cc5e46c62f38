package org.iopersist.kernel.liveupdate;

import org.iopersist.kernel.iommufd.persist.PersistedIommufds;
import org.iopersist.kernel.KernelRig;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.ChildJvm;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.iopersist.testing.Trees;

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
        return machine(at, MachineConfig.small());
    }

    private Machine machine(final Path at, final MachineConfig base) throws Exception {
        final MachineConfig config = base.withMemorySize(512 * MIB)
                .withUnits(List.of(UnitConfig.DEFAULT.withCaches(8, 4)));
        final Machine m = Machine.create(at, config).start();
        Files.writeString(at.resolve("boot").resolve("cmdline"), CMDLINE);
        return m;
    }

    private static final long PROBED = 48 * MIB;

    /**
     * What must survive a kexec: every object with its id, the pins of every RAM block and of the
     * owning process, and for each device its domain, root table and the whole IOVA-to-physical
     * function over the probed range as runs of contiguous pages.
     */
    private static String snapshot(final Kernel k, final int pid, final long pinnedPages) {
        final StringBuilder b = new StringBuilder();
        b.append(PersistedIommufds.objectsById(k, pid)).append("; pinned ").append(pinnedPages).append("; pins");
        final var fs = k.guestmemfs();
        for (long off = 0; off < RAM; off += 2 * MIB) {
            b.append(' ').append(fs.pinsAt("vm0-ram", off));
        }
        b.append(";\n");
        for (IommuDevice d : k.iommu().devices()) {
            final IommuDomain dom = k.iommu().domainOf(d);
            b.append(d);
            if (dom.type() != IommuDomain.Type.PAGING) {
                b.append(" blocked;\n");
                continue;
            }
            final long root = dom.ops().handoverKey();
            b.append(" paging root ").append(Long.toHexString(root)).append(" tables ")
                    .append(tableBytes(k.board().memory(), root, 4)).append(':');
            long runIova = -1;
            long runPhys = -1;
            long runLen = 0;
            for (long iova = 0; iova < PROBED; iova += 4096) {
                final long phys = dom.iovaToPhys(iova);
                if (runLen > 0 && phys != -1 && runPhys != -1 && phys == runPhys + runLen) {
                    runLen += 4096;
                    continue;
                }
                if (runLen > 0 && phys == -1 && runPhys == -1) {
                    runLen += 4096;
                    continue;
                }
                if (runLen > 0) {
                    b.append(String.format(" [%x+%x %s]", runIova, runLen, runPhys == -1 ? "-" : Long.toHexString(runPhys)));
                }
                runIova = iova;
                runPhys = phys;
                runLen = 4096;
            }
            b.append(String.format(" [%x+%x %s];%n", runIova, runLen, runPhys == -1 ? "-" : Long.toHexString(runPhys)));
        }
        return b.toString();
    }

    @Test
    void threeKexecsWithDevicesRunningAndMapsBetweenThem() throws Exception {
        final MachineConfig three = MachineConfig.small().withDevices(List.of(
                new MachineConfig.DeviceConfig(Bdf.parse("0000:00:02.0"), 0),
                new MachineConfig.DeviceConfig(Bdf.parse("0000:00:03.0"), 0),
                new MachineConfig.DeviceConfig(Bdf.parse("0000:00:04.0"), 0)));
        try (Machine m = machine(dir.resolve("m"), three)) {
            Kernel k = Kernel.boot(m.board());
            SyscallServer server = k.serve(dir.resolve("k0.sock"));
            KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", RAM);
            IommufdHandle iommufd = IommufdHandle.open(vmm);
            final int pid = (int) iommufd.makePersistent();
            final int ioas = iommufd.ioasAlloc();
            iommufd.mapFixed(ioas, ram.va(), 16 * MIB, 0);
            final VfioDeviceHandle d0 = VfioDeviceHandle.open(vmm, 0);
            final int dev0 = d0.bind(iommufd);
            final int autoHwpt = d0.attach(ioas);
            final VfioDeviceHandle d1 = VfioDeviceHandle.open(vmm, 1);
            final int dev1 = d1.bind(iommufd);
            final int hwpt1 = iommufd.hwptAlloc(dev1, ioas);
            assertEquals(hwpt1, d1.attach(hwpt1));
            // The third device does no DMA: it is detached and attached again after each update.
            final VfioDeviceHandle d2 = VfioDeviceHandle.open(vmm, 2);
            final int dev2 = d2.bind(iommufd);
            assertEquals(autoHwpt, d2.attach(ioas), "joins the automatic HWPT");
            final DeviceBar[] bars = {new DeviceBar(m.board().deviceBar(0)), new DeviceBar(m.board().deviceBar(1))};
            final WorkloadSettings[] work = {WorkloadSettings.writeVerify(MIB, 64 * 4096, 512, 1),
                WorkloadSettings.writeVerify(4 * MIB, 64 * 4096, 512, 2)};
            for (int i = 0; i < 2; i++) {
                bars[i].start(work[i]);
                bars[i].awaitSeq(500);
            }
            for (int round = 1; round <= 3; round++) {
                // Between updates the VMM changes its mappings: one more area each round.
                final long iova = (16 + 2L * round) * MIB;
                iommufd.mapFixed(ioas, ram.va() + iova, MIB, iova);
                final long pinned = server.process(vmm.pid()).pinnedPages();
                // Copies share their source's pages: only the maps count.
                assertEquals((16 + round) * MIB / 4096, pinned, "pins on the VMM's account");
                final String before = snapshot(k, pid, pinned);
                assertTrue(before.contains("0000:00:02.0 paging") && before.contains("0000:00:03.0 paging")
                        && before.contains("0000:00:04.0 paging") && before.contains("pins 1 "), before);
                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                final IommufdHandle frozenFd = iommufd;
                assertEquals(Errno.EBUSY.number, assertThrows(ErrnoException.class, frozenFd::ioasAlloc).errno(),
                        "frozen after finalize");
                k.kexecLoad(KernelRig.root(), CMDLINE);
                k.kexec(); // the VMM's connection is cut, as a kexec ends userspace
                Handovers.checkWithDtc(m.board());
                final Kernel next = Kernel.boot(m.board());
                assertEquals(Kernel.BootKind.LIVE_UPDATE, next.bootKind(), next.coldBootReason());
                assertEquals(List.of(pid), PersistedIommufds.restoredIds(next));
                assertEquals(before, snapshot(next, pid, pinned), "round " + round + ": the same state after the kexec");
                final String dirOf = Iommufd.persistedDir(pid);
                assertEquals(Integer.toString(vmm.uid()), next.sysfs().read(dirOf + "/owner").trim());
                assertEquals("restored", next.sysfs().read(dirOf + "/state").trim());
                assertEquals("1", next.sysfs().read(dirOf + "/ioas").trim());
                assertEquals("3", next.sysfs().read(dirOf + "/devices").trim());
                assertEquals("2", next.sysfs().read(dirOf + "/hwpt").trim());
                // The restarted VMM: reopen, rebind, carry on.
                k = next;
                server = k.serve(dir.resolve("k" + round + ".sock"));
                vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
                assertEquals(0, server.process(vmm.pid()).pinnedPages());
                // A restarted VMM that kept no id finds its context by listing the directory.
                assertEquals(List.of(Long.toString(pid)), vmm.listDir(Iommufd.PERSISTED_SYSFS_DIR));
                assertEquals(List.of("devices", "hwpt", "ioas", "iommufd", "objects", "owner", "scrub", "state"),
                        vmm.listDir(dirOf), "round " + round);
                // O_DIRECTORY is refused before the node's open runs, which would hand the context over.
                final KernelClient restarted = vmm;
                assertEquals(Errno.ENOTDIR.number, assertThrows(ErrnoException.class,
                        () -> restarted.open(dirOf + "/iommufd", Syscall.O_RDWR | Syscall.O_DIRECTORY)).errno());
                assertEquals("restored", next.sysfs().read(dirOf + "/state").trim(), "still there to reopen");
                final int fd = vmm.open(dirOf + "/iommufd", Syscall.O_RDWR);
                iommufd = IommufdHandle.of(vmm, fd);
                assertEquals(pid, iommufd.persistentId(), "the same persistent id");
                assertEquals(pinned, server.process(vmm.pid()).pinnedPages(), "the pins moved to the opener");
                assertEquals(List.of(), PersistedIommufds.restoredIds(k), "reopened");
                final int r = round;
                final KernelClient v = vmm;
                assertEquals(Errno.EBUSY.number, assertThrows(ErrnoException.class,
                        () -> v.open(dirOf + "/iommufd", Syscall.O_RDWR)).errno(), "round " + r + ": a second open");
                final VfioDeviceHandle e0 = VfioDeviceHandle.open(vmm, 0);
                final VfioDeviceHandle e1 = VfioDeviceHandle.open(vmm, 1);
                final VfioDeviceHandle e2 = VfioDeviceHandle.open(vmm, 2);
                assertEquals(dev0, e0.bind(iommufd), "the restored device object, same id");
                assertEquals(dev1, e1.bind(iommufd));
                assertEquals(dev2, e2.bind(iommufd));
                final GuestRam ramAgain = GuestRam.open(vmm, "vm0-ram");
                // Everything works as before: unmap and map, copy, replace, detach and attach, HWPT_ALLOC.
                assertEquals(MIB, iommufd.unmap(ioas, iova, MIB));
                iommufd.mapFixed(ioas, ramAgain.va() + iova, MIB, iova);
                final long copyIova = (40 + round) * MIB;
                assertEquals(copyIova, iommufd.copyFixed(ioas, copyIova, ioas, 2 * MIB, MIB));
                final IommuDomain dom0 = k.iommu().domainOf(k.iommu().devices().get(0));
                assertEquals(dom0.iovaToPhys(2 * MIB + 0x3000), dom0.iovaToPhys(copyIova + 0x3000), "the copy maps the same pages");
                // Replace and detach on the idle device: legacy-mode VT-d clears the context entry
                // on the way, as Linux does, so a device doing DMA would fault meanwhile.
                final int h = iommufd.hwptAlloc(dev2, ioas);
                assertEquals(h, e2.attach(h), "replace");
                assertEquals(autoHwpt, e2.attach(ioas), "and back");
                iommufd.destroy(h);
                e2.detach();
                assertEquals(k.iommu().blockedDomain(), k.iommu().domainOf(k.iommu().devices().get(2)));
                assertEquals(autoHwpt, e2.attach(ioas), "attached again to the same automatic HWPT");
                assertTrue(k.log().contains("finished"), "the last reopen finished the update");
            }
            for (int i = 0; i < 2; i++) {
                bars[i].stop();
                final DeviceCounters c = bars[i].counters();
                assertEquals(0, c.faults(), "device " + i + " never faulted through three updates: " + c);
                assertEquals(0, c.corrupt(), c.toString());
                final Kernel kk = k;
                final RecordChecker.Report rep = new RecordChecker(m.board().memory()).check(bars[i].window(),
                        iova -> kk.iommu().domainOf(kk.iommu().devices().get(0)).iovaToPhys(iova));
                assertTrue(rep.clean(), rep.toString());
            }
            assertEquals(List.of(autoHwpt + ":HWPT_PAGING"), PersistedIommufds.objectsById(k, pid).stream()
                    .filter(o -> o.startsWith(autoHwpt + ":")).toList());
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
                final IommufdHandle f = IommufdHandle.open(vmm);
                pidByDevice.put(i, (int) f.makePersistent());
                final int ioas = f.ioasAlloc();
                f.mapFixed(ioas, ram.va() + i * 8 * MIB, 8 * MIB, 0);
                final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, i);
                d.bind(f);
                d.attach(ioas);
            }
            assertNotEquals(pidByDevice.get(0), pidByDevice.get(1));
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            a.kexecLoad(KernelRig.root(), CMDLINE);
            a.kexec();
            Handovers.checkWithDtc(m.board());
            final Kernel b = Kernel.boot(m.board());
            assertEquals(2, PersistedIommufds.restoredIds(b).size());
            final SyscallServer s2 = b.serve(dir.resolve("k2.sock"));
            final KernelClient vmm2 = KernelClient.connect(s2.path(), dir.resolve("m").resolve("memory"));
            final int reopened = vmm2.open(Iommufd.persistedNode(pidByDevice.get(0)), Syscall.O_RDWR);
            // Until finish, the unopened context's id stays reserved and its device is its own.
            final IommufdHandle fresh = IommufdHandle.open(vmm2);
            final int freshId = (int) fresh.makePersistent();
            assertTrue(!pidByDevice.containsValue(freshId), "a new context gets a free id: " + freshId);
            final VfioDeviceHandle other = VfioDeviceHandle.open(vmm2, 1);
            assertEquals(Errno.EBUSY.number, assertThrows(ErrnoException.class, () -> other.bind(fresh)).errno(),
                    "a device restored into another context cannot be bound elsewhere");
            assertEquals(Errno.EBUSY.number, assertThrows(ErrnoException.class, () -> VfioDeviceHandle.open(vmm2, 0).bind(fresh)).errno(),
                    "nor one of the reopened context that its VMM has not bound again");
            final IommuDevice dev1 = b.iommu().devices().get(1);
            final int tables = tablePages(m.board().memory(), b.iommu().domainOf(dev1).ops().handoverKey(), 4);
            assertTrue(tables >= 3, "a 4-level table mapping 8 MiB in 2 MiB pages: " + tables);
            final long freeBeforeFinish = b.frames().stats().freeFrames();
            final long handover = b.liveUpdate().handoverFramesLeft(); // unclaimed blocks and the tracker
            vmm2.writeFile("/sys/kernel/liveupdate/finish", "1");
            assertEquals(List.of(), PersistedIommufds.restoredIds(b));
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(dev1), "the unopened context's device is blocked");
            assertEquals(IommuDomain.Type.PAGING, b.iommu().domainOf(b.iommu().devices().get(0)).type());
            assertEquals(0, b.guestmemfs().pinsAt("vm0-ram", 8 * MIB), "its areas are unpinned");
            assertEquals(1, b.guestmemfs().pinsAt("vm0-ram", 0), "the reopened one keeps its pins");
            assertTrue(!b.sysfs().exists(Iommufd.persistedDir(pidByDevice.get(1))), "its directory is gone");
            assertEquals("reopened", b.sysfs().read(Iommufd.persistedDir(pidByDevice.get(0)) + "/state").trim());
            assertEquals(0, b.liveUpdate().unclaimedFrames(), "nothing left unclaimed");
            assertEquals(tables + handover, b.frames().stats().freeFrames() - freeBeforeFinish,
                    "exactly its page tables and the unclaimed handover came back");
            final var st = b.frames().stats();
            assertEquals(st.totalFrames(), st.freeFrames() + st.reservedFrames() + st.allocatedFrames());
            // After finish the freed context's device may be bound anew.
            other.bind(fresh);
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(dev1), "bound, not attached");
            // The reopener closes its iommufd without binding device 0 again: nobody can adopt it
            // any more, so it is unbound (blocked) and the context goes with its tables and pins.
            final IommuDevice dev0 = b.iommu().devices().get(0);
            final int tables0 = tablePages(m.board().memory(), b.iommu().domainOf(dev0).ops().handoverKey(), 4);
            final long freeBeforeClose = b.frames().stats().freeFrames();
            vmm2.close(reopened);
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(dev0));
            assertEquals(0, b.guestmemfs().pinsAt("vm0-ram", 0));
            assertTrue(!b.sysfs().exists(Iommufd.persistedDir(pidByDevice.get(0))));
            assertEquals(tables0, b.frames().stats().freeFrames() - freeBeforeClose, "its tables came back");
            VfioDeviceHandle.open(vmm2, 0).bind(fresh);
            vmm2.close();
            s2.close();
        }
    }

    /** Every table page under {@code pgd}, byte for byte, as a CRC per page in walk order. */
    private static String tableBytes(final org.iopersist.hw.memory.PhysicalMemory mem, final long pgd, final int levels) {
        final java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        crc.update(mem.slice(pgd, 4096).asByteBuffer());
        final StringBuilder b = new StringBuilder(Long.toHexString(pgd)).append('=').append(Long.toHexString(crc.getValue()));
        if (levels > 1) {
            for (int i = 0; i < 512; i++) {
                final long pte = mem.load64Acquire(pgd + 8L * i);
                if ((pte & 3) != 0 && (pte & 0x80) == 0) {
                    b.append(',').append(tableBytes(mem, pte & 0x000F_FFFF_FFFF_F000L, levels - 1));
                }
            }
        }
        return b.toString();
    }

    /** Distinct VT-d second-level table pages under {@code pgd}: what freeing the domain must return. */
    private static int tablePages(final org.iopersist.hw.memory.PhysicalMemory mem, final long pgd, final int levels) {
        int n = 1;
        if (levels > 1) {
            for (int i = 0; i < 512; i++) {
                final long pte = mem.load64Acquire(pgd + 8L * i);
                if ((pte & 3) != 0 && (pte & 0x80) == 0) {
                    n += tablePages(mem, pte & 0x000F_FFFF_FFFF_F000L, levels - 1);
                }
            }
        }
        return n;
    }

    @Test
    void aContextNobodyReopenedIsHandedOverAgainByASecondKexec() throws Exception {
        try (Machine m = machine(dir.resolve("m"))) {
            final Kernel a = Kernel.boot(m.board());
            final SyscallServer server = a.serve(dir.resolve("k.sock"));
            final KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", RAM);
            final IommufdHandle f = IommufdHandle.open(vmm);
            final int pid = (int) f.makePersistent();
            final int ioas = f.ioasAlloc();
            f.mapFixed(ioas, ram.va(), RAM, 0);
            final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, 0);
            final int devId = d.bind(f);
            d.attach(ioas);
            final DeviceBar bar = new DeviceBar(m.board().deviceBar(0));
            bar.start(WorkloadSettings.writeVerify(MIB, 64 * 4096, 512, 5));
            bar.awaitSeq(500);
            final long pinnedBefore = server.process(vmm.pid()).pinnedPages();
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            a.kexecLoad(KernelRig.root(), CMDLINE);
            a.kexec();
            // Kernel B restores the context, but no VMM comes; B is updated again before finish.
            final Kernel b = Kernel.boot(m.board());
            assertEquals(List.of(pid), PersistedIommufds.restoredIds(b));
            b.liveUpdate().finalizeHandover();
            b.kexecLoad(KernelRig.root(), CMDLINE);
            b.kexec();
            Handovers.checkWithDtc(m.board());
            final Kernel c = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, c.bootKind(), c.coldBootReason());
            assertEquals(List.of(pid), PersistedIommufds.restoredIds(c), "handed over unchanged by B");
            final SyscallServer s3 = c.serve(dir.resolve("k3.sock"));
            try (KernelClient vmm3 = KernelClient.connect(s3.path(), dir.resolve("m").resolve("memory"))) {
                final IommufdHandle again = IommufdHandle.of(vmm3, vmm3.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                assertEquals(devId, VfioDeviceHandle.open(vmm3, 0).bind(again));
                assertEquals(pinnedBefore, s3.process(vmm3.pid()).pinnedPages());
                assertEquals(1, c.guestmemfs().pinsAt("vm0-ram", 0));
                bar.awaitSeq(bar.counters().nextSeq() + 500);
                bar.stop();
                final DeviceCounters counters = bar.counters();
                assertEquals(0, counters.faults(), counters.toString());
                assertEquals(0, counters.corrupt(), counters.toString());
                final GuestRam ram3 = GuestRam.open(vmm3, "vm0-ram");
                assertTrue(new RecordChecker(m.board().memory()).check(bar.window(), ram3::physOf).clean());
            }
            s3.close();
        }
    }

    @Test
    void closingAPersistedIommufdAfterFinalizeAbortsTheFinalize() throws Exception {
        try (Machine m = machine(dir.resolve("m"))) {
            final Kernel a = Kernel.boot(m.board());
            final SyscallServer server = a.serve(dir.resolve("k.sock"));
            try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                final GuestRam ram = GuestRam.create(vmm, "vm0-ram", 4 * MIB);
                final IommufdHandle f = IommufdHandle.open(vmm);
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
            final IommufdHandle f = IommufdHandle.open(vmm);
            final int pid = (int) f.makePersistent();
            f.mapFixed(f.ioasAlloc(), ram.va(), 4 * MIB, 0);
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            a.kexecLoad(KernelRig.root(), CMDLINE);
            a.kexec();
            Handovers.checkWithDtc(m.board());
            final Kernel b = Kernel.boot(m.board());
            final SyscallServer s2 = b.serve(shared.resolve("k2.sock"));
            // No chmod here: the kernel's socket is connectable by every user (issue 16 bug 5).
            final String node = Iommufd.persistedNode(pid);
            try (ChildJvm child = ChildJvm.startAs("65534", dir.resolve("intruder.log"), Intruder.class,
                    s2.path().toString(), shared.resolve("m").resolve("memory").toString(), node)) {
                assertEquals(0, child.waitFor(60), child.output());
                assertTrue(child.output().contains("uid 65534: EACCES"), child.output());
            }
            assertEquals(List.of(pid), PersistedIommufds.restoredIds(b), "still waiting for its owner");
            try (KernelClient owner = KernelClient.connect(s2.path(), shared.resolve("m").resolve("memory"))) {
                assertTrue(owner.open(node, Syscall.O_RDWR) >= 0, "the owner (root here) may");
            }
            s2.close();
        } finally {
            Trees.delete(shared);
        }
    }
}
