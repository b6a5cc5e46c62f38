package org.iopersist.kernel.mm;

import java.util.Arrays;
import java.util.function.LongConsumer;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The frames behind a range of pages, as runs of physically contiguous frames. A mapping of a
 * file made of 2 MiB or 1 GiB blocks costs one entry per run, not one per 4 KiB page, so a TiB of
 * guest RAM is a few thousand entries. Immutable; {@link Builder} coalesces as it goes.
 */
public final class FrameRuns {
    private static final int PAGE_SHIFT = PhysicalMemory.FRAME_SHIFT;

    private final long[] firstPage; // page index where each run starts, ascending from 0
    private final long[] phys;      // physical address of each run's first page
    private final int runs;
    private final long pages;

    private FrameRuns(final long[] firstPage, final long[] phys, final int runs, final long pages) {
        this.firstPage = firstPage;
        this.phys = phys;
        this.runs = runs;
        this.pages = pages;
    }

    /** Pages covered. */
    public long pages() {
        return pages;
    }

    /** Runs of contiguous frames. */
    public int runs() {
        return runs;
    }

    /** The frame behind page {@code pageIndex} (0 ≤ index < pages). */
    public long frameOf(final long pageIndex) {
        final int r = runOf(pageIndex);
        return phys[r] + ((pageIndex - firstPage[r]) << PAGE_SHIFT);
    }

    /** Pages from {@code pageIndex} to the end of its run: how far frames stay contiguous. */
    public long contiguousFrom(final long pageIndex) {
        final int r = runOf(pageIndex);
        return firstPage[r] + runPages(r) - pageIndex;
    }

    private int runOf(final long pageIndex) {
        if (pageIndex < 0 || pageIndex >= pages) {
            throw new IndexOutOfBoundsException("page " + pageIndex + " of " + pages);
        }
        final int i = Arrays.binarySearch(firstPage, 0, runs, pageIndex);
        return i >= 0 ? i : -i - 2;
    }

    /** The page index where run {@code r} starts. */
    public long runFirstPage(final int r) {
        return firstPage[r];
    }

    /** The physical address of run {@code r}'s first frame. */
    public long runPhys(final int r) {
        return phys[r];
    }

    /** Pages in run {@code r}. */
    public long runPages(final int r) {
        return (r + 1 < runs ? firstPage[r + 1] : pages) - firstPage[r];
    }

    /** Pages {@code [from, to)} as runs of their own. */
    public FrameRuns slice(final long from, final long to) {
        final Builder b = new Builder();
        if (from >= to) {
            return b.build();
        }
        for (int r = runOf(from); r < runs && firstPage[r] < to; r++) {
            final long start = Math.max(firstPage[r], from);
            final long end = Math.min(firstPage[r] + runPages(r), to);
            b.add(phys[r] + ((start - firstPage[r]) << PAGE_SHIFT), end - start);
        }
        return b.build();
    }

    /** A run: {@code pages} frames contiguous from {@code phys}, behind pages from {@code firstPage}. */
    @FunctionalInterface
    public interface RunVisitor {
        void run(long firstPage, long phys, long pages);
    }

    /** Every run, in page order. */
    public void forEachRun(final RunVisitor visitor) {
        for (int r = 0; r < runs; r++) {
            visitor.run(firstPage[r], phys[r], runPages(r));
        }
    }

    /** Every frame, page by page. */
    public void forEachFrame(final LongConsumer frame) {
        for (int r = 0; r < runs; r++) {
            final long n = runPages(r);
            for (long k = 0; k < n; k++) {
                frame.accept(phys[r] + (k << PAGE_SHIFT));
            }
        }
    }

    /** Collects runs in page order; a run that continues the last one physically extends it. */
    public static final class Builder {
        private long[] firstPage = new long[4];
        private long[] phys = new long[4];
        private int runs;
        private long pages;

        /** Appends {@code count} pages whose frames are contiguous from {@code runPhys}. */
        public Builder add(final long runPhys, final long count) {
            if (count <= 0) {
                return this;
            }
            if (runs > 0 && phys[runs - 1] + ((pages - firstPage[runs - 1]) << PAGE_SHIFT) == runPhys) {
                pages += count;
                return this;
            }
            if (runs == firstPage.length) {
                firstPage = Arrays.copyOf(firstPage, runs * 2);
                phys = Arrays.copyOf(phys, runs * 2);
            }
            firstPage[runs] = pages;
            phys[runs] = runPhys;
            runs++;
            pages += count;
            return this;
        }

        public long pages() {
            return pages;
        }

        public FrameRuns build() {
            return new FrameRuns(Arrays.copyOf(firstPage, runs), Arrays.copyOf(phys, runs), runs, pages);
        }
    }
}
