package org.iopersist.hw.pci;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.LockSupport;
import org.HdrHistogram.Histogram;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.RemappingUnit;
import org.iopersist.hw.vtd.Requester;

/**
 * A PCI function whose DMA goes through one remapping unit, with a workload generator that software
 * programs through the device's BAR ({@link DeviceRegisters}).
 *
 * <p><b>The engine thread.</b> {@link #start()} starts one platform thread per device. It polls CTRL
 * (the device's doorbell: a file cannot interrupt anyone, DESIGN.md §3), carries out commands and
 * answers through STATUS, and while the workload runs it does one record per iteration:
 * <ol>
 *   <li>slot {@code seq mod slots} of the window, at {@code iova = WIN_BASE + slot * RECORD_SIZE};</li>
 *   <li>WRITE_VERIFY: encode record {@code seq} ({@link DmaRecord}), write it and read it back in one
 *       DMA transaction ({@link DmaEngine#writeAndReadBack}), compare byte for byte; WRITE: write
 *       only; VERIFY: read the slot and check the record in it belongs there;</li>
 *   <li>count: OPS and the latency histogram on success, CORRUPT on a mismatch; the engine counts
 *       faults by reason, interrupts and bytes; MAX_GAP_NS tracks the longest time between two
 *       successive successes (the DMA blackout, in DESIGN.md §6's terms);</li>
 *   <li>every MSI_INTERVAL successes, a 4-byte DMA write of MSI_DATA to MSI_ADDR (an interrupt when
 *       that lies in the interrupt window, a plain memory write otherwise, as on real hardware);</li>
 *   <li>NEXT_SEQ = seq + 1, published after the record, so every record below NEXT_SEQ was attempted.</li>
 * </ol>
 * A record whose DMA faults still consumes its sequence number: its slot keeps what it had.
 *
 * <p>When the workload is stopped the thread parks between polls, backing off from 50 µs to 1 ms,
 * so an idle device costs about a thousand wake-ups a second. The loop allocates nothing: record
 * buffers are native segments made once, the histogram has a fixed range, and the engine reuses its
 * translation scratch.
 *
 * <p><b>Threads and state.</b> Fields marked "engine thread" are confined to the engine thread while
 * it runs; {@link #start} and {@link #stop} hand them over through {@code Thread.start} and
 * {@code Thread.join}. The latency histogram is copied into {@code published} (guarded by
 * {@code published}) at each publication, so other threads read a consistent copy.
 */
public final class PciDevice {
    private static final long IDLE_PARK_MIN_NANOS = 50_000;
    private static final long IDLE_PARK_MAX_NANOS = 1_000_000;
    /** Pace waits shorter than this spin: parkNanos cannot sleep much less than ~50 µs on Linux. */
    private static final long PACE_SPIN_NANOS = 50_000;
    private static final long PUBLISH_INTERVAL_NANOS = 100_000_000;
    private static final long HISTOGRAM_MAX_NANOS = 60_000_000_000L;
    // Two significant digits (1 %) keep each histogram near 50 KiB, so 256 devices stay cheap.
    private static final int HISTOGRAM_DIGITS = 2;

    private final int index;
    private final Bdf bdf;
    private final int sidValue;
    private final RemappingUnit unit;
    private final Mmio.Window bar;
    private final Requester requester;
    private final DmaEngine engine;

    private final Object lifecycle = new Object();
    private Thread thread; // guarded by lifecycle
    private CompletionTrace.Recorder trace; // set before start(); read by the engine thread
    private volatile boolean alive;

    // Engine thread: scratch for one record, written then read back, and the interrupt message.
    private final MemorySegment writeBuf;
    private final MemorySegment readBuf;
    private final MemorySegment msiBuf;
    private final Histogram latency = new Histogram(HISTOGRAM_MAX_NANOS, HISTOGRAM_DIGITS); // engine thread
    private final Histogram published = new Histogram(HISTOGRAM_MAX_NANOS, HISTOGRAM_DIGITS); // guarded by published

