package org.iopersist.hw.pci;

import java.lang.foreign.MemorySegment;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.RemappingUnit;
import org.iopersist.hw.vtd.Requester;

/**
 * A device's DMA engine: the only way the device reaches memory, always through its remapping unit.
 *
 * <p>Each call is one DMA transaction: it runs between {@link RemappingUnit#begin} and
 * {@link RemappingUnit#end}, so an invalidation wait cannot complete while it is in flight. It first
 * translates every 4 KiB page it will touch, and only if all of them translate does it move a byte:
 * a fault anywhere aborts the whole transfer before it touches memory. (Real PCIe splits transfers at
 * 4 KiB boundaries and could complete the pages before a fault; aborting whole makes "a fault never
 * touches memory" checkable per call.)
 *
 * <p>A write whose IOVA lies in the interrupt window ({@link RemappingUnit#isInterruptWindow}) is an
 * interrupt request: it is counted and returns {@link #INTERRUPT}, with no translation and no memory
 * access. A write may not straddle the window's edge (a contract violation, not a fault).
 *
 * <p>Results are status codes, not exceptions: {@link #DONE}, {@link #INTERRUPT}, or the negated VT-d
 * fault reason ({@code -FaultReason.code}). Faults, interrupts and bytes moved are counted in the
 * device's BAR (FAULTS, FAULT_REASON[r], INTERRUPTS, BYTES). Nothing here allocates.
 *
 * <p>Threading: one thread at a time, like the {@link Requester} it drives. While the workload runs
 * that thread is the device's engine thread; software may use the engine directly only while the
 * workload is stopped.
 */
public final class DmaEngine {
    /** The transfer completed. */
    public static final long DONE = 0;
    /** The write was an interrupt request: counted, no memory access. */
    public static final long INTERRUPT = 1;
    /** Largest transfer in bytes (bounds the translation scratch). */
    public static final long MAX_TRANSFER = 1L << 20;

    private static final int PAGE_SHIFT = PhysicalMemory.FRAME_SHIFT;
    private static final long PAGE_SIZE = PhysicalMemory.FRAME_SIZE;
    private static final long PAGE_MASK = PhysicalMemory.FRAME_MASK;
    private static final int MAX_PAGES = (int) (MAX_TRANSFER >>> PAGE_SHIFT) + 1;

    private final PhysicalMemory memory;
    private final RemappingUnit unit;
    private final Requester requester;
    private final Mmio.Window bar;
    // Physical page base per IOVA page of the current transfer; reused so no call allocates.
    private final long[] srcPhys = new long[MAX_PAGES];
    private final long[] dstPhys = new long[MAX_PAGES];

    DmaEngine(final PhysicalMemory memory, final RemappingUnit unit, final Requester requester, final Mmio.Window bar) {
        this.memory = memory;
        this.unit = unit;
        this.requester = requester;
        this.bar = bar;
    }

    /** Reads {@code length} bytes at {@code iova} into {@code dst} at {@code dstOffset}. */
    public long read(final long iova, final MemorySegment dst, final long dstOffset, final long length) {
        checkRange(iova, length);
        unit.begin(requester);
        try {
            final long status = translate(iova, length, false, srcPhys);
            if (status < 0) {
                return status;
            }
            fromMemory(iova, length, srcPhys, dst, dstOffset);
            bar.addAndGet64(DeviceRegisters.BYTES, length);
            return DONE;
        } finally {
            unit.end(requester);
        }
    }

    /** Writes {@code length} bytes from {@code src} at {@code srcOffset} to {@code iova}. */
    public long write(final long iova, final MemorySegment src, final long srcOffset, final long length) {
        checkRange(iova, length);
        if (interrupt(iova, length)) {
            return INTERRUPT;
        }
        unit.begin(requester);
        try {
            final long status = translate(iova, length, true, dstPhys);
            if (status < 0) {
                return status;
            }
            toMemory(iova, length, dstPhys, src, srcOffset);
            bar.addAndGet64(DeviceRegisters.BYTES, length);
            return DONE;
        } finally {
            unit.end(requester);
        }
    }

    /**
     * Writes {@code src} to {@code iova}, then reads the same range back into {@code dst}, in one
     * transaction: both are in flight together, so an invalidation wait cannot complete between them,
     * and a translation removed in between makes the read fault rather than read elsewhere. The read
     * translates again, through the unit. If the write faults nothing is read; if the read faults the
     * write has happened.
     */
    public long writeAndReadBack(final long iova, final MemorySegment src, final long srcOffset,
                                 final MemorySegment dst, final long dstOffset, final long length) {
        checkRange(iova, length);
        if (interrupt(iova, length)) {
            return INTERRUPT;
        }
        unit.begin(requester);
        try {
            long status = translate(iova, length, true, dstPhys);
            if (status < 0) {
                return status;
            }
            toMemory(iova, length, dstPhys, src, srcOffset);
            bar.addAndGet64(DeviceRegisters.BYTES, length);
            status = translate(iova, length, false, srcPhys);
            if (status < 0) {
                return status;
            }
            fromMemory(iova, length, srcPhys, dst, dstOffset);
            bar.addAndGet64(DeviceRegisters.BYTES, length);
            return DONE;
        } finally {
            unit.end(requester);
        }
    }

