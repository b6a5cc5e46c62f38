package org.iopersist.kernel.iommu.intel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.pci.CanaryPages;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.DmaRecord;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The VT-d driver against the machine: what devices can reach, and what the tables look like. */
class VtdDriverTest {
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;
    private static final int RW = IommuDomain.READ | IommuDomain.WRITE;
    private static final Bdf DEV0 = Bdf.parse("0000:00:02.0");
    private static final Bdf DEV1 = Bdf.parse("0000:00:03.0");

    @TempDir
    Path dir;

    @Test
    void mappedDmaLandsInTheRightFramesAndFaultsOnceUnmapped() {
        try (KernelRig rig = KernelRig.boot(dir, MachineConfig.small().withMemorySize(256 * MIB), "")) {
            final IommuCore iommu = rig.kernel.iommu();
            final PhysicalMemory mem = rig.machine.board().memory();
            final IommuDevice dev = iommu.device(DEV0);
            final IommuDomain d = iommu.allocPaging(dev, 0);
            // 16 pages of IOVA onto 16 scattered frames, each between two canaries.
            final long iova = 0x4000_0000L;
            final long[] frames = new long[16];
            final CanaryPages canaries = new CanaryPages(mem, 0xC0FFEE);
            for (int i = 0; i < 16; i++) {
                final long block = rig.kernel.frames().allocRun(2);
                frames[i] = block + PAGE;
                mem.fill(frames[i], PAGE, (byte) 0);
                canaries.fill(block, 1);
                canaries.fill(block + 2 * PAGE, 2);
                d.map(iova + i * PAGE, frames[i], PAGE, RW);
            }
            iommu.attach(dev, d);
            assertEquals(frames[5] + 0x123, d.iovaToPhys(iova + 5 * PAGE + 0x123));

            final DeviceBar bar = rig.bar(0);
            final WorkloadSettings s = WorkloadSettings.writeVerify(iova, 16 * PAGE, 512, 3);
            bar.start(s);
            bar.awaitSeq(3 * s.slots());
            bar.stop();
            DeviceCounters c = bar.counters();
            assertEquals(0, c.faults(), c.toString());
            assertEquals(0, c.corrupt(), c.toString());
            assertEquals(c.nextSeq(), c.ops(), "the device's own read-back agreed: " + c);
            // The CPU finds every record in the frame the tables name, and nothing outside.
            final RecordChecker.Report r = new RecordChecker(mem).check(bar.window(), d::iovaToPhys);
            assertTrue(r.clean(), r + " " + c + " nextSeq now " + bar.counters().nextSeq());
            assertEquals(s.slots(), r.found(), r.toString());
            assertEquals(DEV0.sourceId(), mem.load32(frames[0] + DmaRecord.SID_OFFSET), "record header names the device");
            assertEquals(List.of(), canaries.changes());

            final long firstRunEnd = c.nextSeq();
            assertEquals(16 * PAGE, d.unmap(iova, 16 * PAGE));
            assertEquals(-1, d.iovaToPhys(iova));
            bar.resetCounters();
            bar.start(s.withGeneration(4));
            awaitFaults(bar, 20);
            bar.stop();
            c = bar.counters();
            assertEquals(0, c.ops(), "no DMA completes after the unmap returned: " + c);
            assertEquals(c.faults(), c.faults(FaultReason.WRITE), c.toString());
            // The old generation is still what the frames hold: the faulting writes never landed.
            final RecordChecker.Report after = new RecordChecker(mem).check(
                    new RecordChecker.Expectation(DEV0.sourceId(), iova, 16 * PAGE, 512, 3, firstRunEnd),
                    v -> frames[(int) ((v - iova) / PAGE)] + (v & (PAGE - 1)));
            assertTrue(after.clean(), after.toString());
            assertEquals(List.of(), canaries.changes());
        }
    }

