package org.iopersist.hw.pci;

/**
 * What a device's workload does with each record slot of its window; the value of the BAR's MODE
 * register is {@link #code}.
 */
public enum WorkloadMode {
    /** Write the record, then read it back in the same DMA transaction and compare. */
    WRITE_VERIFY(1),
    /** Write the record only (a CPU-side checker verifies it later). */
    WRITE(2),
    /**
     * Read the record already in the slot and check it: magic, checksum, source-id, IOVA, generation,
     * and a sequence number that belongs to this slot. Nothing is written.
     */
    VERIFY(3),
    /**
     * A hostile guest: every step reads or writes 1 to record-size bytes at a random IOVA, a quarter
     * of them inside the window, a quarter within 1 GiB of it, a quarter anywhere below 2^48, a
     * quarter anywhere below 2^57 (past every unit's MGAW). Writes carry a pattern of their own
     * (0xBAD, the source-id, the step); nothing is checked, the counters say what went through
     * (OPS) and what faulted (FAULTS). The random walk is seeded by the generation and the source-id,
     * so a run repeats.
     */
    HOSTILE(4);

    private static final WorkloadMode[] BY_CODE = {null, WRITE_VERIFY, WRITE, VERIFY, HOSTILE};

    public final int code;

    WorkloadMode(final int code) {
        this.code = code;
    }

    /** The mode for a MODE register value, or null if it names none. */
    public static WorkloadMode ofCode(final int code) {
        return code > 0 && code < BY_CODE.length ? BY_CODE[code] : null;
    }
}
