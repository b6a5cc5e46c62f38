package org.iopersist.kernel.mm;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.uapi.Errno;

/**
 * The buddy allocator over the RAM this boot owns. Before {@link #open()} only early reservations
 * are taken (firmware, carve-outs, preserved frames); opening hands every frame not reserved to the
 * free lists. Runs are naturally aligned blocks of {@code 2^order} frames up to {@link #MAX_ORDER}.
 *
 * <p>Free blocks are found through one bitmap per order ("a free block starts here") and a stack of
 * candidates per order whose stale entries are skipped on pop, so a coalesce never searches a list.
 *
 * <p>With poisoning on, a freed frame is filled with {@link #POISON} and checked when it is handed
 * out again: a write through a stale pointer (a device DMA, a table walk) shows up as a violation
 * instead of silent corruption, as Linux's {@code page_poison} does.
 *
 * <p>Runs of {@link #ZERO_RANGE_ORDER} and up are zeroed with the machine's zero range (a hole in
 * the memory file), not with stores: a 1 GiB run costs one call and no disk. Poisoning such a run
 * zeroes it the same way, since writing {@link #POISON} over free memory would cost what the machine
 * is worth in disk; a frame handed out passes the check if it reads all poison or all zeros, so any
 * stale write that changed its contents still shows.
 */
public final class FrameAllocator implements FrameSource {
    /** 2^18 frames = 1 GiB, the largest leaf a VT-d table can map. */
    public static final int MAX_ORDER = 18;
    public static final byte POISON = 0x6b;
    /** 2^9 frames = 2 MiB: from here up, zeroing a run is cheaper as a zero range than as stores. */
    public static final int ZERO_RANGE_ORDER = 9;
    private static final long POISON64 = 0x6b6b_6b6b_6b6b_6b6bL;
    private static final int SHIFT = PhysicalMemory.FRAME_SHIFT;

    /** Accounting in frames; {@code poisonViolations} counts freed frames found written to. */
    public record Stats(long totalFrames, long reservedFrames, long freeFrames, long allocatedFrames, long poisonViolations) {
    }

    private record Reservation(PhysRange range, String owner) {
    }

    private final PhysicalMemory memory;
    private final long limitFrames;
    private final boolean poison;
    private final FaultInjection faults;
    private final List<Reservation> early = new ArrayList<>();
    private final SparseBitmap[] freeHead = new SparseBitmap[MAX_ORDER + 1]; // bit: a free block of this order starts here
    private final long[][] stack = new long[MAX_ORDER + 1][];
    private final int[] depth = new int[MAX_ORDER + 1];
    private SparseBitmap allocated;
    private boolean open;
    private long freeFrames;
    private long reservedFrames;
    private long allocatedFrames;
    private long violations;

    /** An allocator for frames {@code [0, limit)} of {@code memory}. */
    public FrameAllocator(final PhysicalMemory memory, final long limit, final boolean poison) {
        this(memory, limit, poison, new FaultInjection());
    }

    /** As above, with the boot's fault injection: every allocation is a {@code fail_nth} site. */
    public FrameAllocator(final PhysicalMemory memory, final long limit, final boolean poison, final FaultInjection faults) {
        if (limit <= 0 || limit > memory.size() || (limit & PhysicalMemory.FRAME_MASK) != 0) {
            throw new IllegalArgumentException(String.format("allocator limit 0x%x outside memory of 0x%x", limit, memory.size()));
        }
        this.memory = memory;
        this.limitFrames = limit >>> SHIFT;
        this.poison = poison;
        this.faults = faults;
    }

    @Override
    public FaultInjection faults() {
        return faults;
    }

    public boolean poisoning() {
        return poison;
    }

    /** Keeps {@code range} out of the allocator for good (firmware, carve-outs) or until freed back. */
    public synchronized void reserve(final PhysRange range, final String owner) {
        if (open) {
            throw new IllegalStateException("early reservation of " + range + " after the allocator opened");
        }
        if (range.end() > limitFrames << SHIFT) {
            throw new IllegalArgumentException(range + " (" + owner + ") lies beyond the allocator's memory");
        }
        // Preserved table pages arrive one frame at a time, mostly in address order: one record per
        // contiguous run of one owner, so a TiB of 4 KiB tables is a few records, not 512 K.
        final Reservation last = early.isEmpty() ? null : early.getLast();
        if (last != null && last.owner().equals(owner) && last.range().end() == range.start()) {
            early.set(early.size() - 1, new Reservation(new PhysRange(last.range().start(), last.range().size() + range.size()), owner));
        } else {
            early.add(new Reservation(range, owner));
        }
    }

    /** The early reservations so far, for the boot log. */
    public synchronized List<String> reservations() {
        return early.stream().map(r -> r.range() + " " + r.owner()).toList();
    }