    // Engine thread: the latched workload.
    private boolean running;
    private WorkloadMode mode;
    private long iovaBase;
    private long slots;
    private int recordSize;
    private long generation;
    private long paceNanos;
    private long msiIova;
    private long msiInterval;
    private java.util.SplittableRandom hostile; // HOSTILE's random walk
    // Engine thread: progress.
    private long seq;
    private long successes;
    private boolean haveCompletion;
    private long lastCompletionNanos;
    private long maxGapNanos;
    private long nextStartNanos;
    private long lastPublishNanos;

    /**
     * Creates device {@code index} of a board: its BAR is the board's {@code deviceBar(index)} and its
     * DMA goes through {@code unit}. At power-on the BAR is reset (zero, then identity registers).
     * Otherwise the BAR is kept, and a workload it shows RUNNING resumes from its registers at
     * {@link #start()}.
     */
    public PciDevice(final int index, final Bdf bdf, final PhysicalMemory memory, final Mmio.Window bar, final RemappingUnit unit,
            final boolean powerOn) {
        this.index = index;
        this.bdf = bdf;
        this.sidValue = DeviceRegisters.sidValue(bdf);
        this.unit = unit;
        this.bar = bar;
        this.requester = new Requester(bdf.sourceId());
        this.engine = new DmaEngine(memory, unit, requester, bar);
        final Arena arena = Arena.ofAuto();
        this.writeBuf = arena.allocate(DmaRecord.MAX_SIZE, PhysicalMemory.FRAME_SIZE);
        this.readBuf = arena.allocate(DmaRecord.MAX_SIZE, PhysicalMemory.FRAME_SIZE);
        this.msiBuf = arena.allocate(8, 8);
        if (powerOn) {
            for (long off = 0; off < DeviceRegisters.SIZE; off += 8) {
                bar.write64(off, 0);
            }
            bar.write32(DeviceRegisters.ID, DeviceRegisters.ID_VALUE);
            bar.write32(DeviceRegisters.VERSION, DeviceRegisters.VERSION_VALUE);
            bar.write32(DeviceRegisters.SID, sidValue);
            bar.write32(DeviceRegisters.COMMAND, DeviceRegisters.COMMAND_BME); // firmware enabled it
        } else {
            resumeFromRegisters();
        }
        unit.attach(requester);
    }

    /** Index in the machine description; the BAR is {@code Board.deviceBar(index)}. */
    public int index() {
        return index;
    }

    /** The device's PCI address. */
    public Bdf bdf() {
        return bdf;
    }

    /** The remapping unit every DMA of this device goes through. */
    public RemappingUnit unit() {
        return unit;
    }

    /** The BAR window the device answers in. */
    public Mmio.Window bar() {
        return bar;
    }

    /** The requester the unit sees (source-id and in-flight marker). */
    public Requester requester() {
        return requester;
    }

    /**
     * The device's DMA engine. Software may drive it directly (tests do) only while the workload is
     * stopped: the engine serves one thread at a time.
     */
    public DmaEngine dma() {
        return engine;
    }

    /** A copy of the latency histogram (ns per successful record) as last published. */
    public Histogram latencyHistogram() {
        synchronized (published) {
            return published.copy();
        }
    }

    /** The engine thread, or null when the device is not started (for tests that watch it). */
    Thread engineThread() {
        synchronized (lifecycle) {
            return thread;
        }
    }

    /**
     * Counts every completed record in {@code recorder}'s per-millisecond bins from the next
     * {@link #start()} on (the machine's {@link CompletionTrace}); null stops counting.
     */
    public void traceCompletions(final CompletionTrace.Recorder recorder) {
        synchronized (lifecycle) {
            if (thread != null) {
                throw new IllegalStateException("trace a device before it starts");
            }
            trace = recorder;
        }
    }

