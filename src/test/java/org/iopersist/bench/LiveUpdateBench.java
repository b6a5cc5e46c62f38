package org.iopersist.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.HdrHistogram.Histogram;
import org.iopersist.hw.MachineConfig;
import org.iopersist.testing.Trees;

/**
 * Live updates back to back on one machine, as the demo does them ({@link UpdateRig#liveUpdate}).
 * Two devices write and verify records the whole time, one every 100 µs each. Each phase goes into
 * a histogram; the first updates warm the JVM.
 */
final class LiveUpdateBench {
    private static final long MIB = 1L << 20;

    /** Guest RAM on guestmemfs, mapped into the persistent IOAS as {@code areas} equal areas. */
    record Scenario(long guestRamMib, int areas) {
        String label() {
            return (guestRamMib >= (1L << 20) && guestRamMib % (1L << 20) == 0 ? (guestRamMib >> 20) + " TiB"
                    : guestRamMib >= 1024 ? guestRamMib / 1024 + " GiB" : guestRamMib + " MiB") + ", " + areas
                    + (areas == 1 ? " area" : " areas");
        }
    }

    /** Milliseconds at p50 and max of each phase, and what held; {@code luo}: the same scenario the LUO way. */
    record Result(Scenario scenario, int updates, double rebuildMapMs, Phase finalizing, Phase kexec, Phase boot,
                  Phase reopen, Phase blackout, long khoTreeBytes, long iommufdBlobBytes, long faults, long corrupt,
                  boolean recordsInPlace, double longestDmaGapMs, Luo luo) {
    }

    /**
     * The LUO flow's phases: kexec (kexec_load and the reboot, which freezes and serializes the
     * session), boot, retrieve (session, device files, iommufd, RAM, finish), their sum the
     * blackout; and, off it, preserve (a new session for the next update).
     */
    record Luo(Phase kexec, Phase boot, Phase retrieve, Phase blackout, Phase preserve, long khoTreeBytes, long luoBlobBytes,
               long faults, long corrupt, boolean recordsInPlace) {
    }

    record Phase(double p50Ms, double p90Ms, double maxMs) {
        static Phase of(final Histogram h) {
            return new Phase(h.getValueAtPercentile(50) / 1e6, h.getValueAtPercentile(90) / 1e6, h.getMaxValue() / 1e6);
        }
    }

    private LiveUpdateBench() {
    }

    static Result run(final Path work, final Scenario s, final int warmup, final int measured) throws Exception {
        final long guestBytes = s.guestRamMib() * MIB;
        final MachineConfig config = MachineConfig.small().withMemorySize(guestBytes + 1024 * MIB);
        final Histogram finalize = new Histogram(3);
        final Histogram kexec = new Histogram(3);
        final Histogram boot = new Histogram(3);
        final Histogram reopen = new Histogram(3);
        final Histogram blackout = new Histogram(3);
        long treeBytes = 0;
        long blobBytes = 0;
        try (UpdateRig rig = UpdateRig.start(work, config, guestBytes, s.areas(), UpdateRig.carveOutBytes(guestBytes, false))) {
            for (int u = 0; u < warmup + measured; u++) {
                Bench.phase(String.format("live update %s: update %d of %d", s.label(), u + 1, warmup + measured));
                final UpdateRig.Update up = rig.liveUpdate(u < warmup ? ScalingBench.WARM_DRY_RUNS : 0);
                if (u >= warmup) {
                    finalize.recordValue(up.finalizeNanos());
                    kexec.recordValue(up.kexecNanos());
                    boot.recordValue(up.bootNanos());
                    reopen.recordValue(up.reopenNanos());
                    blackout.recordValue(up.blackoutNanos());
                }
                if (u == 0) {
                    blobBytes = up.blobBytes();
                    treeBytes = rig.kernel().liveUpdate().incoming().setup().fdtSize();
                }
            }
            final UpdateRig.Dma dma = rig.stopDevices();
            // With the devices stopped: what rebuilding the mappings would cost a warm kernel (the
            // alternative to adopting them), as the p50 of a few full map-and-unmap cycles.
            final double rebuildMs = rig.remapWarm(7);
            final Luo luo = runLuo(work.resolve("luo"), s, warmup, measured);
            return new Result(s, measured, rebuildMs, Phase.of(finalize), Phase.of(kexec), Phase.of(boot),
                    Phase.of(reopen), Phase.of(blackout), treeBytes, blobBytes, dma.faults(), dma.corrupt(),
                    dma.recordsInPlace(), dma.longestGapMs(), luo);
        }
    }

    /** The same scenario the LUO way: guest RAM in a sealed memfd, preserved in a session with the iommufd and devices. */
    static Luo runLuo(final Path work, final Scenario s, final int warmup, final int measured) throws Exception {
        final long guestBytes = s.guestRamMib() * MIB;
        final MachineConfig config = MachineConfig.small().withMemorySize(guestBytes + 1024 * MIB);
        final Histogram kexec = new Histogram(3);
        final Histogram boot = new Histogram(3);
        final Histogram retrieve = new Histogram(3);
        final Histogram blackout = new Histogram(3);
        final Histogram preserve = new Histogram(3);
        long treeBytes = 0;
        long blobBytes = 0;
        try (UpdateRig rig = UpdateRig.start(Files.createDirectories(work), config, guestBytes, s.areas(), 0, UpdateRig.Flow.LUO)) {
            for (int u = 0; u < warmup + measured; u++) {
                final UpdateRig.Update up = rig.liveUpdate(u < warmup ? ScalingBench.WARM_DRY_RUNS : 0);
                if (u >= warmup) {
                    kexec.recordValue(up.kexecNanos());
                    boot.recordValue(up.bootNanos());
                    retrieve.recordValue(up.reopenNanos());
                    blackout.recordValue(up.blackoutNanos());
                    preserve.recordValue(up.preserveNanos());
                }
                if (u == 0) {
                    blobBytes = up.blobBytes();
                    treeBytes = rig.kernel().liveUpdate().incoming().setup().fdtSize();
                }
            }
            final UpdateRig.Dma dma = rig.stopDevices();
            return new Luo(Phase.of(kexec), Phase.of(boot), Phase.of(retrieve), Phase.of(blackout), Phase.of(preserve), treeBytes,
                    blobBytes, dma.faults(), dma.corrupt(), dma.recordsInPlace());
        }
    }

    static List<Result> runAll(final Path work, final List<Scenario> scenarios, final int warmup, final int measured)
            throws Exception {
        final List<Result> out = new ArrayList<>();
        for (Scenario s : scenarios) {
            final Path dir = Files.createDirectories(work.resolve("lu-" + s.guestRamMib() + "-" + s.areas()));
            System.out.printf("live update: %s ...%n", s.label());
            final Result r = run(dir, s, warmup, measured);
            System.out.printf("live update: %s: blackout p50 %.1f ms (LUO %.1f ms), boot p50 %.1f ms (LUO %.1f ms), %d faults"
                    + " (LUO %d)%n", s.label(), r.blackout().p50Ms(), r.luo().blackout().p50Ms(), r.boot().p50Ms(),
                    r.luo().boot().p50Ms(), r.faults(), r.luo().faults());
            out.add(r);
            Trees.delete(dir);
        }
        return out;
    }
}