    public synchronized boolean isOpen() {
        return open;
    }

    /** Frees every frame no reservation covers. Overlapping reservations are fine. */
    public synchronized void open() {
        if (open) {
            throw new IllegalStateException("allocator already open");
        }
        // Sparse: their memory follows the frames this allocator manages, not the machine's size.
        allocated = new SparseBitmap(limitFrames);
        for (int order = 0; order <= MAX_ORDER; order++) {
            freeHead[order] = new SparseBitmap((limitFrames >>> order) + 1);
            stack[order] = new long[64];
        }
        final List<PhysRange> sorted = early.stream().map(Reservation::range)
                .sorted(Comparator.comparingLong(PhysRange::start)).toList();
        long cursor = 0;
        long reserved = 0;
        final List<long[]> free = new ArrayList<>();
        for (PhysRange r : sorted) {
            final long first = r.start() >>> SHIFT;
            final long end = r.end() >>> SHIFT;
            if (first > cursor) {
                free.add(new long[] {cursor, first});
            }
            if (end > cursor) {
                reserved += end - Math.max(first, cursor);
                cursor = end;
            }
        }
        if (cursor < limitFrames) {
            free.add(new long[] {cursor, limitFrames});
        }
        // Highest first onto the free stacks, so the lowest addresses come off them first: runs
        // handed out one after another are contiguous and ascending, and a growing file's runs merge.
        for (int i = free.size() - 1; i >= 0; i--) {
            addFree(free.get(i)[0], free.get(i)[1]);
        }
        reservedFrames = reserved;
        open = true;
    }

    /** Frees {@code [firstPfn, endPfn)} as its largest aligned blocks, pushed highest first. */
    private void addFree(final long firstPfn, final long endPfn) {
        final List<long[]> blocks = new ArrayList<>();
        long pfn = firstPfn;
        while (pfn < endPfn) {
            int order = pfn == 0 ? MAX_ORDER : Math.min(MAX_ORDER, Long.numberOfTrailingZeros(pfn));
            while (pfn + (1L << order) > endPfn) {
                order--;
            }
            blocks.add(new long[] {pfn, order});
            pfn += 1L << order;
        }
        for (int i = blocks.size() - 1; i >= 0; i--) {
            final long at = blocks.get(i)[0];
            final int order = (int) blocks.get(i)[1];
            if (poison) {
                poison(at << SHIFT, order);
            }
            pushFree(at, order);
            freeFrames += 1L << order;
        }
    }

    // ------------------------------------------------------------------ allocation

    @Override
    public long allocZeroedFrame() {
        return allocZeroedRun(0);
    }

    @Override
    public long allocZeroedRun(final int order) {
        final long phys = allocRun(order);
        if (order >= ZERO_RANGE_ORDER) {
            memory.zeroRange(phys, 1L << (order + SHIFT));
        } else {
            memory.fill(phys, 1L << (order + SHIFT), (byte) 0);
        }
        return phys;
    }

    /** Poisons a free run: small ones with {@link #POISON}, large ones with a zero range. */
    private void poison(final long phys, final int order) {
        if (order >= ZERO_RANGE_ORDER) {
            memory.zeroRange(phys, 1L << (order + SHIFT));
        } else {
            memory.fill(phys, 1L << (order + SHIFT), POISON);
        }
    }

    /** A naturally aligned run of {@code 2^order} frames, contents undefined (poisoned when debugging). */
    @Override
    public synchronized long allocRun(final int order) {
        if (order < 0 || order > MAX_ORDER) {
            throw new KernelException(Errno.EINVAL, "order " + order + " outside 0.." + MAX_ORDER);
        }
        if (!open) {
            throw new IllegalStateException("frame allocation before the allocator opened");
        }
        faults.check(FaultInjection.Site.FRAME);
        int o = order;
        long pfn = -1;
        while (o <= MAX_ORDER && (pfn = popFree(o)) < 0) {
            o++;
        }
        if (pfn < 0) {
            throw new KernelException(Errno.ENOMEM, String.format("no free run of order %d (%d frames free)", order, freeFrames));
        }
        while (o > order) {
            o--;
            pushFree(pfn + (1L << o), o); // the upper half goes back, split
        }
        freeFrames -= 1L << order;
        allocatedFrames += 1L << order;
        allocated.setRange(pfn, pfn + (1L << order));
        if (poison) {
            checkPoison(pfn, order);
        }
        return pfn << SHIFT;
    }