    /** Starts the engine thread and sets STATUS.ALIVE; the thread clears ALIVE when it ends. Idempotent. */
    public void start() {
        synchronized (lifecycle) {
            if (thread != null) {
                return;
            }
            // A stop of the whole machine is not a gap between completions of the workload.
            haveCompletion = false;
            nextStartNanos = System.nanoTime();
            lastPublishNanos = nextStartNanos;
            alive = true;
            // ALIVE before the thread runs, so "machine started" implies "devices answer": a driver
            // that finds ALIVE may ring at once; the thread polls CTRL as its first act.
            bar.setBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_ALIVE);
            thread = Thread.ofPlatform().daemon().name("pci-" + bdf).start(this::run);
        }
    }

    /**
     * Stops the engine thread and waits for it. The workload's state (RUNNING, counters, settings)
     * stays in the BAR: the device freezes, and resumes at the next {@link #start()}.
     */
    public void stop() {
        final Thread t;
        synchronized (lifecycle) {
            t = thread;
            if (t == null) {
                return;
            }
            alive = false;
            thread = null;
        }
        LockSupport.unpark(t);
        boolean interrupted = false;
        while (true) {
            try {
                t.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    // ---------------------------------------------------------------- engine thread

    private void run() {
        try {
            long idleNanos = IDLE_PARK_MIN_NANOS;
            while (alive) {
                final int ctrl = bar.read32(DeviceRegisters.CTRL) & DeviceRegisters.CTRL_ALL;
                if (ctrl != 0) {
                    command(ctrl);
                    idleNanos = IDLE_PARK_MIN_NANOS;
                    continue;
                }
                if (!running) {
                    LockSupport.parkNanos(idleNanos);
                    idleNanos = Math.min(2 * idleNanos, IDLE_PARK_MAX_NANOS);
                    continue;
                }
                final long now = System.nanoTime();
                if (now - lastPublishNanos >= PUBLISH_INTERVAL_NANOS) {
                    publish();
                }
                if (paceNanos > 0) {
                    final long wait = nextStartNanos - now;
                    if (wait > 0) {
                        if (wait > PACE_SPIN_NANOS) {
                            LockSupport.parkNanos(Math.min(wait, IDLE_PARK_MAX_NANOS));
                        } else {
                            Thread.onSpinWait();
                        }
                        continue;
                    }
                    nextStartNanos = now + paceNanos;
                }
                try {
                    step();
                } catch (RuntimeException e) {
                    // A bug of the model (e.g. a DMA outside memory that translation let through):
                    // stop loudly rather than let a counter lie.
                    System.err.println("pci " + bdf + ": workload stopped by an internal error at seq " + seq);
                    e.printStackTrace();
                    running = false;
                    refuse(DeviceRegisters.ERR_INTERNAL);
                    bar.clearBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_RUNNING);
                }
            }
        } finally {
            bar.clearBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_ALIVE);
        }
    }

    /** Carries out the commands in CTRL, in the order STOP, RESET, START, SNAPSHOT. */
    private void command(final int ctrl) {
        if ((ctrl & DeviceRegisters.CTRL_STOP) != 0) {
            if (running) {
                running = false;
                publish();
            }
            bar.clearBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_RUNNING);
            bar.clearBits32(DeviceRegisters.CTRL, DeviceRegisters.CTRL_STOP);
        }
        if ((ctrl & DeviceRegisters.CTRL_RESET) != 0) {
            resetCounters();
            bar.clearBits32(DeviceRegisters.CTRL, DeviceRegisters.CTRL_RESET);
        }
        if ((ctrl & DeviceRegisters.CTRL_START) != 0) {
            startWorkload();
            bar.clearBits32(DeviceRegisters.CTRL, DeviceRegisters.CTRL_START);
        }
        if ((ctrl & DeviceRegisters.CTRL_SNAPSHOT) != 0) {
            publish();
            bar.clearBits32(DeviceRegisters.CTRL, DeviceRegisters.CTRL_SNAPSHOT);
        }
    }

    private void startWorkload() {
        if (running) {
            refuse(DeviceRegisters.ERR_BUSY);
            return;
        }
        final WorkloadSettings s = WorkloadSettings.readFrom(bar);
        final int error = s.validate();
        if (error != DeviceRegisters.ERR_NONE) {
            refuse(error);
            return;
        }
        latch(s);
        seq = 0;
        bar.write64(DeviceRegisters.NEXT_SEQ, 0);
        haveCompletion = false;
        nextStartNanos = System.nanoTime();
        bar.write32(DeviceRegisters.ERROR, DeviceRegisters.ERR_NONE);
        running = true;
        bar.setBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_RUNNING);
    }

    private void latch(final WorkloadSettings s) {
        mode = WorkloadMode.ofCode(s.mode());
        iovaBase = s.iovaBase();
        recordSize = s.recordSize();
        slots = s.length() / s.recordSize();
        generation = s.generation();
        paceNanos = Math.max(0, s.paceNanos());
        msiIova = s.msiIova();
        msiInterval = Integer.toUnsignedLong(s.msiInterval());
        msiBuf.set(PhysicalMemory.U32, 0, s.msiData());
        hostile = new java.util.SplittableRandom(s.generation() * 0x9E37_79B9_7F4A_7C15L ^ sidValue);
    }

    /** ERROR first, then STATUS.ERR: software that sees ERR reads a valid ERROR. */
    private void refuse(final int error) {
        bar.write32(DeviceRegisters.ERROR, error);
        bar.setBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_ERR);
    }

    private void resetCounters() {
        // NEXT_SEQ is the workload's position, not a counter: only START moves it back.
        for (long off = DeviceRegisters.OPS; off <= DeviceRegisters.MASTER_ABORTS; off += 8) {
            bar.write64(off, 0);
        }
        for (int r = 0; r < DeviceRegisters.FAULT_REASON_SLOTS; r++) {
            bar.write64(DeviceRegisters.faultReason(r), 0);
        }
        successes = 0;
        haveCompletion = false;
        maxGapNanos = 0;
        latency.reset();
        publish();
    }

    /** Takes over a BAR that survived a restart of the machine process without a power cycle. */
    private void resumeFromRegisters() {
        bar.clearBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_ALIVE);
        if ((bar.read32(DeviceRegisters.STATUS) & DeviceRegisters.STATUS_RUNNING) == 0) {
            return;
        }
        final WorkloadSettings s = WorkloadSettings.readFrom(bar);
        final int error = s.validate();
        if (error != DeviceRegisters.ERR_NONE) {
            refuse(error);
            bar.clearBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_RUNNING);
            return;
        }
        latch(s);
        seq = bar.read64(DeviceRegisters.NEXT_SEQ);
        successes = bar.read64(DeviceRegisters.OPS);
        maxGapNanos = bar.read64(DeviceRegisters.MAX_GAP_NS);
        running = true;
    }

    /** One record of the workload. */
    private void step() {
        if ((bar.read32(DeviceRegisters.COMMAND) & DeviceRegisters.COMMAND_BME) == 0) {
            // Bus mastering off: the record is attempted but no DMA leaves the device.
            bar.addAndGet64(DeviceRegisters.MASTER_ABORTS, 1);
            seq++;
            bar.write64(DeviceRegisters.NEXT_SEQ, seq);
            LockSupport.parkNanos(10_000); // nothing to do but notice BME again
            return;
        }
        final long slot = seq % slots;
        final long iova = iovaBase + slot * recordSize;
        switch (mode) {
            case WRITE_VERIFY -> {
                DmaRecord.encode(writeBuf, 0, sidValue, recordSize, seq, iova, generation);
                final long t0 = System.nanoTime();
                final long status = engine.writeAndReadBack(iova, writeBuf, 0, readBuf, 0, recordSize);
                final long t1 = System.nanoTime();
                if (status == DmaEngine.DONE) {
                    if (MemorySegment.mismatch(writeBuf, 0, recordSize, readBuf, 0, recordSize) == -1) {
                        completed(t0, t1);
                    } else {
                        bar.addAndGet64(DeviceRegisters.CORRUPT, 1);
                    }
                }
            }
            case WRITE -> {
                DmaRecord.encode(writeBuf, 0, sidValue, recordSize, seq, iova, generation);
                final long t0 = System.nanoTime();
                final long status = engine.write(iova, writeBuf, 0, recordSize);
                final long t1 = System.nanoTime();
                if (status == DmaEngine.DONE) {
                    completed(t0, t1);
                }
            }
            case HOSTILE -> hostileStep();
            case VERIFY -> {
                final long t0 = System.nanoTime();
                final long status = engine.read(iova, readBuf, 0, recordSize);
                final long t1 = System.nanoTime();
                if (status == DmaEngine.DONE) {
                    final long found = DmaRecord.validSeq(readBuf, 0, sidValue, recordSize, iova, generation);
                    if (found != DmaRecord.INVALID && found % slots == slot) {
                        completed(t0, t1);
                    } else {
                        bar.addAndGet64(DeviceRegisters.CORRUPT, 1);
                    }
                }
            }
        }
        seq++;
        bar.write64(DeviceRegisters.NEXT_SEQ, seq);
    }

    /** One access of {@link WorkloadMode#HOSTILE}: anywhere, either way, any length up to a record. */
    private void hostileStep() {
        final long span = slots * recordSize;
        final long iova = switch (hostile.nextInt(4)) {
            case 0 -> iovaBase + hostile.nextLong(span);
            case 1 -> Math.max(0, iovaBase + hostile.nextLong(-(1L << 30), 1L << 30));
            case 2 -> hostile.nextLong(1L << 48);
            default -> hostile.nextLong(1L << 57);
        };
        final int length = 1 + hostile.nextInt(recordSize);
        final long t0 = System.nanoTime();
        final long status;
        if (hostile.nextBoolean()) {
            writeBuf.fill((byte) 0);
            writeBuf.set(PhysicalMemory.U64, 0, 0xBADL << 52 | (long) sidValue << 32 | (seq & 0xFFFF_FFFFL));
            status = engine.write(iova, writeBuf, 0, length);
        } else {
            status = engine.read(iova, readBuf, 0, length);
        }
        if (status == DmaEngine.DONE) {
            completed(t0, System.nanoTime());
        }
    }

    private void completed(final long t0Nanos, final long t1Nanos) {
        bar.addAndGet64(DeviceRegisters.OPS, 1);
        latency.recordValue(Math.min(Math.max(t1Nanos - t0Nanos, 0), HISTOGRAM_MAX_NANOS));
        if (haveCompletion) {
            final long gap = t1Nanos - lastCompletionNanos;
            if (gap > maxGapNanos) {
                maxGapNanos = gap;
                bar.write64(DeviceRegisters.MAX_GAP_NS, gap);
            }
        }
        haveCompletion = true;
        lastCompletionNanos = t1Nanos;
        final CompletionTrace.Recorder t = trace;
        if (t != null) {
            t.completed(t1Nanos);
        }
        successes++;
        if (msiInterval != 0 && successes % msiInterval == 0) {
            // Faults and interrupts of the message are counted by the engine.
            engine.write(msiIova, msiBuf, 0, 4);
        }
    }

    /** Publishes the latency percentiles to the BAR and the shared copy of the histogram. */
    private void publish() {
        bar.write64(DeviceRegisters.LAT_COUNT, latency.getTotalCount());
        bar.write64(DeviceRegisters.LAT_P50_NS, latency.getValueAtPercentile(50));
        bar.write64(DeviceRegisters.LAT_P90_NS, latency.getValueAtPercentile(90));
        bar.write64(DeviceRegisters.LAT_P99_NS, latency.getValueAtPercentile(99));
        bar.write64(DeviceRegisters.LAT_P999_NS, latency.getValueAtPercentile(99.9));
        bar.write64(DeviceRegisters.LAT_MAX_NS, latency.getMaxValue());
        bar.addAndGet64(DeviceRegisters.LAT_EPOCH, 1);
        synchronized (published) {
            latency.copyInto(published);
        }
        lastPublishNanos = System.nanoTime();
    }

    @Override
    public String toString() {
        return "PciDevice[" + index + " " + bdf + " unit " + unit.index() + "]";
    }
}
