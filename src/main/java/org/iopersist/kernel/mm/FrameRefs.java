package org.iopersist.kernel.mm;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * Reference counts of user frames (anonymous memory, memfd pages): the mapping or the file holds
 * one, each pin one more. A frame goes back to the allocator with its last reference, so a page
 * pinned for DMA outlives munmap and close.
 *
 * <p><b>Kept per range, not per frame.</b> Counts live in an interval map: maximal runs of frames
 * with the same (count, pins), keyed by first pfn. A range operation splits the runs at its two
 * ends, changes every run between, and merges again at the ends, so a TiB memfd made of 1 GiB runs
 * and pinned whole costs a few entries and O(runs · log) per operation, never an entry per 4 KiB.
 * Runs between the ends need no merge: they differed before, and they all moved by the same delta.
 * There is no per-frame operation: a caller with one page passes a range of one.
 *
 * <p>Every range operation checks the whole range before it changes anything: {@link #getRange}
 * and {@link #pinRange} answer false and change nothing if a frame in it is not counted.
 *
 * <p>Lock: this object's monitor.
 */
public final class FrameRefs {
    private static final int SHIFT = PhysicalMemory.FRAME_SHIFT;

    /** A run {@code [key, end)} of counted frames, by pfn; {@code pins ≤ count}. */
    private record Run(long end, int count, int pins) {
    }

    private final FrameSource frames;
    private final TreeMap<Long, Run> runs = new TreeMap<>(); // guarded by this; disjoint, never count 0
    private long counted; // guarded by this; frames with a count, summed over runs

    public FrameRefs(final FrameSource frames) {
        this.frames = frames;
    }

    /** The kernel's fault injection ({@code fail_nth}), or null where nothing is injectable. */
    public org.iopersist.kernel.FaultInjection faults() {
        return frames.faults();
    }

    // ------------------------------------------------------------------ range operations

    /**
     * Starts counting {@code pages} fresh frames from {@code phys} at one reference each (the
     * mapping's or the file's, dropped by {@link #putRange}). Frames already counted are a bug.
     */
    public synchronized void initRange(final long phys, final long pages) {
        final long s = pfn(phys);
        final long e = end(s, pages);
        final Map.Entry<Long, Run> below = runs.lowerEntry(e);
        if (below != null && below.getValue().end() > s) {
            throw new IllegalStateException(String.format("init of counted frames 0x%x+%d pages", phys, pages));
        }
        runs.put(s, new Run(e, 1, 0));
        counted += e - s;
        mergeAt(s);
        mergeAt(e);
    }

    /** Takes a reference on every frame of the range; false (and nothing taken) if one is not counted. */
    public synchronized boolean getRange(final long phys, final long pages) {
        return add(pfn(phys), end(pfn(phys), pages), 1, 0);
    }

    /** pin_user_pages over a range: a reference that also counts as a pin, on each frame; false (nothing pinned) if one is not counted. */
    public synchronized boolean pinRange(final long phys, final long pages) {
        return add(pfn(phys), end(pfn(phys), pages), 1, 1);
    }

    /**
     * Drops a reference on every frame of the range; frames that lose their last go back to the
     * allocator. Taking a pin's reference (count down to the pins) is a bug: use {@link #unpinRange}.
     */
    public synchronized void putRange(final long phys, final long pages) {
        final long s = pfn(phys);
        if (!add(s, end(s, pages), -1, 0)) {
            throw new IllegalStateException(String.format("put of uncounted frames in 0x%x+%d pages", phys, pages));
        }
    }

    /** unpin_user_pages over a range: drops a pin and its reference on each frame. */
    public synchronized void unpinRange(final long phys, final long pages) {
        final long s = pfn(phys);
        if (!add(s, end(s, pages), -1, -1)) {
            throw new IllegalStateException(String.format("unpin of unpinned frames in 0x%x+%d pages", phys, pages));
        }
    }

    /**
     * Adds {@code dc} to the count and {@code dp} to the pins of every frame in {@code [s, e)}, if
     * every frame there is counted (and, for {@code dp < 0}, pinned); else changes nothing.
     */
    private boolean add(final long s, final long e, final int dc, final int dp) {
        if (!covered(s, e, dp < 0, dc < 0 && dp == 0)) {
            return false;
        }
        split(s);
        split(e);
        final List<long[]> freed = new ArrayList<>(0);
        // Copies, not TreeMap's own entries: a removal may move another node's key into an entry.
        final List<Map.Entry<Long, Run>> between = new ArrayList<>();
        for (Map.Entry<Long, Run> it : runs.subMap(s, true, e, false).entrySet()) {
            between.add(Map.entry(it.getKey(), it.getValue()));
        }
        for (Map.Entry<Long, Run> it : between) {
            final long start = it.getKey();
            final Run r = it.getValue();
            final int c = r.count() + dc;
            if (c == 0) {
                runs.remove(start);
                counted -= r.end() - start;
                freed.add(new long[] {start, r.end()});
            } else {
                runs.put(start, new Run(r.end(), c, r.pins() + dp));
            }
        }
        mergeAt(s);
        mergeAt(e);
        for (long[] f : freed) {
            freeFrames(f[0], f[1]);
        }
        return true;
    }

    /**
     * Every frame of {@code [s, e)} is in some run: with a pin, if {@code pinned}; with a
     * reference that is not a pin's, if {@code unpinnedRef} (a put must not take a pin's).
     */
    private boolean covered(final long s, final long e, final boolean pinned, final boolean unpinnedRef) {
        Map.Entry<Long, Run> it = runs.floorEntry(s);
        long at = s;
        while (at < e) {
            if (it == null || it.getKey() > at || it.getValue().end() <= at || (pinned && it.getValue().pins() == 0)
                    || (unpinnedRef && it.getValue().count() == it.getValue().pins())) {
                return false;
            }
            at = it.getValue().end();
            it = runs.higherEntry(it.getKey());
        }
        return true;
    }

    /** Makes {@code pfn} the start of a run if a run crosses it. */
    private void split(final long pfn) {
        final Map.Entry<Long, Run> below = runs.lowerEntry(pfn);
        if (below != null && below.getValue().end() > pfn) {
            final Run r = below.getValue();
            runs.put(below.getKey(), new Run(pfn, r.count(), r.pins()));
            runs.put(pfn, r);
        }
    }

    /** Joins the run ending at {@code pfn} with the one starting there, if they count the same. */
    private void mergeAt(final long pfn) {
        final Run right = runs.get(pfn);
        final Map.Entry<Long, Run> left = runs.lowerEntry(pfn);
        if (right != null && left != null && left.getValue().end() == pfn && left.getValue().count() == right.count()
                && left.getValue().pins() == right.pins()) {
            final long leftStart = left.getKey();
            runs.remove(pfn);
            runs.put(leftStart, right);
        }
    }

    /** Gives {@code [s, e)} back as the largest naturally aligned runs the allocator takes. */
    private void freeFrames(final long s, final long e) {
        long p = s;
        while (p < e) {
            int order = Math.min(p == 0 ? FrameAllocator.MAX_ORDER : Long.numberOfTrailingZeros(p), FrameAllocator.MAX_ORDER);
            while ((1L << order) > e - p) {
                order--;
            }
            frames.freeRun(p << SHIFT, order);
            p += 1L << order;
        }
    }

    private static long pfn(final long phys) {
        if ((phys & PhysicalMemory.FRAME_MASK) != 0 || phys < 0) {
            throw new IllegalArgumentException("frame address 0x" + Long.toHexString(phys));
        }
        return phys >>> SHIFT;
    }

    private static long end(final long pfn, final long pages) {
        if (pages <= 0) {
            throw new IllegalArgumentException("range of " + pages + " pages");
        }
        return Math.addExact(pfn, pages);
    }

    // ------------------------------------------------------------------ one frame: what the books say of it

    /** The pins on a frame (the selftest's MD_CHECK_REFS reads this). */
    public synchronized int pins(final long phys) {
        final Run r = runOf(phys >>> SHIFT);
        return r == null ? 0 : r.pins();
    }

    /** References on a frame, 0 if it is not counted. */
    public synchronized int count(final long phys) {
        final Run r = runOf(phys >>> SHIFT);
        return r == null ? 0 : r.count();
    }

    private Run runOf(final long pfn) {
        final Map.Entry<Long, Run> e = runs.floorEntry(pfn);
        return e != null && e.getValue().end() > pfn ? e.getValue() : null;
    }

    /** Frames with a reference count. */
    public synchronized long frames() {
        return counted;
    }

    /** Entries the books take: maximal runs of frames counted alike (what a TiB costs). */
    public synchronized int runs() {
        return runs.size();
    }
}
