package org.iopersist.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.HdrHistogram.Histogram;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.mm.PhysRange;
import org.iopersist.testing.Trees;

/**
 * How a live update scales with guest RAM (issue 20): one machine per guest size and leaf size,
 * guest RAM laid out as q35 (3 GiB at IOVA 0, the rest from 4 GiB) in one area per region, two
 * devices doing DMA. The leaf size is the machine's: the VT-d unit's CAP.SLLPS offers 4 KiB only,
 * 2 MiB, or 2 MiB and 1 GiB, and the driver maps with the largest leaf that fits.
 *
 * <p>Per point: boot from the handover and VMM blackout (p50 over back-to-back updates after
 * {@link #WARM_UPDATES} warm-ups), then, devices stopped, the rebuild: pin and map all of guest RAM in a freshly
 * cold-booted kernel (p50 of a few, {@link UpdateRig#rebuildInFreshKernel}). The footprint is taken
 * after the updates, devices running: the JVM's live heap, the process's RSS, and the memory file's
 * disk use.
 */
final class ScalingBench {
    private static final long GIB = UpdateRig.GIB;

    /** Leaf sizes, as CAP.SLLPS offers them. */
    enum Leaf {
        K4("4 KiB", 0), M2("2 MiB", 1), G1("1 GiB", 3);

        final String label;
        final int sllps;

        Leaf(final String label, final int sllps) {
            this.label = label;
            this.sllps = sllps;
        }
    }

    /**
     * Updates at the measured size before the timed ones: the loops whose trip count grows with the
     * guest (the adoption walk, guestmemfs's bitmap) ran only briefly in the 1 GiB warm-up, and the
     * first large updates would time the JIT compiling them.
     */
    static final int WARM_UPDATES = 2;

    /**
     * Dry runs of the next boot's validation in each warm-up update ({@link UpdateRig#liveUpdate(int)}):
     * its loops over table chunks and tracker nodes run a thousand times at 1 TiB with 4 KiB leaves,
     * and two boots would still run them in the interpreter, a few ms that are the JIT's, not the
     * kernel's.
     */
    static final int WARM_DRY_RUNS = 200;

    /** One machine: {@code measured} timed updates after {@link #WARM_UPDATES}, {@code rebuilds} rebuilds. */
    record Point(long guestGib, Leaf leaf, int measured, int rebuilds) {
        String label() {
            return size(guestGib) + ", " + leaf.label + " leaves";
        }
    }

    /**
     * Times in ms (p50), sizes in bytes. {@code leaves} counts the VT-d leaves that map guest RAM
     * (1 GiB, 2 MiB, 4 KiB). {@code diskPerUntouchedGib} is the memory file's data inside the
     * guestmemfs carve-out, less the devices' windows, per GiB of guest RAM no device touched.
     * {@code ownJvm}: measured in a JVM that ran nothing else but its warm-up.
     */
    record Result(long guestGib, Leaf leaf, long[] leaves, int updates, double bootMs, double blackoutMs, double scrubMs,
                  int rebuilds, double rebuildMs, long heapBytes, Footprint.Rss rss, long fileDiskBytes,
                  double diskPerUntouchedGib, long faults, long corrupt, boolean recordsInPlace, boolean ownJvm) {
        double rebuildPerBoot() {
            return rebuildMs / bootMs;
        }

        String label() {
            return size(guestGib) + ", " + leaf.label + " leaves";
        }
    }

    private ScalingBench() {
    }

    static String size(final long gib) {
        return gib >= 1024 && gib % 1024 == 0 ? gib / 1024 + " TiB" : gib + " GiB";
    }

    /**
     * The points of a run, in ascending guest size. 4 KiB leaves fit the box at every size: at 1 TiB
     * they are 268 M leaves and 2 GiB of tables in machine memory, and the point takes about 20 s,
     * so it gets fewer updates and rebuilds.
     */
    static List<Point> points(final boolean quick) {
        final List<Point> out = new ArrayList<>();
        final long[] sizes = quick ? new long[] {1, 4} : new long[] {1, 16, 256, 1024};
        for (long gib : sizes) {
            for (Leaf leaf : Leaf.values()) {
                final boolean slow = leaf == Leaf.K4 && gib >= 256;
                out.add(quick ? new Point(gib, leaf, 2, 1) : new Point(gib, leaf, slow ? 7 : 15, slow ? 2 : 5));
            }
        }
        return out;
    }

