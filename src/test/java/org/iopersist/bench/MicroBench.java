package org.iopersist.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.DmaEngine;
import org.iopersist.hw.vtd.RemappingUnit;
import org.iopersist.hw.vtd.Requester;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.iopersist.testing.Trees;

/**
 * The hot paths, on a booted kernel and a real machine: the unit translating a device's DMA
 * (IOTLB hit; IOTLB miss with the PDE cached; both missed), a device's DMA copy, and the VT-d
 * driver writing and clearing page-table entries; with baselines that translate nothing (a load, a
 * 4 KiB copy in machine memory). Calibrate against Linux's iommupt kunit numbers (map 1 x 4 KiB
 * ~55 ns; 256 x 4 KiB or 256 x 2 MiB in one call ~390 ns) and an SMMU's ~290 ns walk.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class MicroBench {
    private static final long MIB = 1L << 20;
    static final int HIT_PAGES = 256; // well inside the 1024-entry IOTLB
    static final int WALK_PAGES = 8192; // 8 x the IOTLB: every access walks
    static final long SPREAD_BASE = 1L << 36; // 8192 pages, one per 2 MiB: the PDE cache cannot hold them
    static final long COPY_IOVA = 0x1000_0000L; // two pages of real frames, for the DMA copy

    @State(Scope.Benchmark)
    public static class World {
        Path dir;
        Machine machine;
        Kernel kernel;
        RemappingUnit unit;
        Requester requester;
        PhysicalMemory memory;
        DmaEngine dma;
        long copyPhys;
        IommuDomain attached;
        IommuDomain detached;
        long phys;
        int hit;
        int walk;

        @Setup(Level.Trial)
        public void boot() throws Exception {
            dir = Files.createTempDirectory("iopersist-jmh");
            machine = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(2048 * MIB)
                    .withUnits(List.of(UnitConfig.DEFAULT))).start();
            kernel = Kernel.boot(machine.board());
            final IommuDevice dev = kernel.iommu().devices().get(0);
            attached = kernel.iommu().allocPaging(dev, 0);
            // Off 2 MiB alignment, so the window gets 4 KiB leaves and the IOTLB one entry per page;
            // page-table targets only: nothing reads them here.
            phys = 1024 * MIB + 4096;
            attached.map(0, phys, (long) WALK_PAGES * 4096, IommuDomain.READ | IommuDomain.WRITE);
            for (int i = 0; i < WALK_PAGES; i++) {
                attached.map(SPREAD_BASE + ((long) i << 21), phys, 4096, IommuDomain.READ | IommuDomain.WRITE);
            }
            // The copy reads and writes its pages, so they are frames of its own, not page-table targets.
            copyPhys = kernel.frames().allocZeroedRun(1);
            attached.map(COPY_IOVA, copyPhys, 2 * 4096, IommuDomain.READ | IommuDomain.WRITE);
            kernel.iommu().attach(dev, attached);
            detached = kernel.iommu().allocPaging(kernel.iommu().devices().get(1), 0);
            unit = machine.units().get(0);
            requester = machine.devices().get(0).requester();
            memory = machine.board().memory();
            dma = machine.devices().get(0).dma(); // the workload is not running: the engine is ours
        }

        @TearDown(Level.Trial)
        public void close() throws Exception {
            machine.close();
            Trees.delete(dir);
        }
    }

    /**
     * The unit translates a DMA address its IOTLB holds, inside a transaction as a device's DMA
     * engine brackets it (begin/end: what lets an invalidation's wait drain in-flight DMA).
     */
    @Benchmark
    public long translateIotlbHit(final World w) {
        final long iova = (long) (w.hit++ & (HIT_PAGES - 1)) << 12;
        w.unit.begin(w.requester);
        try {
            return w.unit.translate(w.requester, iova, false);
        } finally {
            w.unit.end(w.requester);
        }
    }

    /** Baseline for {@link #translateIotlbHit}: a load from machine memory, nothing translated. */
    @Benchmark
    public long rawLoad(final World w) {
        final long offset = (long) (w.hit++ & (HIT_PAGES - 1)) << 12;
        return w.memory.load64(w.phys + offset);
    }

    /**
     * A device's DMA engine copies 4 KiB from one page to the next through its unit (both
     * translations IOTLB hits after the first call), as one transaction.
     */
    @Benchmark
    public long dmaCopy4k(final World w) {
        return w.dma.copy(COPY_IOVA, COPY_IOVA + 4096, 4096);
    }

    /** Baseline for {@link #dmaCopy4k}: the same 4 KiB copied in machine memory, nothing translated. */
    @Benchmark
    public void rawCopy4k(final World w) {
        w.memory.copy(w.copyPhys, w.copyPhys + 4096, 4096);
    }

    /**
     * The IOTLB misses every time; the paging-structure cache holds the PDE (32 MiB of IOVA, 16
     * PDEs), so the walk reads one leaf entry.
     */
    @Benchmark
    public long translateIotlbMiss(final World w) {
        w.walk = (w.walk + 1031) & (WALK_PAGES - 1); // a stride co-prime to the IOTLB's sets
        w.unit.begin(w.requester);
        try {
            return w.unit.translate(w.requester, (long) w.walk << 12, false);
        } finally {
            w.unit.end(w.requester);
        }
    }

    /**
     * The IOTLB and the PDE cache miss every time (one page per 2 MiB over 16 GiB): the walk starts
     * from a cached PDPE and reads a directory and a leaf entry.
     */
    @Benchmark
    public long translateIotlbAndPdeMiss(final World w) {
        w.walk = (w.walk + 1031) & (WALK_PAGES - 1);
        w.unit.begin(w.requester);
        try {
            return w.unit.translate(w.requester, SPREAD_BASE + ((long) w.walk << 21), false);
        } finally {
            w.unit.end(w.requester);
        }
    }

    /** iommu_map + iommu_unmap of one 4 KiB page in a domain no device uses (PTE work only). */
    @Benchmark
    public long mapUnmap4k(final World w) {
        w.detached.map(0x4000_0000L, w.phys, 4096, IommuDomain.READ | IommuDomain.WRITE);
        return w.detached.unmap(0x4000_0000L, 4096);
    }

    /** 256 x 4 KiB mapped in one call, then unmapped in one call. */
    @Benchmark
    public long mapUnmap256x4k(final World w) {
        w.detached.map(0x4010_0000L, w.phys + 4096, 256 * 4096, IommuDomain.READ | IommuDomain.WRITE);
        return w.detached.unmap(0x4010_0000L, 256 * 4096);
    }

    /** 256 x 2 MiB (512 MiB) mapped in one call, then unmapped in one call. */
    @Benchmark
    public long mapUnmap256x2m(final World w) {
        w.detached.map(0x8000_0000L, 0, 256 * 2 * MIB, IommuDomain.READ | IommuDomain.WRITE);
        return w.detached.unmap(0x8000_0000L, 256 * 2 * MIB);
    }

    /**
     * One 4 KiB page in the attached domain: unmap ends with a page-selective IOTLB invalidation
     * and a wait descriptor through the unit's queue, so this is the strict-mode cost.
     */
    @Benchmark
    public long mapUnmap4kWithFlush(final World w) {
        w.attached.map(0x4000_0000L, w.phys, 4096, IommuDomain.READ | IommuDomain.WRITE);
        return w.attached.unmap(0x4000_0000L, 4096);
    }
}
