package org.iopersist.hw.memory;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;
import org.iopersist.hw.memory.MappedFile;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The MMIO file: every register window of the machine, mapped shared by each process that drives it.
 *
 * <p>A file cannot trap a write, so the emulation contract (DESIGN.md §3) is: software writes with
 * volatile stores; the hardware side polls command registers and answers through status registers;
 * software always waits for the status to show the effect; write-1-to-clear bits are cleared with a
 * compare-and-set so neither side loses the other's update. Every accessor here is volatile.
 *
 * <p>Layout: remapping unit {@code n} at {@code n * 0x1000} (at most {@link #MAX_UNITS}); PCI device
 * BAR {@code n} at {@link #BAR_BASE} {@code + n * 0x1000}.
 */
public final class Mmio implements AutoCloseable {
    public static final long WINDOW_SIZE = 0x1000;
    public static final int MAX_UNITS = 16;
    public static final long BAR_BASE = MAX_UNITS * WINDOW_SIZE;
    public static final int MAX_DEVICES = 256;

    private static final VarHandle U64 = PhysicalMemory.U64.varHandle();
    private static final VarHandle U32 = PhysicalMemory.U32.varHandle();

    private final MappedFile file;
    private final MemorySegment segment;

    private Mmio(final MappedFile file) {
        this.file = file;
        this.segment = file.segment();
    }

    public static long sizeFor(final int devices) {
        return BAR_BASE + (long) devices * WINDOW_SIZE;
    }

    public static long unitWindow(final int unit) {
        if (unit < 0 || unit >= MAX_UNITS) {
            throw new IllegalArgumentException("unit=" + unit + " outside 0.." + (MAX_UNITS - 1));
        }
        return unit * WINDOW_SIZE;
    }

    public static long barWindow(final int device) {
        if (device < 0 || device >= MAX_DEVICES) {
            throw new IllegalArgumentException("device=" + device + " outside 0.." + (MAX_DEVICES - 1));
        }
        return BAR_BASE + device * WINDOW_SIZE;
    }

    public static Mmio create(final Path path, final int devices) {
        return new Mmio(MappedFile.create(path, sizeFor(devices)));
    }

    public static Mmio open(final Path path) {
        return new Mmio(MappedFile.open(path));
    }

    /** Maps the MMIO file for reading only: registers can be read, no command can be given. */
    public static Mmio openReadOnly(final Path path) {
        return new Mmio(MappedFile.openReadOnly(path));
    }

    /** A register window of 4 KiB at {@code base}. */
    public Window window(final long base) {
        if (base < 0 || (base & (WINDOW_SIZE - 1)) != 0 || base + WINDOW_SIZE > segment.byteSize()) {
            throw new IllegalArgumentException(String.format("mmio window base=0x%x outside file size=0x%x",
                    base, segment.byteSize()));
        }
        return new Window(segment.asSlice(base, WINDOW_SIZE), base);
    }

    @Override
    public void close() {
        file.close();
    }

    /** One 4 KiB register window with volatile accessors; offsets are relative to the window. */
    public static final class Window {
        private final MemorySegment regs;
        private final long base;

        Window(final MemorySegment regs, final long base) {
            this.regs = regs;
            this.base = base;
        }

        public long base() {
            return base;
        }

        public long read64(final long offset) {
            return (long) U64.getVolatile(regs, offset);
        }

        public void write64(final long offset, final long value) {
            U64.setVolatile(regs, offset, value);
        }

        public int read32(final long offset) {
            return (int) U32.getVolatile(regs, offset);
        }

        public void write32(final long offset, final int value) {
            U32.setVolatile(regs, offset, value);
        }

        public boolean cas32(final long offset, final int expected, final int value) {
            return U32.compareAndSet(regs, offset, expected, value);
        }

        public boolean cas64(final long offset, final long expected, final long value) {
            return U64.compareAndSet(regs, offset, expected, value);
        }

        /** Atomically sets {@code bits} in a 32-bit register; returns the old value. */
        public int setBits32(final long offset, final int bits) {
            return (int) U32.getAndBitwiseOr(regs, offset, bits);
        }

        /** Atomically clears {@code bits} in a 32-bit register (RW1C by CAS); returns the old value. */
        public int clearBits32(final long offset, final int bits) {
            return (int) U32.getAndBitwiseAnd(regs, offset, ~bits);
        }

        public long setBits64(final long offset, final long bits) {
            return (long) U64.getAndBitwiseOr(regs, offset, bits);
        }

        public long clearBits64(final long offset, final long bits) {
            return (long) U64.getAndBitwiseAnd(regs, offset, ~bits);
        }

        public long addAndGet64(final long offset, final long delta) {
            return (long) U64.getAndAdd(regs, offset, delta) + delta;
        }
    }
}