    /**
     * Runs every point; with {@code fork}, each in a JVM of its own (warmed up on a 1 GiB guest of
     * the same leaf size first), so one point's heap and RSS are not another's high-water mark.
     */
    static List<Result> runAll(final Path work, final List<Point> points, final boolean fork) throws Exception {
        final List<Result> out = new ArrayList<>();
        for (Point p : points) {
            final Path dir = Files.createDirectories(work.resolve("scale-" + p.guestGib() + "-" + p.leaf().name()));
            System.out.printf("scaling: %s ...%n", p.label());
            Bench.phase("scaling " + p.label());
            final long t0 = System.nanoTime();
            final Result r = fork ? runForked(dir, p) : run(dir, p, false);
            System.out.printf("scaling: %s: boot %.1f ms, blackout %.1f ms, scrub %.1f ms, rebuild %.1f ms, heap %.1f MiB, RSS %d MiB, "
                            + "%d faults (%.0f s)%n", p.label(), r.bootMs(), r.blackoutMs(), r.scrubMs(), r.rebuildMs(), r.heapBytes() / 1048576.0,
                    r.rss().total() >> 20, r.faults(), (System.nanoTime() - t0) / 1e9);
            out.add(r);
            Trees.delete(dir);
        }
        return out;
    }

    private static final String RESULT = "scaling-result: ";

    private static Result runForked(final Path dir, final Point p) throws Exception {
        final List<String> cmd = List.of(ProcessHandle.current().info().command().orElse("java"),
                "--enable-native-access=ALL-UNNAMED", "-Xmx4g", "-cp", System.getProperty("java.class.path"),
                ScalingBench.class.getName(), dir.toString(), Long.toString(p.guestGib()), p.leaf().name(),
                Integer.toString(p.measured()), Integer.toString(p.rebuilds()));
        final Process proc = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final StringBuilder log = new StringBuilder();
        Result result = null;
        try (var lines = proc.inputReader().lines()) {
            for (String line : (Iterable<String>) lines::iterator) {
                if (line.startsWith(RESULT)) {
                    result = Bench.json().readValue(line.substring(RESULT.length()), Result.class);
                } else {
                    log.append(line).append('\n');
                }
            }
        }
        final int exit = proc.waitFor();
        if (exit != 0 || result == null) {
            throw new IllegalStateException("scaling " + p.label() + ": the JVM running it exited " + exit + ":\n" + log);
        }
        return result;
    }

    /** A forked point: {@code DIR GIB LEAF MEASURED REBUILDS}; prints its result as one JSON line. */
    public static void main(final String[] args) throws Exception {
        final Path dir = Path.of(args[0]);
        final Leaf leaf = Leaf.valueOf(args[2]);
        // Compiles the update, restore and map paths of this leaf size before anything is timed.
        run(Files.createDirectories(dir.resolve("warm")), new Point(1, leaf, 40, 1), true);
        Trees.delete(dir.resolve("warm"));
        final Result r = run(Files.createDirectories(dir.resolve("run")),
                new Point(Long.parseLong(args[1]), leaf, Integer.parseInt(args[3]), Integer.parseInt(args[4])), true);
        System.out.println(RESULT + new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(r));
        System.exit(0);
    }