    @Test
    void attachDetachAndReplaceProgramContextEntries() {
        try (KernelRig rig = KernelRig.boot(dir, MachineConfig.small().withMemorySize(128 * MIB), "")) {
            final IommuCore iommu = rig.kernel.iommu();
            final PhysicalMemory mem = rig.machine.board().memory();
            final IntelIommuDriver intel = rig.kernel.intelIommu();
            final IommuDevice dev = iommu.device(DEV0);
            final IommuDomain a = iommu.allocPaging(dev, 0);
            final IommuDomain b = iommu.allocPaging(dev, IommuDomain.PERSISTENT);
            assertTrue(b.persistent());
            assertEquals(List.of(ReservedRegion.INTERRUPT_WINDOW), a.reservedRegions());
            assertEquals((1L << 48) - 1, a.apertureLast(), "4-level default: 48-bit aperture");
            assertEquals(PAGE | 2 * MIB | GIB, a.pgsizeBitmap());
            iommu.attach(dev, a);
            final long rootLo = mem.load64(RootEntry.address(intel.rootTable(0), DEV0.bus()));
            final long ctx = ContextEntry.address(RootEntry.contextTable(rootLo), DEV0.devfn());
            assertEquals(IntelIommu.FIRST_DID, ContextEntry.domainId(mem.load64(ctx + 8)), "DIDs start at 2");
            assertEquals(2, ContextEntry.addressWidth(mem.load64(ctx + 8)), "AW 2: 4-level");
            assertEquals(ContextEntry.TT_MULTI_LEVEL, ContextEntry.translationType(mem.load64(ctx)));
            assertEquals(Errno.EBUSY, assertThrows(KernelException.class, () -> iommu.attach(dev, b)).errno());
            assertEquals(Errno.EBUSY, assertThrows(KernelException.class, () -> iommu.free(a)).errno());
            iommu.replace(dev, b);
            assertEquals(IntelIommu.FIRST_DID + 1, ContextEntry.domainId(mem.load64(ctx + 8)));
            assertEquals(1, intel.domainIdsInUse(0), "a's DID went back when its last device left");
            iommu.detach(dev);
            assertEquals(0, mem.load64(ctx), "blocked = context entry not present");
            assertEquals(0, intel.domainIdsInUse(0));
            iommu.free(a);
            assertThrows(IllegalStateException.class, () -> a.map(0, 0, PAGE, RW));
        }
    }