    /** Each frame must read all {@link #POISON} or, if it was poisoned as part of a large run, all zeros. */
    private void checkPoison(final long pfn, final int order) {
        final long base = pfn << SHIFT;
        final long end = base + (1L << (order + SHIFT));
        for (long frame = base; frame < end; frame += PhysicalMemory.FRAME_SIZE) {
            final long want = memory.load64(frame);
            if (want != POISON64 && want != 0) {
                violations++;
                return;
            }
            for (long p = frame + 8; p < frame + PhysicalMemory.FRAME_SIZE; p += 8) {
                if (memory.load64(p) != want) {
                    violations++;
                    return;
                }
            }
        }
    }

    @Override
    public void freeFrame(final long phys) {
        freeRun(phys, 0);
    }

    /**
     * Returns a run. Each frame must be allocated, or early-reserved and now given back (KHO's
     * finish frees preserved frames nobody claimed); freeing a free frame is a bug and throws.
     */
    @Override
    public synchronized void freeRun(final long phys, final int order) {
        if (order < 0 || order > MAX_ORDER || (phys & ((1L << (order + SHIFT)) - 1)) != 0
                || (phys >>> SHIFT) + (1L << order) > limitFrames) {
            throw new IllegalArgumentException(String.format("free of 0x%x order %d: not an aligned run of this memory", phys, order));
        }
        if (!open) {
            throw new IllegalStateException("free before the allocator opened");
        }
        long pfn = phys >>> SHIFT;
        final long end = pfn + (1L << order);
        if (overlapsFreeBlock(pfn, order)) {
            throw new IllegalStateException(String.format("double free: run 0x%x order %d overlaps a free block", phys, order));
        }
        final long wasAllocated = allocated.clearRange(pfn, end);
        if (poison) {
            poison(phys, order);
        }
        freeFrames += 1L << order;
        allocatedFrames -= wasAllocated;
        reservedFrames -= (1L << order) - wasAllocated;
        int o = order;
        while (o < MAX_ORDER) {
            final long buddy = pfn ^ (1L << o);
            if (buddy + (1L << o) > limitFrames || !testHead(buddy, o)) {
                break;
            }
            clearHead(buddy, o); // its stack entry goes stale
            pfn = Math.min(pfn, buddy);
            o++;
        }
        pushFree(pfn, o);
    }

    /** A free block of a larger order holds the run, or one of a smaller order starts inside it. */
    private boolean overlapsFreeBlock(final long pfn, final int order) {
        for (int o = 0; o <= MAX_ORDER; o++) {
            if (o >= order ? testHead(pfn & ~((1L << o) - 1), o)
                    : freeHead[o].anySet(pfn >>> o, (pfn + (1L << order)) >>> o)) {
                return true;
            }
        }
        return false;
    }

    private boolean testAllocated(final long pfn) {
        return allocated.get(pfn);
    }

    /** True if the frame at {@code phys} is handed out (not free, not reserved). */
    public synchronized boolean isAllocated(final long phys) {
        return open && phys >= 0 && (phys >>> SHIFT) < limitFrames && testAllocated(phys >>> SHIFT);
    }

    /** True if the frame at {@code phys} is on a free list: anyone may be handed it next. */
    public synchronized boolean isFree(final long phys) {
        return open && phys >= 0 && (phys >>> SHIFT) < limitFrames && overlapsFreeBlock(phys >>> SHIFT, 0);
    }

    /** Heap bytes of this allocator's own bookkeeping: it follows what is managed, not memory's size. */
    public synchronized long metadataBytes() {
        if (!open) {
            return 0;
        }
        long b = allocated.bytesInUse();
        for (int o = 0; o <= MAX_ORDER; o++) {
            b += freeHead[o].bytesInUse() + stack[o].length * 8L;
        }
        return b;
    }

    @Override
    public synchronized long freeFrames() {
        return freeFrames;
    }

    public synchronized Stats stats() {
        return new Stats(limitFrames, reservedFrames, freeFrames, allocatedFrames, violations);
    }

    // ------------------------------------------------------------------ free-list bookkeeping

    private boolean testHead(final long pfn, final int order) {
        final long idx = pfn >>> order;
        return idx < freeHead[order].size() && freeHead[order].get(idx);
    }

    private void clearHead(final long pfn, final int order) {
        final long idx = pfn >>> order;
        freeHead[order].clear(idx);
    }

    private void pushFree(final long pfn, final int order) {
        final long idx = pfn >>> order;
        freeHead[order].set(idx);
        long[] s = stack[order];
        if (depth[order] == s.length) {
            s = java.util.Arrays.copyOf(s, s.length * 2);
            stack[order] = s;
        }
        s[depth[order]++] = pfn;
    }

    private long popFree(final int order) {
        final long[] s = stack[order];
        while (depth[order] > 0) {
            final long pfn = s[--depth[order]];
            if (testHead(pfn, order)) {
                clearHead(pfn, order);
                return pfn;
            }
        }
        return -1;
    }
}
