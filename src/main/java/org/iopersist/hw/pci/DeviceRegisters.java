package org.iopersist.hw.pci;

/**
 * The register layout of a device's BAR: one 4 KiB window of the MMIO file at
 * {@code 0x10000 + index * 0x1000}. All registers are little-endian and naturally aligned; every
 * access goes through {@link org.iopersist.hw.memory.Mmio.Window}'s volatile accessors.
 *
 * <pre>
 *  0x000 +------------------+------------------+
 *        | ID        (RO32) | VERSION   (RO32) |   identity, written at power-on
 *  0x008 | SID       (RO32) | COMMAND   (RW32) |   segment 31:16, source-id 15:0; PCI command (BME)
 *  0x010 | CTRL   (cmd, 32) | STATUS    (32)   |   doorbell and answer
 *  0x018 | ERROR     (RO32) | reserved         |   why the last START was refused
 *        +------------------+------------------+
 *  0x020 | WIN_BASE               (RW64)       |   settings: software writes them,
 *  0x028 | WIN_LENGTH             (RW64)       |   the device latches them at START
 *  0x030 | MODE      (RW32) | RECORD_SIZE(RW32)|
 *  0x038 | GENERATION             (RW64)       |
 *  0x040 | PACE_NS                (RW64)       |
 *  0x048 | MSI_ADDR               (RW64)       |
 *  0x050 | MSI_DATA  (RW32) | MSI_INTERVAL(32) |
 *        +------------------+------------------+
 *  0x100 | NEXT_SEQ               (RO64)       |   counters: the device writes them,
 *  0x108 | OPS                    (RO64)       |   software reads them
 *  0x110 | BYTES                  (RO64)       |
 *  0x118 | CORRUPT                (RO64)       |
 *  0x120 | INTERRUPTS             (RO64)       |
 *  0x128 | FAULTS                 (RO64)       |
 *  0x130 | MAX_GAP_NS             (RO64)       |
 *  0x138 | MASTER_ABORTS          (RO64)       |   records not issued: bus mastering off
 *  0x180 | FAULT_REASON[0..15]    (RO64 each)  |   faults by VT-d reason code (1..13 used)
 *        +------------------+------------------+
 *  0x200 | LAT_COUNT              (RO64)       |   latency percentiles, published
 *  0x208 | LAT_P50_NS .. LAT_MAX_NS (RO64 x 5) |   every ~100 ms, at STOP and on SNAPSHOT
 *  0x230 | LAT_EPOCH              (RO64)       |
 *        +-------------------------------------+
 * </pre>
 *
 * <p><b>Protocol.</b> The MMIO contract of DESIGN.md §3, as for the VT-d registers: software writes
 * the settings, then sets command bits in CTRL with an atomic OR. The device thread polls CTRL,
 * performs each command and clears its bit (atomic AND) once the effect shows in STATUS, so
 * software waits for the bit to clear and then reads STATUS. When several bits are set the device
 * acts in the order STOP, RESET, START, SNAPSHOT, so STOP|START restarts with new settings.
 * STATUS.ERR is write-1-to-clear: software clears it with an atomic AND, never with a plain store,
 * so it cannot lose a RUNNING change the device makes at the same moment.
 *
 * <p><b>Counters</b> are monotonic until RESET (or power-on). NEXT_SEQ is the sequence number the
 * workload will use next; START sets it to 0. Records with sequence numbers below it have been
 * attempted, record {@code n} at slot {@code n mod (WIN_LENGTH / RECORD_SIZE)}.
 */
public final class DeviceRegisters {
    private DeviceRegisters() {
    }

    /** Size of the BAR in bytes. */
    public static final long SIZE = 0x1000;

    // ---- identity
    /** ID (RO32): vendor 15:0, device 31:16; {@link #ID_VALUE}. */
    public static final long ID = 0x000;
    /** VERSION (RO32): layout version of this BAR; {@link #VERSION_VALUE}. */
    public static final long VERSION = 0x004;
    /** SID (RO32): PCI segment 31:16, source-id (bus 15:8, device 7:3, function 2:0) 15:0. */
    public static final long SID = 0x008;

    /**
     * COMMAND (RW32): the PCI command register's bits that matter here. Bus Master Enable (bit 2,
     * as in config space) is set at power-on; with it clear the device issues no DMA at all.
     */
    public static final long COMMAND = 0x00C;
    public static final int COMMAND_BME = 1 << 2;

    // ---- command and status
    /** CTRL (32): command bits {@code CTRL_*}; software sets them, the device clears each when done. */
    public static final long CTRL = 0x010;
    /** STATUS (32): {@code STATUS_*}; the device's answer. ERR is write-1-to-clear. */
    public static final long STATUS = 0x014;
    /** ERROR (RO32): {@code ERR_*}, why the last START was refused. */
    public static final long ERROR = 0x018;

    // ---- settings (latched at START)
    /** WIN_BASE (RW64): IOVA of the window's first byte; 4 KiB aligned. */
    public static final long WIN_BASE = 0x020;
    /** WIN_LENGTH (RW64): window length in bytes; a non-zero multiple of 4 KiB. */
    public static final long WIN_LENGTH = 0x028;
    /** MODE (RW32): a {@link WorkloadMode#code}. */
    public static final long MODE = 0x030;
    /** RECORD_SIZE (RW32): bytes per record; a power of two in 64..4096. */
    public static final long RECORD_SIZE = 0x034;
    /** GENERATION (RW64): carried in every record and seeding its payload. */
    public static final long GENERATION = 0x038;
    /** PACE_NS (RW64): minimum ns from one record's start to the next; 0 (or negative) = back to back. */
    public static final long PACE_NS = 0x040;
    /** MSI_ADDR (RW64): IOVA of the interrupt message write; 4-byte aligned when MSI_INTERVAL is set. */
    public static final long MSI_ADDR = 0x048;
    /** MSI_DATA (RW32): the 32-bit interrupt message. */
    public static final long MSI_DATA = 0x050;
    /** MSI_INTERVAL (RW32, unsigned): successful records per interrupt message; 0 = none. */
    public static final long MSI_INTERVAL = 0x054;

