package org.iopersist.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.HdrHistogram.Histogram;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.testing.Trees;

/**
 * The device-count axis (issue 20): restore should grow with devices, not with memory. One guest
 * size; a machine of {@link #UNITS} VT-d units with the devices spread over them round-robin, all
 * bound to one iommufd and attached to one IOAS, every device doing DMA (the same total record rate
 * at every count, see {@link UpdateRig}).
 */
final class DeviceBench {
    static final int UNITS = 4;

    /** Times in ms (p50 over the measured updates). */
    record Result(int devices, int units, long guestGib, int updates, double bootMs, double reopenMs, double blackoutMs,
                  long iommufdBlobBytes, long faults, long corrupt, boolean recordsInPlace) {
    }

    private DeviceBench() {
    }

    /** {@code devices} behind {@link #UNITS} default units: bus 1 + unit, devices 0.. on each. */
    static MachineConfig machine(final int devices, final long memoryBytes) {
        final List<MachineConfig.DeviceConfig> ds = new ArrayList<>();
        final int[] onUnit = new int[UNITS];
        for (int i = 0; i < devices; i++) {
            final int unit = i % UNITS;
            ds.add(new MachineConfig.DeviceConfig(new Bdf(0, 1 + unit, onUnit[unit]++, 0), unit));
        }
        return new MachineConfig(memoryBytes, Collections.nCopies(UNITS, UnitConfig.DEFAULT), ds);
    }

    static List<Result> runAll(final Path work, final int[] deviceCounts, final long guestGib, final int warmup,
                               final int measured) throws Exception {
        final List<Result> out = new ArrayList<>();
        for (int n : deviceCounts) {
            final Path dir = Files.createDirectories(work.resolve("devices-" + n));
            System.out.printf("devices: %d on %d units, %d GiB ...%n", n, UNITS, guestGib);
            final Result r = run(dir, n, guestGib, warmup, measured);
            System.out.printf("devices: %d: boot %.1f ms, reopen %.1f ms, blackout %.1f ms, %d faults%n", n, r.bootMs(),
                    r.reopenMs(), r.blackoutMs(), r.faults());
            out.add(r);
            Trees.delete(dir);
        }
        return out;
    }

    static Result run(final Path work, final int devices, final long guestGib, final int warmup, final int measured)
            throws Exception {
        final long guestBytes = guestGib * UpdateRig.GIB;
        final Histogram boot = new Histogram(3);
        final Histogram reopen = new Histogram(3);
        final Histogram blackout = new Histogram(3);
        long blobBytes = 0;
        final long carveOut = UpdateRig.carveOutBytes(guestBytes, true);
        try (UpdateRig rig = UpdateRig.start(work, machine(devices, UpdateRig.machineBytes(carveOut, false)), guestBytes, 1,
                carveOut)) {
            for (int u = 0; u < warmup + measured; u++) {
                Bench.phase(String.format("devices %d: update %d of %d", devices, u + 1, warmup + measured));
                final UpdateRig.Update up = rig.liveUpdate();
                if (u >= warmup) {
                    boot.recordValue(up.bootNanos());
                    reopen.recordValue(up.reopenNanos());
                    blackout.recordValue(up.blackoutNanos());
                }
                if (u == 0) {
                    blobBytes = up.blobBytes();
                }
            }
            final UpdateRig.Dma dma = rig.stopDevices();
            return new Result(devices, UNITS, guestGib, measured, ms(boot), ms(reopen), ms(blackout), blobBytes, dma.faults(),
                    dma.corrupt(), dma.recordsInPlace());
        }
    }

    private static double ms(final Histogram h) {
        return h.getValueAtPercentile(50) / 1e6;
    }
}
