package org.iopersist.hw.pci;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.memory.MappedFile;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The machine's completion trace: for each device, how many records completed in each millisecond
 * since the machine powered on. It is the logic analyzer on the bus, not a register of the device:
 * nothing in a device's behaviour depends on it, and software only reads it (the demo draws its
 * timeline from it). One sparse file, {@code completions} in the machine directory, mapped shared,
 * so a VMM or a tool in another process reads it while the devices run.
 *
 * <pre>
 *  0x000 +------------------+------------------+
 *        | magic "IOPT"     | version (1)      |   u32, u32
 *  0x008 | origin_ns                           |   CLOCK_MONOTONIC at power-on (System.nanoTime)
 *  0x010 | devices          | bin_ns (1000000) |   u32, u32
 *  0x018 | bins                                |   bins per device (u64)
 *        +-------------------------------------+
 *  0x1000  device 0: u32 count[bins]             count[b]: records completed in [origin + b ms, origin + (b+1) ms)
 *  0x1000 + 4·bins·n: device n
 * </pre>
 * Little-endian. A record that completes after the last bin is not counted (the trace covers
 * {@link #BINS} ms, about 4.7 hours). The clock is CLOCK_MONOTONIC, which every process of one
 * Linux host shares, so a reader places its own {@code System.nanoTime()} stamps on the same axis.
 *
 * <p><b>Writers and readers.</b> Each device's bins are written by its engine thread only, one
 * opaque store per completed record into a bin it computes from the completion time it already
 * has: no allocation, no atomic read-modify-write, no lock. Readers load bins with opaque loads, so a
 * bin read while its millisecond is still running may be short by the records that follow.
 */
public final class CompletionTrace implements AutoCloseable {
    public static final String FILE = "completions";
    public static final int MAGIC = 0x5450_4F49; // "IOPT" as it reads in memory
    public static final int VERSION = 1;
    public static final long HEADER_SIZE = 0x1000;
    public static final long BIN_NANOS = 1_000_000;
    /** Bins per device: 2^24 ms, about 4.7 hours; 64 MiB of sparse file per device. */
    public static final long BINS = 1L << 24;

    static final long OFF_MAGIC = 0x00;
    static final long OFF_VERSION = 0x04;
    static final long OFF_ORIGIN = 0x08;
    static final long OFF_DEVICES = 0x10;
    static final long OFF_BIN_NANOS = 0x14;
    static final long OFF_BINS = 0x18;

    private static final VarHandle U32 = PhysicalMemory.U32.varHandle();

    private final MappedFile file;
    private final MemorySegment segment;
    private final long originNanos;
    private final int devices;
    private final long bins;

    private CompletionTrace(final MappedFile file) {
        this.file = file;
        this.segment = file.segment();
        if (segment.byteSize() < HEADER_SIZE || segment.get(PhysicalMemory.U32, OFF_MAGIC) != MAGIC
                || segment.get(PhysicalMemory.U32, OFF_VERSION) != VERSION
                || segment.get(PhysicalMemory.U32, OFF_BIN_NANOS) != BIN_NANOS) {
            file.close();
            throw new IllegalArgumentException(file.path() + " is not a version " + VERSION + " completion trace");
        }
        this.originNanos = segment.get(PhysicalMemory.U64, OFF_ORIGIN);
        this.devices = segment.get(PhysicalMemory.U32, OFF_DEVICES);
        this.bins = segment.get(PhysicalMemory.U64, OFF_BINS);
        if (devices < 0 || bins <= 0 || HEADER_SIZE + 4 * bins * devices != segment.byteSize()) {
            file.close();
            throw new IllegalArgumentException(file.path() + ": header does not match the file's size");
        }
    }

    /** A new, empty trace for {@code devices} devices in {@code dir}, its origin now (replaces any old one). */
    public static CompletionTrace create(final Path dir, final int devices) {
        final Path path = dir.resolve(FILE);
        try {
            Files.deleteIfExists(path); // a new power-on starts a new trace; a reader of the old one keeps its mapping
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException("cannot replace " + path + ": " + e.getMessage(), e);
        }
        final MappedFile f = MappedFile.create(path, HEADER_SIZE + 4 * BINS * devices);
        final MemorySegment s = f.segment();
        s.set(PhysicalMemory.U64, OFF_ORIGIN, System.nanoTime());
        s.set(PhysicalMemory.U32, OFF_DEVICES, devices);
        s.set(PhysicalMemory.U32, OFF_BIN_NANOS, (int) BIN_NANOS);
        s.set(PhysicalMemory.U64, OFF_BINS, BINS);
        s.set(PhysicalMemory.U32, OFF_VERSION, VERSION);
        U32.setRelease(s, OFF_MAGIC, MAGIC); // the header is whole once the magic shows
        return new CompletionTrace(f);
    }

    /** The trace of the machine in {@code dir}, for reading. */
    public static CompletionTrace open(final Path dir) {
        return new CompletionTrace(MappedFile.open(dir.resolve(FILE)));
    }

    /** CLOCK_MONOTONIC (as {@code System.nanoTime()}) at bin 0. */
    public long originNanos() {
        return originNanos;
    }

    public int devices() {
        return devices;
    }

    public long bins() {
        return bins;
    }

    /** The bin a {@code System.nanoTime()} stamp falls in (negative before the origin). */
    public long binOf(final long nanos) {
        return Math.floorDiv(nanos - originNanos, BIN_NANOS);
    }

    /** Records device {@code device} completed in bin {@code bin}; 0 outside the trace. */
    public int count(final int device, final long bin) {
        if (bin < 0 || bin >= bins) {
            return 0;
        }
        return (int) U32.getOpaque(segment, binOffset(device, bin));
    }

    /** Copies bins {@code [fromBin, fromBin + out.length)} of {@code device} into {@code out}. */
    public void counts(final int device, final long fromBin, final int[] out) {
        for (int i = 0; i < out.length; i++) {
            out[i] = count(device, fromBin + i);
        }
    }

    /** The recorder device {@code device}'s engine thread counts with. */
    public Recorder recorder(final int device) {
        return new Recorder(segment, binOffset(device, 0), originNanos, bins);
    }

    private long binOffset(final int device, final long bin) {
        if (device < 0 || device >= devices) {
            throw new IllegalArgumentException("device " + device + " outside 0.." + (devices - 1));
        }
        return HEADER_SIZE + 4 * (bins * device + bin);
    }

    @Override
    public void close() {
        file.close();
    }

    /**
     * One device's bins, for its engine thread only (single writer). {@link #completed} is the hot
     * path: a subtraction, a division by a constant, a bounds test and an opaque load and store.
     */
    public static final class Recorder {
        private final MemorySegment segment;
        private final long baseOffset;
        private final long originNanos;
        private final long bins;

        Recorder(final MemorySegment segment, final long baseOffset, final long originNanos, final long bins) {
            this.segment = segment;
            this.baseOffset = baseOffset;
            this.originNanos = originNanos;
            this.bins = bins;
        }

        /** Counts one record completed at {@code nanos} ({@code System.nanoTime()}). */
        public void completed(final long nanos) {
            final long sinceOrigin = nanos - originNanos;
            final long bin = sinceOrigin / BIN_NANOS; // truncates: a stamp before the origin would land in bin 0
            if (sinceOrigin >= 0 && bin < bins) {
                final long offset = baseOffset + 4 * bin;
                // Single writer: a plain increment made visible to other processes by the opaque store.
                U32.setOpaque(segment, offset, (int) U32.getOpaque(segment, offset) + 1);
            }
        }
    }
}