    // ---- counters
    /** NEXT_SEQ (RO64): the sequence number the workload uses next; START sets it to 0. */
    public static final long NEXT_SEQ = 0x100;
    /** OPS (RO64): records completed with no fault and no mismatch. */
    public static final long OPS = 0x108;
    /** BYTES (RO64): bytes moved by DMA transfers that completed (a write and its read-back count twice). */
    public static final long BYTES = 0x110;
    /** CORRUPT (RO64): records read back different from what was written, or invalid in VERIFY mode. */
    public static final long CORRUPT = 0x118;
    /** INTERRUPTS (RO64): DMA writes into the interrupt window. */
    public static final long INTERRUPTS = 0x120;
    /** FAULTS (RO64): translation faults, all reasons. */
    public static final long FAULTS = 0x128;
    /** MAX_GAP_NS (RO64): longest time between two successive successful completions since START or RESET. */
    public static final long MAX_GAP_NS = 0x130;
    /** MASTER_ABORTS (RO64): records the workload could not issue because COMMAND.BME was clear. */
    public static final long MASTER_ABORTS = 0x138;
    /** Base of the per-reason fault counters: reason {@code r} at {@code FAULT_REASON + 8 * r}. */
    public static final long FAULT_REASON = 0x180;
    /** Fault reason codes have 4 bits in this layout (VT-d legacy mode uses 1..13). */
    public static final int FAULT_REASON_SLOTS = 16;

    // ---- latency summary
    /** LAT_COUNT (RO64): latency samples (successful records) since RESET. */
    public static final long LAT_COUNT = 0x200;
    /** LAT_P50_NS (RO64): median latency, ns. */
    public static final long LAT_P50_NS = 0x208;
    /** LAT_P90_NS (RO64): 90th percentile latency, ns. */
    public static final long LAT_P90_NS = 0x210;
    /** LAT_P99_NS (RO64): 99th percentile latency, ns. */
    public static final long LAT_P99_NS = 0x218;
    /** LAT_P999_NS (RO64): 99.9th percentile latency, ns. */
    public static final long LAT_P999_NS = 0x220;
    /** LAT_MAX_NS (RO64): largest latency, ns. */
    public static final long LAT_MAX_NS = 0x228;
    /** Incremented after every publication of the LAT_* registers. */
    public static final long LAT_EPOCH = 0x230;

    /** ID: PCI vendor 0x1234 (the id QEMU's test devices use) in 15:0, device 0xD0A0 in 31:16. */
    public static final int ID_VALUE = 0xD0A0_1234;
    /** Layout version of this BAR. */
    public static final int VERSION_VALUE = 1;

    // CTRL bits: one-shot commands, cleared by the device once done.
    /** Latch the settings and run (refused with STATUS.ERR and ERROR if invalid or already running). */
    public static final int CTRL_START = 1;
    /** Stop after the current record; publishes the latency registers. */
    public static final int CTRL_STOP = 1 << 1;
    /** Zero OPS..MAX_GAP_NS, FAULT_REASON[] and the latency histogram (NEXT_SEQ stays). */
    public static final int CTRL_RESET = 1 << 2;
    /** Publish the latency registers now. */
    public static final int CTRL_SNAPSHOT = 1 << 3;
    /** Every command bit. */
    public static final int CTRL_ALL = CTRL_START | CTRL_STOP | CTRL_RESET | CTRL_SNAPSHOT;

    // STATUS bits.
    /** The workload runs. */
    public static final int STATUS_RUNNING = 1;
    /** The last START was refused (reason in ERROR); write-1-to-clear. */
    public static final int STATUS_ERR = 1 << 1;
    /** The device's engine thread is up and polls CTRL. */
    public static final int STATUS_ALIVE = 1 << 2;

    // ERROR codes.
    /** No error. */
    public static final int ERR_NONE = 0;
    /** WIN_BASE not 4 KiB aligned, WIN_LENGTH zero or not a multiple of 4 KiB, or the window wraps. */
    public static final int ERR_WINDOW = 1;
    /** RECORD_SIZE not a power of two in [{@link DmaRecord#MIN_SIZE}, {@link DmaRecord#MAX_SIZE}]. */
    public static final int ERR_RECORD_SIZE = 2;
    /** MODE not one of {@link WorkloadMode}. */
    public static final int ERR_MODE = 3;
    /** MSI_INTERVAL is set but MSI_ADDR is not 4-byte aligned. */
    public static final int ERR_MSI = 4;
    /** START while the workload runs, without STOP. */
    public static final int ERR_BUSY = 5;
    /** The engine hit an error that is a bug of the model; the device printed it and stopped. */
    public static final int ERR_INTERNAL = 6;

    /** Offset of the counter for fault reason code {@code reason} (0..15). */
    public static long faultReason(final int reason) {
        if (reason < 0 || reason >= FAULT_REASON_SLOTS) {
            throw new IllegalArgumentException("fault reason " + reason + " outside 0.." + (FAULT_REASON_SLOTS - 1));
        }
        return FAULT_REASON + 8L * reason;
    }

    /** SID register value for {@code bdf}: segment in 31:16, source-id in 15:0. */
    public static int sidValue(final Bdf bdf) {
        return bdf.segment() << 16 | bdf.sourceId();
    }
}
