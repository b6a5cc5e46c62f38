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
 * BAR {@code n} at {@link #BAR_BASE} {@code + n * 0x1000}; the machine's {@link Wake} page last.
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
    private final Wake wake;

    private Mmio(final MappedFile file, final boolean writable) {
        this.file = file;
        this.segment = file.segment();
        this.wake = writable ? new Wake(segment.asSlice(segment.byteSize() - WINDOW_SIZE, WINDOW_SIZE)) : null;
    }

    /** The file's size for {@code devices} BARs: unit slots, BARs, then the wake page. */
    public static long sizeFor(final int devices) {
        return BAR_BASE + (long) devices * WINDOW_SIZE + WINDOW_SIZE;
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
        return new Mmio(MappedFile.create(path, sizeFor(devices)), true);
    }

    public static Mmio open(final Path path) {
        return new Mmio(MappedFile.open(path), true);
    }

    /** Maps the MMIO file for reading only: registers can be read, no command can be given. */
    public static Mmio openReadOnly(final Path path) {
        return new Mmio(MappedFile.openReadOnly(path), false);
    }

    /**
     * A register window of 4 KiB at {@code base}. A unit's window rings the wake page after every
     * write, since the unit's registers are served by the poller; a BAR's is polled by its device.
     */
    public Window window(final long base) {
        if (base < 0 || (base & (WINDOW_SIZE - 1)) != 0 || base + WINDOW_SIZE > segment.byteSize() - WINDOW_SIZE) {
            throw new IllegalArgumentException(String.format("mmio window base=0x%x outside file size=0x%x",
                    base, segment.byteSize()));
        }
        return new Window(segment.asSlice(base, WINDOW_SIZE), base, base < BAR_BASE ? wake : null);
    }

    /** The wake page the unit poller sleeps on; null in a read-only mapping, which gives no command. */
    public Wake wake() {
        return wake;
    }

    @Override
    public void close() {
        file.close();
    }

    /**
     * The machine's wake page, not a register of any device. Real hardware sees a register write at
     * once; the poller that plays it here sleeps when idle, possibly in another process. So: the
     * poller publishes {@code sleeping} (offset 4) and sleeps in {@code futex(FUTEX_WAIT)} on
     * {@code seq} (offset 0); a writer that then finds {@code sleeping} set bumps {@code seq} and
     * wakes it. Both sides' accesses are volatile, so either the poller's last look at the registers
     * sees the write or the writer sees {@code sleeping}: no wake is lost.
     */
    public static final class Wake {
        private static final long SEQ = 0;
        private static final long SLEEPING = 4;
        private final MemorySegment page;

        Wake(final MemorySegment page) {
            this.page = page;
        }

        /** After a command write: wakes the poller if it sleeps. A volatile load otherwise. */
        void ring() {
            if ((int) U32.getVolatile(page, SLEEPING) != 0) {
                wakeAll();
            }
        }

        /** Wakes every sleeper whatever it published (a poller being stopped). */
        public void wakeAll() {
            U32.getAndAdd(page, SEQ, 1);
            if (Libc.hasFutex()) {
                Libc.futexWake(page);
            }
        }

        public int seq() {
            return (int) U32.getVolatile(page, SEQ);
        }

        public void sleeping(final boolean asleep) {
            U32.setVolatile(page, SLEEPING, asleep ? 1 : 0);
        }

        /** Sleeps until {@code seq} moves past {@code seen}, at most {@code timeoutNanos}. */
        public void await(final int seen, final long timeoutNanos) {
            if (Libc.hasFutex()) {
                Libc.futexWait(page, seen, timeoutNanos);
            } else {
                java.util.concurrent.locks.LockSupport.parkNanos(Math.min(timeoutNanos, 20_000));
            }
        }
    }

    /** One 4 KiB register window with volatile accessors; offsets are relative to the window. */
    public static final class Window {
        private final MemorySegment regs;
        private final long base;
        private final Wake wake;

        Window(final MemorySegment regs, final long base, final Wake wakeOrNull) {
            this.regs = regs;
            this.base = base;
            this.wake = wakeOrNull;
        }

        private void ringWake() {
            if (wake != null) {
                wake.ring();
            }
        }

        public long base() {
            return base;
        }

        public long read64(final long offset) {
            return (long) U64.getVolatile(regs, offset);
        }

        public void write64(final long offset, final long value) {
            U64.setVolatile(regs, offset, value);
            ringWake();
        }

        public int read32(final long offset) {
            return (int) U32.getVolatile(regs, offset);
        }

        public void write32(final long offset, final int value) {
            U32.setVolatile(regs, offset, value);
            ringWake();
        }

        public boolean cas32(final long offset, final int expected, final int value) {
            final boolean set = U32.compareAndSet(regs, offset, expected, value);
            ringWake();
            return set;
        }

        public boolean cas64(final long offset, final long expected, final long value) {
            final boolean set = U64.compareAndSet(regs, offset, expected, value);
            ringWake();
            return set;
        }

        /** Atomically sets {@code bits} in a 32-bit register; returns the old value. */
        public int setBits32(final long offset, final int bits) {
            final int old = (int) U32.getAndBitwiseOr(regs, offset, bits);
            ringWake();
            return old;
        }

        /** Atomically clears {@code bits} in a 32-bit register (RW1C by CAS); returns the old value. */
        public int clearBits32(final long offset, final int bits) {
            final int old = (int) U32.getAndBitwiseAnd(regs, offset, ~bits);
            ringWake();
            return old;
        }

        public long setBits64(final long offset, final long bits) {
            final long old = (long) U64.getAndBitwiseOr(regs, offset, bits);
            ringWake();
            return old;
        }

        public long clearBits64(final long offset, final long bits) {
            final long old = (long) U64.getAndBitwiseAnd(regs, offset, ~bits);
            ringWake();
            return old;
        }

        public long addAndGet64(final long offset, final long delta) {
            final long now = (long) U64.getAndAdd(regs, offset, delta) + delta;
            ringWake();
            return now;
        }
    }
}
