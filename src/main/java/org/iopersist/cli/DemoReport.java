package org.iopersist.cli;

import java.util.List;
import java.util.Map;

/**
 * What {@code iopersist demo --out DIR} writes to {@code report.json} (and {@code --json} prints):
 * the run's phases, devices, handovers and timeline. Field by field in {@code docs/report.md};
 * {@code docs/report.schema.json} is its JSON Schema. Times are milliseconds; {@code *Ms} fields
 * on the timeline count from the start of the millisecond (the trace bin) in which the devices started.
 *
 * @param schema   always {@link #SCHEMA}
 * @param version  the report format's version, {@link #VERSION}; a field added keeps it, one changed or removed bumps it
 * @param flow     how userspace got its iommufd back: {@code "rfc"} (the seed RFC's sysfs reopen) or {@code "luo"} (a
 *                 /dev/liveupdate session, retrieved by token)
 * @param ok       no faults, no corruption, every record in place, every id kept, every scrub ok
 * @param problems how many of those checks failed
 */
public record DemoReport(String schema, int version, String flow, boolean ok, int problems, Versions versions,
                         Machine machine, Settings settings, List<Kernel> kernels, List<Update> updates,
                         List<Device> devices, Timeline timeline, Files files) {
    public static final String SCHEMA = "iopersist-demo-report";
    public static final int VERSION = 1;

    /**
     * The versions of every format the run used.
     *
     * @param report          this report's format
     * @param syscallAbi      the wire ABI's version (the hello's)
     * @param fdt             the handover's FDT version
     * @param kho             the KHO tree's {@code compatible}
     * @param handover        each subsystem blob's {@code compatible}, by node name, from the first handover
     * @param deviceBar       the device BAR layout's VERSION register
     * @param completionTrace the machine's completion trace format
     */
    public record Versions(int report, int syscallAbi, int fdt, String kho, Map<String, String> handover, int deviceBar,
                           int completionTrace) {
    }

    /** The machine: its directory (gone after the run unless {@code --dir}), memory, units and devices' BDFs. */
    public record Machine(String directory, long memoryBytes, int units, List<String> devices) {
    }

    /** The options the run had, and the kernels' command line. */
    public record Settings(double seconds, long guestRamBytes, int updates, long paceNanos, String cmdline) {
    }

    /**
     * One kernel process.
     *
     * @param boot   {@code "cold"} or {@code "live_update"}, as the kernel reports it
     * @param bootMs the kernel's own boot time, from its first line of code to serving syscalls
     * @param log    its log file, in the output directory (null without {@code --out})
     */
    public record Kernel(int number, long pid, String boot, double bootMs, String log) {
    }

    /**
     * One live update, from kernel {@code number} to kernel {@code number + 1}.
     *
     * @param devIds     each device's iommufd id after the rebind, in device order
     * @param devIdsKept every device got its old id back
     */
    public record Update(int number, Phases phases, Handover handover, List<Integer> devIds, boolean devIdsKept, Scrub scrub) {
    }

    /**
     * The phases of one update, as the VMM timed them.
     *
     * @param finalizeMs       the write of 1 to /sys/kernel/kho/finalize
     * @param kexecMs          reboot(KEXEC) until the old kernel's process has written the boot record and ends
     * @param kexecToServingMs the kexec until the new kernel serves syscalls (its process was staged at kexec_load)
     * @param kernelBootMs     the new kernel's own boot time, as it reports it
     * @param reopenMs         serving until the restarted VMM has reopened its iommufd and rebound every device
     * @param blackoutMs       the VMM's blackout: finalize until the devices are rebound (the handover read excluded)
     * @param handoverReadMs   the demo reading the handover between finalize and kexec, not part of any phase
     */
    public record Phases(double finalizeMs, double kexecMs, double kexecToServingMs, double kernelBootMs, double reopenMs,
                         double blackoutMs, double handoverReadMs) {
    }

    /**
     * What one finalize handed over.
     *
     * @param treeBytes  the KHO tree's totalsize
     * @param blobs      each subsystem's blob
     * @param tracker    the preserved-memory tracker
     * @param totalBytes tree + blobs + tracker
     */
    public record Handover(long treeBytes, List<Blob> blobs, Tracker tracker, long totalBytes) {
    }

    /** A subsystem blob: its node in the KHO tree, its {@code compatible}, where it is and its totalsize. */
    public record Blob(String name, String compatible, long phys, long bytes) {
    }

    /**
     * The preserved-memory tracker.
     *
     * @param nodes           frames of the radix tree (table nodes and leaves)
     * @param leaves          of which leaves (bitmaps of 32768 blocks)
     * @param bytes           nodes * 4096
     * @param preservedFrames 4 KiB frames the leaves mark preserved
     */
    public record Tracker(long nodes, long leaves, long bytes, long preservedFrames) {
    }

    /** The new kernel's leaf-by-leaf check of the adopted tables: its verdict as sysfs shows it. */
    public record Scrub(boolean ok, String verdict) {
    }

    /**
     * One device over the whole run.
     *
     * @param name                    its VFIO cdev, {@code vfioN}
     * @param devId                   its iommufd device id (the same after every update)
     * @param records                 records completed (OPS)
     * @param recordsAfterFirstUpdate records completed after the first finalize
     * @param tracedRecords           records the completion trace counted (equals {@code records} in a run within the trace)
     * @param corrupt                 records read back wrong (CORRUPT)
     * @param longestGapMs            the longest time between two completions, from the device's MAX_GAP_NS
     * @param latencyNs               ns from a record's DMA start to its completion
     * @param checker                 the CPU-side checker: every record at its place in guest RAM
     * @param gaps                    the longest runs of whole milliseconds with no completion (at most 10, in time order)
     */
    public record Device(int index, String name, String bdf, int devId, long records, long recordsAfterFirstUpdate,
                         long tracedRecords, long corrupt, Faults faults, double longestGapMs, Latency latencyNs,
                         Checker checker, List<Gap> gaps) {
    }

    /** Translation faults, in total and by VT-d fault reason name. */
    public record Faults(long total, Map<String, Long> byReason) {
    }

    /** Latency percentiles, ns. */
    public record Latency(long count, long p50, long p90, long p99, long p999, long max) {
    }

    /** The checker's verdict and its counts (slots checked, found in place, and the rest). */
    public record Checker(boolean clean, long checked, long found, long stale, long empty, long corrupt, long unmapped) {
    }

    /**
     * Milliseconds in a row with no record completed.
     *
     * @param startMs  the first, from the devices' start
     * @param lengthMs how many
     * @param during   the update phases it overlaps, {@code "finalize+kexec N"} (finalize to the old kernel's end),
     *                 {@code "boot N"} (to the new kernel serving) or {@code "reopen N"} (to the devices rebound), comma
     *                 separated, or {@code "running"}
     */
    public record Gap(long startMs, long lengthMs, String during) {
    }

    /**
     * The timeline: completions per millisecond come from the machine's completion trace.
     *
     * @param originNanos the trace's origin (CLOCK_MONOTONIC ns)
     * @param startBin    the trace bin (ms) of the devices' start: {@code *Ms} values count from it
     * @param endMs       when the devices stopped
     * @param marks       finalize, kexec, boot and reopen of each update
     * @param image       the chart, in the output directory (null without {@code --out})
     */
    public record Timeline(long originNanos, long startBin, double endMs, List<Mark> marks, String image) {
    }

    /**
     * An instant of an update.
     *
     * @param event {@code finalize} (write 1 begins), {@code kexec} (the old kernel gone), {@code boot} (the new one serves),
     *              {@code reopen} (the devices rebound)
     */
    public record Mark(String event, int update, double ms) {
    }

    /** The files the run wrote into the output directory, by name (null without {@code --out}). */
    public record Files(String report, String timeline, List<String> logs) {
    }
}