    static Result run(final Path work, final Point p, final boolean ownJvm) throws Exception {
        final long guestBytes = p.guestGib() * GIB;
        final long carveOut = UpdateRig.carveOutBytes(guestBytes, true);
        final MachineConfig config = MachineConfig.small()
                .withUnits(List.of(UnitConfig.DEFAULT.withSllps(p.leaf().sllps)))
                .withMemorySize(UpdateRig.machineBytes(carveOut, p.leaf() == Leaf.K4));
        final Histogram boot = new Histogram(3);
        final Histogram blackout = new Histogram(3);
        final Histogram scrub = new Histogram(3);
        final Histogram rebuild = new Histogram(3);
        try (UpdateRig rig = UpdateRig.start(work, config, guestBytes, 1, carveOut)) {
            final long[] leaves = leaves(rig, guestBytes);
            for (int u = 0; u < WARM_UPDATES + p.measured(); u++) {
                if (u >= WARM_UPDATES) {
                    // The heap emptied before a timed update: a kernel has no collector, and a young
                    // pause (the scrub before leaves garbage at 1 TiB) would otherwise land in some boots.
                    System.gc();
                }
                final UpdateRig.Update up = rig.liveUpdate(u < WARM_UPDATES ? WARM_DRY_RUNS : 0);
                if (u >= WARM_UPDATES) {
                    boot.recordValue(up.bootNanos());
                    blackout.recordValue(up.blackoutNanos());
                    scrub.recordValue(Math.max(1, up.scrubNanos()));
                }
            }
            final long heap = Footprint.liveHeapBytes();
            final Footprint.Rss rss = Footprint.rss();
            final PhysicalMemory memory = rig.machine().board().memory();
            final PhysRange carved = rig.kernel().guestmemfsRegion();
            final long[] windows = new long[2 * rig.devices()];
            for (int i = 0; i < rig.devices(); i++) {
                // Each window is 1 MiB inside one 2 MiB guestmemfs block, so contiguous in memory.
                windows[2 * i] = rig.ram().physOf((1 + i) * UpdateRig.MIB);
                windows[2 * i + 1] = windows[2 * i] + UpdateRig.MIB;
            }
            final long untouched = guestBytes - rig.devices() * UpdateRig.MIB;
            final double diskPerGib = Footprint.dataBytes(memory.path(), carved.start(), carved.end(), windows)
                    / ((double) untouched / GIB);
            final long fileDisk = memory.allocatedBytes();
            final UpdateRig.Dma dma = rig.stopDevices();
            for (int k = 0; k < p.rebuilds(); k++) {
                rebuild.recordValue(rig.rebuildInFreshKernel());
            }
            return new Result(p.guestGib(), p.leaf(), leaves, p.measured(), ms(boot), ms(blackout), ms(scrub), p.rebuilds(), ms(rebuild),
                    heap, rss, fileDisk, diskPerGib, dma.faults(), dma.corrupt(), dma.recordsInPlace(), ownJvm);
        }
    }

    private static double ms(final Histogram h) {
        return h.getValueAtPercentile(50) / 1e6;
    }

    /**
     * The leaves mapping guest RAM in device 0's domain, read from the table in memory: 1 GiB and
     * 2 MiB leaves counted, 4 KiB leaves the rest of guest RAM (so no leaf table is read).
     */
    private static long[] leaves(final UpdateRig rig, final long guestBytes) {
        final var iommu = rig.kernel().iommu();
        final IommuDomain domain = iommu.domainOf(iommu.devices().get(0));
        final int levels = 31 - Integer.numberOfLeadingZeros(rig.machine().board().config().units().get(0).levels());
        final long[] big = new long[2];
        // A VT-d domain's handover key is its top-level table.
        count(rig.machine().board().memory(), domain.ops().handoverKey(), levels, big);
        return new long[] {big[0], big[1], (guestBytes - big[0] * GIB - big[1] * (2 * UpdateRig.MIB)) >> 12};
    }

    private static void count(final PhysicalMemory memory, final long table, final int level, final long[] big) {
        for (int idx = 0; idx < SlPte.ENTRIES; idx++) {
            final long pte = memory.load64(table + idx * SlPte.SIZE);
            if (!SlPte.present(pte)) {
                continue;
            }
            if (level <= 3 && SlPte.largeLeaf(pte)) {
                big[level == 3 ? 0 : 1]++;
            } else if (level > 2) {
                count(memory, SlPte.address(pte), level - 1, big);
            }
        }
    }
}