    @Test
    void mapErrorsAndLeafRules() {
        try (KernelRig rig = KernelRig.boot(dir, MachineConfig.small().withMemorySize(4 * GIB), "")) {
            final IommuCore iommu = rig.kernel.iommu();
            final IommuDomain d = iommu.allocPaging(iommu.device(DEV0), 0);
            assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> d.map(0x1000, 0x1800, PAGE, RW)).errno());
            assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> d.map(0x1000, 0x2000, PAGE, 0)).errno());
            assertEquals(Errno.EFAULT, assertThrows(KernelException.class, () -> d.map(1L << 48, 0, PAGE, RW)).errno());
            assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> d.map(0, 1L << 46, PAGE, RW)).errno(),
                    "beyond HAW");
            // Over a present entry: EADDRINUSE, and nothing of the call stays mapped.
            d.map(0x20_5000, GIB, PAGE, RW);
            assertEquals(Errno.EADDRINUSE, assertThrows(KernelException.class, () -> d.map(0x20_0000, GIB, 8 * PAGE, RW)).errno());
            assertEquals(-1, d.iovaToPhys(0x20_0000));
            assertEquals(GIB, d.iovaToPhys(0x20_5000));
            // A 2 MiB leaf: unmap starting inside it is EINVAL; ending inside it removes it whole.
            d.map(0x4000_0000L, 2 * GIB, 2 * MIB, RW);
            assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> d.unmap(0x4000_1000L, PAGE)).errno());
            assertEquals(2 * GIB + 0x1234, d.iovaToPhys(0x4000_1234L));
            assertEquals(2 * MIB, d.unmap(0x4000_0000L, PAGE));
            assertEquals(-1, d.iovaToPhys(0x4010_0000L));
            assertEquals(PAGE, d.unmap(0, 1L << 40), "holes are skipped, the one page is counted");
        }
    }

    @Test
    void superpagesUseTheLargestLeafAlignmentAllows() {
        try (KernelRig rig = KernelRig.boot(dir, MachineConfig.small().withMemorySize(4 * GIB), "")) {
            final IommuCore iommu = rig.kernel.iommu();
            final PhysicalMemory mem = rig.machine.board().memory();
            final IommuDomain d = iommu.allocPaging(iommu.device(DEV0), 0);
            final DmarDomain dd = (DmarDomain) d.ops();
            long before = dd.tableChunks().pages();
            // 2 MiB-aligned but not 1 GiB-aligned: 512 2 MiB leaves across two level-2 tables.
            final long iova2m = 5 * GIB + 2 * MIB;
            d.map(iova2m, GIB + 2 * MIB, GIB, RW);
            assertEquals(3, dd.tableChunks().pages() - before, "one level-3 and two level-2 tables");
            assertEquals(512, countLeaves(mem, dd.pgd, 4, 2), "2 MiB leaves");
            assertEquals(GIB + 2 * MIB + 0x12_3456, d.iovaToPhys(iova2m + 0x12_3456));
            // 1 GiB-aligned: one 1 GiB leaf in the level-3 table that is already there.
            before = dd.tableChunks().pages();
            d.map(8 * GIB, 2 * GIB, GIB, RW);
            assertEquals(0, dd.tableChunks().pages() - before, "no new table page");
            assertEquals(1, countLeaves(mem, dd.pgd, 4, 3), "one 1 GiB leaf");
            // Unmapping the 2 MiB run empties two level-2 tables but covers neither whole, so they
            // stay (as in Linux); an unmap that covers them frees both, mapped bytes or not.
            before = dd.tableChunks().pages();
            assertEquals(GIB, d.unmap(iova2m, GIB));
            assertEquals(0, dd.tableChunks().pages() - before);
            assertEquals(0, d.unmap(4 * GIB, 4 * GIB));
            assertEquals(-2, dd.tableChunks().pages() - before);
            assertEquals(2 * GIB, d.iovaToPhys(8 * GIB), "the 1 GiB leaf next door stays");
            // 4 KiB-aligned only: 4 KiB leaves.
            d.map(12 * GIB + PAGE, 3 * GIB, 4 * MIB, RW);
            assertEquals(1024, countLeaves(mem, dd.pgd, 4, 1));
        }
    }

    @Test
    void unitsWithThreeAndFiveLevelTablesGetMatchingDomains() {
        final MachineConfig config = new MachineConfig(256 * MIB, List.of(UnitConfig.ofLevels(3), UnitConfig.ofLevels(5)),
                List.of(new MachineConfig.DeviceConfig(DEV0, 0), new MachineConfig.DeviceConfig(DEV1, 1)));
        try (KernelRig rig = KernelRig.boot(dir, config, "")) {
            final IommuCore iommu = rig.kernel.iommu();
            final IommuDomain d3 = iommu.allocPaging(iommu.device(DEV0), 0);
            final IommuDomain d5 = iommu.allocPaging(iommu.device(DEV1), 0);
            assertEquals((1L << 39) - 1, d3.apertureLast());
            assertEquals((1L << 57) - 1, d5.apertureLast(), "5 levels, MGAW 57");
            assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> iommu.attach(iommu.device(DEV1), d3)).errno(),
                    "a 3-level domain does not fit a 5-level-only unit");
            for (var pair : List.of(new Object[] {iommu.device(DEV0), d3}, new Object[] {iommu.device(DEV1), d5})) {
                final IommuDevice dev = (IommuDevice) pair[0];
                final IommuDomain d = (IommuDomain) pair[1];
                final long frame = rig.kernel.frames().allocZeroedRun(0);
                d.map(0x7000_0000L, frame, PAGE, RW);
                iommu.attach(dev, d);
                final DeviceBar bar = rig.bar(dev.bdf().equals(DEV0) ? 0 : 1);
                final WorkloadSettings s = WorkloadSettings.writeVerify(0x7000_0000L, PAGE, 256, 9);
                bar.start(s);
                bar.awaitSeq(2 * s.slots());
                bar.stop();
                assertEquals(0, bar.counters().faults(), bar.counters().toString());
                assertTrue(new RecordChecker(rig.machine.board().memory()).check(bar.window(), d::iovaToPhys).clean());
            }
        }
    }

    /**
     * Table pages are freed only after the invalidation that covers them completed, and that one
     * has IH = 0, so the paging-structure caches let go of the directory entries too. With a tiny
     * IOTLB (walks all the time), poisoned free frames (a walk of a freed page sees reserved bits,
     * a DMA into one breaks the poison) and devices running over IOVAs that churn, nothing may
     * show a use-after-free. (A driver that flushed with IH = 1 fails here: its devices walk
     * freed, poisoned tables through cached PDEs.)
     */
    @Test
    void freedTablePagesAreNeverWalked() {
        final MachineConfig config = MachineConfig.small().withMemorySize(128 * MIB)
                .withUnits(List.of(UnitConfig.DEFAULT.withCaches(4, 4)));
        try (KernelRig rig = KernelRig.boot(dir, config, "page_poison=on")) {
            final IommuCore iommu = rig.kernel.iommu();
            final IommuDomain d = iommu.allocPaging(iommu.device(DEV0), 0);
            iommu.attach(iommu.device(DEV0), d);
            iommu.attach(iommu.device(DEV1), d);
            // Device 0: a stable window that must never fault.
            final long stable = 0x10_0000L;
            d.map(stable, rig.kernel.frames().allocZeroedRun(4), 16 * PAGE, RW);
            final DeviceBar bar0 = rig.bar(0);
            bar0.start(WorkloadSettings.writeVerify(stable, 16 * PAGE, 512, 1));
            // Device 1: 8 chunks of 2 MiB that the test maps and unmaps underneath it.
            final long churn = 0x4000_0000L;
            final long data = rig.kernel.frames().allocZeroedRun(12); // 16 MiB of targets
            final DeviceBar bar1 = rig.bar(1);
            bar1.start(WorkloadSettings.writeVerify(churn, 16 * MIB, 4096, 1));
            final Random rnd = new Random(7);
            final BitSet mapped = new BitSet(8);
            final long deadline = System.nanoTime() + 2_000_000_000L;
            int ops = 0;
            while (System.nanoTime() < deadline || ops < 200) {
                final int k = rnd.nextInt(8);
                final long iova = churn + k * 2 * MIB;
                if (mapped.get(k)) {
                    // Whole chunks, sometimes several at once: the level-1 tables under them are freed.
                    int n = 1;
                    while (k + n < 8 && mapped.get(k + n) && rnd.nextBoolean()) {
                        n++;
                    }
                    assertTrue(d.unmap(iova, n * 2 * MIB) >= n * (2 * MIB - PAGE));
                    mapped.clear(k, k + n);
                } else if (rnd.nextBoolean()) {
                    d.map(iova, data + k * 2 * MIB + PAGE, 2 * MIB - PAGE, RW); // 4 KiB leaves: a table page
                    mapped.set(k);
                } else {
                    d.map(iova, data + k * 2 * MIB, 2 * MIB, RW); // one 2 MiB leaf
                    mapped.set(k);
                }
                ops++;
            }
            bar0.stop();
            bar1.stop();
            final DeviceCounters c0 = bar0.counters();
            final DeviceCounters c1 = bar1.counters();
            assertEquals(0, c0.faults(), "the stable window never faulted: " + c0);
            assertEquals(0, c0.corrupt(), c0.toString());
            assertTrue(c1.ops() > 0 && c1.faults() > 0, "the churned window saw both: " + c1);
            assertEquals(0, c1.corrupt(), c1.toString());
            assertEquals(c1.faults(), c1.faults(FaultReason.WRITE) + c1.faults(FaultReason.READ),
                    "only not-present faults, never a poisoned entry: " + c1);
            // Hand out every free frame: the poison check sees any write into a freed one.
            while (rig.kernel.frames().stats().freeFrames() > 0) {
                rig.kernel.frames().allocRun(0);
            }
            assertEquals(0, rig.kernel.frames().stats().poisonViolations());
        }
    }

    private static void awaitFaults(final DeviceBar bar, final long n) {
        final long deadline = System.nanoTime() + 10_000_000_000L;
        while (bar.counters().faults() < n) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("device never faulted: " + bar.counters());
            }
            Thread.onSpinWait();
        }
    }

    /** Leaves at {@code level} under {@code table} (at {@code tableLevel}). */
    private static int countLeaves(final PhysicalMemory mem, final long table, final int tableLevel, final int level) {
        int n = 0;
        for (int i = 0; i < SlPte.ENTRIES; i++) {
            final long pte = mem.load64(table + i * 8L);
            if (!SlPte.present(pte)) {
                continue;
            }
            final boolean leaf = tableLevel == 1 || SlPte.largeLeaf(pte);
            if (leaf) {
                n += tableLevel == level ? 1 : 0;
            } else if (tableLevel > level) {
                n += countLeaves(mem, SlPte.address(pte), tableLevel - 1, level);
            }
        }
        return n;
    }
}
