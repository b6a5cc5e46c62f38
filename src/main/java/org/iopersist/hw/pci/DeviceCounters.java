package org.iopersist.hw.pci;

import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.vtd.FaultReason;

/**
 * The counters of a device's BAR, read once each (volatile loads, not one atomic snapshot: a
 * running device may move between two reads).
 *
 * @param nextSeq        NEXT_SEQ: the sequence number the workload uses next
 * @param ops            OPS: records completed with no fault and no mismatch
 * @param bytes          BYTES: bytes moved by DMA that completed (a write and its read-back count twice)
 * @param corrupt        CORRUPT: records read back different from what was written, or invalid in VERIFY mode
 * @param interrupts     INTERRUPTS: DMA writes into the interrupt window
 * @param faults         FAULTS: translation faults of any reason
 * @param maxGapNanos    MAX_GAP_NS: the longest time between two successive successful completions
 * @param faultsByReason FAULT_REASON[0..15], indexed by VT-d fault reason code (a private copy)
 */
public record DeviceCounters(long nextSeq, long ops, long bytes, long corrupt, long interrupts, long faults,
                             long maxGapNanos, long[] faultsByReason) {

    public DeviceCounters {
        faultsByReason = faultsByReason.clone();
        if (faultsByReason.length != DeviceRegisters.FAULT_REASON_SLOTS) {
            throw new IllegalArgumentException("faultsByReason needs " + DeviceRegisters.FAULT_REASON_SLOTS + " entries");
        }
    }

    /** Reads the counters of {@code bar}. */
    public static DeviceCounters readFrom(final Mmio.Window bar) {
        final long[] byReason = new long[DeviceRegisters.FAULT_REASON_SLOTS];
        for (int r = 0; r < byReason.length; r++) {
            byReason[r] = bar.read64(DeviceRegisters.faultReason(r));
        }
        return new DeviceCounters(bar.read64(DeviceRegisters.NEXT_SEQ), bar.read64(DeviceRegisters.OPS),
                bar.read64(DeviceRegisters.BYTES), bar.read64(DeviceRegisters.CORRUPT),
                bar.read64(DeviceRegisters.INTERRUPTS), bar.read64(DeviceRegisters.FAULTS),
                bar.read64(DeviceRegisters.MAX_GAP_NS), byReason);
    }

    /** Faults counted for {@code reason}. */
    public long faults(final FaultReason reason) {
        return faultsByReason[reason.code];
    }

    /** A copy of the per-reason fault counters, indexed by reason code. */
    @Override
    public long[] faultsByReason() {
        return faultsByReason.clone();
    }

    @Override
    public boolean equals(final Object o) {
        return o instanceof DeviceCounters c && nextSeq == c.nextSeq && ops == c.ops && bytes == c.bytes
                && corrupt == c.corrupt && interrupts == c.interrupts && faults == c.faults
                && maxGapNanos == c.maxGapNanos && java.util.Arrays.equals(faultsByReason, c.faultsByReason);
    }

    @Override
    public int hashCode() {
        return java.util.Objects.hash(nextSeq, ops, bytes, corrupt, interrupts, faults, maxGapNanos,
                java.util.Arrays.hashCode(faultsByReason));
    }

    @Override
    public String toString() {
        final StringBuilder sb = new StringBuilder();
        sb.append("seq=").append(nextSeq).append(" ops=").append(ops).append(" bytes=").append(bytes)
                .append(" corrupt=").append(corrupt).append(" interrupts=").append(interrupts)
                .append(" faults=").append(faults).append(" maxGap=").append(maxGapNanos).append("ns");
        for (int r = 0; r < faultsByReason.length; r++) {
            if (faultsByReason[r] != 0) {
                final FaultReason reason = FaultReason.ofCode(r);
                sb.append(' ').append(reason != null ? reason.name() : "reason" + r).append('=').append(faultsByReason[r]);
            }
        }
        return sb.toString();
    }
}
