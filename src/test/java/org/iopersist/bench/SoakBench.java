package org.iopersist.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import org.HdrHistogram.Histogram;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.init.Accounting;
import org.iopersist.kernel.init.Kernel;

/**
 * {@code scripts/bench --soak N}: N live updates back to back on one machine, both devices writing
 * and verifying records unpaced (back to back, as fast as this host runs them), and between two
 * updates the VMM changes what it hands over: it maps a 2 MiB piece of guest RAM at a new IOVA and
 * unmaps the one it mapped before. After every update the new kernel's books are read once the VMM
 * has taken its context back: each process charged what its areas pin, no freed frame written to,
 * nothing of the handover left unclaimed after finish, and the frames in use level (a leak would make
 * them climb update after update). At the end the devices stop and every record is checked where
 * its IOVA says.
 */
final class SoakBench {
    private static final long MIB = 1L << 20;
    private static final long GUEST = 64 * MIB;
    /** Pieces mapped between updates go above guest RAM, 2 MiB apart, alternating between two places. */
    private static final long EXTRA_IOVA = 1L << 40;

    /** What N updates did. {@code frameDrift}: frames in use after the last update less after the first. */
    record Result(int updates, LiveUpdateBench.Phase blackout, double blackoutP99Ms, long faults, long corrupt,
                  boolean recordsInPlace, long records, long frameDrift, long pinMismatches, long poisonViolations,
                  long unclaimedAfterFinish, double longestDmaGapMs) {
        boolean clean() {
            return faults == 0 && corrupt == 0 && recordsInPlace && frameDrift <= 0 && pinMismatches == 0 && poisonViolations == 0
                    && unclaimedAfterFinish == 0;
        }
    }

    private SoakBench() {
    }

    static Result run(final Path work, final int updates) throws Exception {
        final MachineConfig config = MachineConfig.small().withMemorySize(GUEST + 1024 * MIB);
        final Histogram blackout = new Histogram(3);
        long firstFrames = -1;
        long lastFrames = -1;
        long mismatches = 0;
        long unclaimed = 0;
        // Page poisoning on: a freed frame that anything wrote to afterwards is counted when handed out again.
        try (UpdateRig rig = UpdateRig.start(work, config, GUEST, 4, UpdateRig.carveOutBytes(GUEST, false), UpdateRig.Flow.RFC, " page_poison=on")) {
            rig.unpace();
            long mapped = -1;
            for (int u = 0; u < updates; u++) {
                // The VMM's changes between updates: a new piece in, the last one out.
                final long iova = EXTRA_IOVA + (u % 2) * 2 * MIB;
                rig.iommufd().mapFixed(rig.ioas(), rig.ram().va() + (u % 8) * 2 * MIB, 2 * MIB, iova);
                if (mapped >= 0) {
                    rig.iommufd().unmap(rig.ioas(), mapped, 2 * MIB);
                }
                mapped = iova;
                final UpdateRig.Update up = rig.liveUpdate();
                blackout.recordValue(up.blackoutNanos());
                final Kernel k = rig.kernel();
                final Accounting a = k.accounting();
                mismatches += a.pinMismatches().size();
                unclaimed += k.liveUpdate().handoverFramesLeft();
                lastFrames = a.allocatedFrames();
                if (u == 0) {
                    firstFrames = lastFrames;
                }
                if ((u + 1) % 10 == 0 || u + 1 == updates) {
                    System.out.printf(Locale.ROOT, "soak: %d of %d updates, blackout p50 %.1f ms%n", u + 1, updates,
                            blackout.getValueAtPercentile(50) / 1e6);
                }
            }
            final long poison = rig.kernel().frames().stats().poisonViolations();
            final long records = ops(rig);
            final UpdateRig.Dma dma = rig.stopDevices();
            return new Result(updates, LiveUpdateBench.Phase.of(blackout), blackout.getValueAtPercentile(99) / 1e6, dma.faults(),
                    dma.corrupt(), dma.recordsInPlace(), records, lastFrames - firstFrames, mismatches, poison, unclaimed,
                    dma.longestGapMs());
        }
    }

    private static long ops(final UpdateRig rig) {
        long n = 0;
        for (int i = 0; i < rig.devices(); i++) {
            n += new org.iopersist.hw.pci.DeviceBar(rig.machine().board().deviceBar(i)).counters().ops();
        }
        return n;
    }

    /** The report's section, as {@code docs/bench/soak.md} keeps it until the next soak. */
    static String section(final Result r, final String date, final String machine) {
        final StringBuilder b = new StringBuilder();
        b.append("\n## Soak\n\n");
        b.append("`scripts/bench --soak ").append(r.updates()).append("` on ").append(date).append(" (").append(machine)
                .append("): ").append(r.updates()).append(" live updates back to back on one machine, both devices writing\n");
        b.append("and verifying records unpaced, and between two updates the VMM maps a 2 MiB piece of guest RAM at a\n");
        b.append("new IOVA and unmaps the last one, so every handover differs from the one before. After each update\n");
        b.append("the new kernel's books are read once the VMM has its context back; frame drift is the frames in use\n");
        b.append("after the last update less after the first (a leak climbs). Kernels run with `page_poison=on`.\n\n");
        b.append("| updates | blackout p50 / p99 / max ms | records | DMA faults, corrupt | records in place | frame drift | pin mismatches | poison violations | handover left after finish | longest DMA gap |\n");
        b.append("|---|---|---|---|---|---|---|---|---|---|\n");
        b.append(String.format(Locale.ROOT, "| %d | %.1f / %.1f / %.1f | %d | %d, %d | %s | %d | %d | %d | %d frames | %.1f ms |%n",
                r.updates(), r.blackout().p50Ms(), r.blackoutP99Ms(), r.blackout().maxMs(), r.records(), r.faults(), r.corrupt(),
                r.recordsInPlace() ? "yes" : "**no**", r.frameDrift(), r.pinMismatches(), r.poisonViolations(),
                r.unclaimedAfterFinish(), r.longestDmaGapMs()));
        b.append("\nNothing lost: ").append(r.clean() ? "yes." : "**no**.").append('\n');
        return b.toString();
    }

    /** Runs the soak and writes its section and raw numbers under {@code docs/bench} next to {@code report}. */
    static Result runAndWrite(final Path work, final int updates, final Path report, final String date, final String machine)
            throws Exception {
        final Result r = run(Files.createDirectories(work.resolve("soak")), updates);
        final Path dir = Files.createDirectories(report.toAbsolutePath().getParent().resolve("docs").resolve("bench"));
        Files.writeString(dir.resolve("soak.md"), section(r, date, machine));
        Bench.json().writeValue(dir.resolve("soak.json").toFile(), r);
        return r;
    }
}
