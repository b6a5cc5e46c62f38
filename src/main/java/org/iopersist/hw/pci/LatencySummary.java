package org.iopersist.hw.pci;

import org.iopersist.hw.memory.Mmio;

/**
 * The latency percentiles a device publishes in its BAR (LAT_*): nanoseconds from the start of a
 * record's DMA to its completion, over every successful record since the last RESET.
 *
 * @param count  samples
 * @param p50    median, ns
 * @param p90    90th percentile, ns
 * @param p99    99th percentile, ns
 * @param p999   99.9th percentile, ns
 * @param max    largest sample, ns
 * @param epoch  how many times the device has published (LAT_EPOCH)
 */
public record LatencySummary(long count, long p50, long p90, long p99, long p999, long max, long epoch) {

    /** Reads the LAT_* registers of {@code bar}. */
    public static LatencySummary readFrom(final Mmio.Window bar) {
        return new LatencySummary(bar.read64(DeviceRegisters.LAT_COUNT), bar.read64(DeviceRegisters.LAT_P50_NS),
                bar.read64(DeviceRegisters.LAT_P90_NS), bar.read64(DeviceRegisters.LAT_P99_NS),
                bar.read64(DeviceRegisters.LAT_P999_NS), bar.read64(DeviceRegisters.LAT_MAX_NS),
                bar.read64(DeviceRegisters.LAT_EPOCH));
    }
}
