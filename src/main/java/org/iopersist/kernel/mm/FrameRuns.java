package org.iopersist.kernel.mm;

import java.util.Arrays;
import java.util.function.LongConsumer;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The frames behind a range of pages, as runs of physically contiguous frames. A mapping of a
 * file made of 2 MiB or 1 GiB blocks costs one entry per run, not one per 4 KiB page, so a TiB of
 * guest RAM is a few thousand entries. Immutable; {@link Builder} coalesces as it goes, and is
 * also the table a file that grows and shrinks keeps (a memfd's pages: lookup, slice, truncate).
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
        return frameOf(firstPage, phys, runs, pages, pageIndex);
    }

    /** Pages from {@code pageIndex} to the end of its run: how far frames stay contiguous. */
    public long contiguousFrom(final long pageIndex) {
        final int r = runOf(pageIndex);
        return firstPage[r] + runPages(r) - pageIndex;
    }

    private int runOf(final long pageIndex) {
        return runOf(firstPage, runs, pages, pageIndex);
    }

    // The lookups of a run table, shared by the snapshot and the builder.

    private static int runOf(final long[] firstPage, final int runs, final long pages, final long pageIndex) {
        if (pageIndex < 0 || pageIndex >= pages) {
            throw new IndexOutOfBoundsException("page " + pageIndex + " of " + pages);
        }
        final int i = Arrays.binarySearch(firstPage, 0, runs, pageIndex);
        return i >= 0 ? i : -i - 2;
    }

    private static long frameOf(final long[] firstPage, final long[] phys, final int runs, final long pages,
            final long pageIndex) {
        final int r = runOf(firstPage, runs, pages, pageIndex);
        return phys[r] + ((pageIndex - firstPage[r]) << PAGE_SHIFT);
    }

    private static long runPages(final long[] firstPage, final int runs, final long pages, final int r) {
        return (r + 1 < runs ? firstPage[r + 1] : pages) - firstPage[r];
    }

    /** Pages {@code [from, to)} of a table appended to {@code out}, one step per run. */
    private static void sliceInto(final long[] firstPage, final long[] phys, final int runs, final long pages,
            final long from, final long to, final Builder out) {
        if (from >= to) {
            return;
        }
        for (int r = runOf(firstPage, runs, pages, from); r < runs && firstPage[r] < to; r++) {
            final long start = Math.max(firstPage[r], from);
            final long end = Math.min(firstPage[r] + runPages(firstPage, runs, pages, r), to);
            out.add(phys[r] + ((start - firstPage[r]) << PAGE_SHIFT), end - start);
        }
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
        return runPages(firstPage, runs, pages, r);
    }

    /** Pages {@code [from, to)} as runs of their own. */
    public FrameRuns slice(final long from, final long to) {
        final Builder b = new Builder();
        sliceInto(firstPage, phys, runs, pages, from, to, b);
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

        /** Runs so far (maximal: physically continuing ones have merged). */
        public int runs() {
            return runs;
        }

        /** The frame behind page {@code pageIndex} (0 ≤ index < pages). */
        public long frameOf(final long pageIndex) {
            return FrameRuns.frameOf(firstPage, phys, runs, pages, pageIndex);
        }

        /** Pages {@code [from, to)} appended to {@code out} as runs, one step per run. */
        public void slice(final long from, final long to, final Builder out) {
            sliceInto(firstPage, phys, runs, pages, from, to, out);
        }

        /** Cuts the table to {@code keep} pages; each cut-off piece goes to {@code dropped}, last first. */
        public void truncate(final long keep, final RunVisitor dropped) {
            while (pages > keep) {
                final int r = runs - 1;
                final long cut = Math.max(firstPage[r], keep);
                dropped.run(cut, phys[r] + ((cut - firstPage[r]) << PAGE_SHIFT), pages - cut);
                pages = cut;
                if (cut == firstPage[r]) {
                    runs--;
                }
            }
        }

        public FrameRuns build() {
            return new FrameRuns(Arrays.copyOf(firstPage, runs), Arrays.copyOf(phys, runs), runs, pages);
        }
    }
}