    /**
     * Copies {@code length} bytes from {@code srcIova} to {@code dstIova}, in ascending chunks that
     * end at page boundaries of either side, as a device moves data; ranges that overlap in physical
     * memory give what that order gives (not memmove). Both ranges translate before a byte moves. A
     * destination in the interrupt window makes the copy an interrupt request: the source is not read.
     */
    public long copy(final long srcIova, final long dstIova, final long length) {
        checkRange(srcIova, length);
        checkRange(dstIova, length);
        if (interrupt(dstIova, length)) {
            return INTERRUPT;
        }
        unit.begin(requester);
        try {
            long status = translate(srcIova, length, false, srcPhys);
            if (status < 0) {
                return status;
            }
            status = translate(dstIova, length, true, dstPhys);
            if (status < 0) {
                return status;
            }
            final long srcFirstPage = srcIova >>> PAGE_SHIFT;
            final long dstFirstPage = dstIova >>> PAGE_SHIFT;
            long done = 0;
            while (done < length) {
                final long s = srcIova + done;
                final long d = dstIova + done;
                final long chunk = Math.min(length - done,
                        Math.min(PAGE_SIZE - (s & PAGE_MASK), PAGE_SIZE - (d & PAGE_MASK)));
                final long sp = srcPhys[(int) ((s >>> PAGE_SHIFT) - srcFirstPage)] | (s & PAGE_MASK);
                final long dp = dstPhys[(int) ((d >>> PAGE_SHIFT) - dstFirstPage)] | (d & PAGE_MASK);
                memory.copy(sp, dp, chunk);
                done += chunk;
            }
            bar.addAndGet64(DeviceRegisters.BYTES, 2 * length);
            return DONE;
        } finally {
            unit.end(requester);
        }
    }

    private static void checkRange(final long iova, final long length) {
        if (length <= 0 || length > MAX_TRANSFER) {
            throw new IllegalArgumentException("DMA length=" + length + " outside 1.." + MAX_TRANSFER);
        }
        // Unsigned: the last byte must not wrap past 2^64.
        if (Long.compareUnsigned(iova + length - 1, iova) < 0) {
            throw new IllegalArgumentException(String.format("DMA iova=0x%x length=0x%x wraps", iova, length));
        }
    }

    /** True (and counted) if this write is an interrupt request. */
    private boolean interrupt(final long iova, final long length) {
        final boolean first = RemappingUnit.isInterruptWindow(iova);
        if (first != RemappingUnit.isInterruptWindow(iova + length - 1)) {
            throw new IllegalArgumentException(String.format(
                    "DMA write iova=0x%x length=0x%x straddles the interrupt window edge", iova, length));
        }
        if (first) {
            bar.addAndGet64(DeviceRegisters.INTERRUPTS, 1);
        }
        return first;
    }

    /**
     * Translates every page of {@code [iova, iova + length)} into {@code out} (page bases). Stops at
     * the first fault, counts it, and returns its negated reason; otherwise {@link #DONE}.
     */
    private long translate(final long iova, final long length, final boolean write, final long[] out) {
        final long firstPage = iova & ~PAGE_MASK;
        final int pages = (int) (((iova + length - 1) >>> PAGE_SHIFT) - (iova >>> PAGE_SHIFT)) + 1;
        for (int i = 0; i < pages; i++) {
            final long phys = unit.translate(requester, firstPage + ((long) i << PAGE_SHIFT), write);
            if (phys < 0) {
                countFault((int) -phys);
                return phys;
            }
            out[i] = phys & ~PAGE_MASK;
        }
        return DONE;
    }

    private void countFault(final int reason) {
        bar.addAndGet64(DeviceRegisters.FAULTS, 1);
        bar.addAndGet64(DeviceRegisters.faultReason(reason & (DeviceRegisters.FAULT_REASON_SLOTS - 1)), 1);
    }

    private void toMemory(final long iova, final long length, final long[] phys, final MemorySegment src,
                          final long srcOffset) {
        final long firstPage = iova >>> PAGE_SHIFT;
        long done = 0;
        while (done < length) {
            final long a = iova + done;
            final long chunk = Math.min(length - done, PAGE_SIZE - (a & PAGE_MASK));
            memory.write(phys[(int) ((a >>> PAGE_SHIFT) - firstPage)] | (a & PAGE_MASK), src, srcOffset + done, chunk);
            done += chunk;
        }
    }

    private void fromMemory(final long iova, final long length, final long[] phys, final MemorySegment dst,
                            final long dstOffset) {
        final long firstPage = iova >>> PAGE_SHIFT;
        long done = 0;
        while (done < length) {
            final long a = iova + done;
            final long chunk = Math.min(length - done, PAGE_SIZE - (a & PAGE_MASK));
            memory.read(phys[(int) ((a >>> PAGE_SHIFT) - firstPage)] | (a & PAGE_MASK), dst, dstOffset + done, chunk);
            done += chunk;
        }
    }
}
