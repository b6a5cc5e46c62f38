package org.iopersist.kernel.mm.memfd;

import java.util.Arrays;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.mm.FrameRuns;

/**
 * A memfd's pages as extents: file page index → a run of physically contiguous frames, in file
 * order, covering pages {@code 0 .. pages()} with no hole (shmem's folios, which a memfd here
 * allocates as large as it can). A lookup is a binary search over the extents; growth appends and
 * a shrink cuts the tail, so a TiB file is as many entries as it has runs, never one per page.
 * Physically adjacent extents coalesce.
 *
 * <p>Not thread safe: the owning {@link MemFd}'s monitor guards it.
 */
final class Extents {
    private static final int SHIFT = PhysicalMemory.FRAME_SHIFT;

    private long[] first = new long[4]; // page index where each extent starts, ascending from 0
    private long[] phys = new long[4];  // the physical address of its first frame
    private int n;
    private long pages;

    /** Pages covered. */
    long pages() {
        return pages;
    }

    /** Extents (maximal physically contiguous runs). */
    int count() {
        return n;
    }

    /** Appends {@code count} pages whose frames are contiguous from {@code runPhys}. */
    void append(final long runPhys, final long count) {
        if (n > 0 && phys[n - 1] + ((pages - first[n - 1]) << SHIFT) == runPhys) {
            pages += count;
            return;
        }
        if (n == first.length) {
            first = Arrays.copyOf(first, n * 2);
            phys = Arrays.copyOf(phys, n * 2);
        }
        first[n] = pages;
        phys[n] = runPhys;
        n++;
        pages += count;
    }

    /** The frame behind page {@code index} (0 ≤ index < pages). */
    long frameOf(final long index) {
        final int r = extentOf(index);
        return phys[r] + ((index - first[r]) << SHIFT);
    }

    private int extentOf(final long index) {
        if (index < 0 || index >= pages) {
            throw new IndexOutOfBoundsException("page " + index + " of " + pages);
        }
        final int i = Arrays.binarySearch(first, 0, n, index);
        return i >= 0 ? i : -i - 2;
    }

    private long extentPages(final int r) {
        return (r + 1 < n ? first[r + 1] : pages) - first[r];
    }

    /** Pages {@code [from, to)} appended to {@code out} as runs, one step per extent. */
    void slice(final long from, final long to, final FrameRuns.Builder out) {
        if (from >= to) {
            return;
        }
        for (int r = extentOf(from); r < n && first[r] < to; r++) {
            final long start = Math.max(first[r], from);
            final long end = Math.min(first[r] + extentPages(r), to);
            out.add(phys[r] + ((start - first[r]) << SHIFT), end - start);
        }
    }

    /** Every page as runs. */
    FrameRuns all() {
        final FrameRuns.Builder b = new FrameRuns.Builder();
        slice(0, pages, b);
        return b.build();
    }

    /** Cuts the file to {@code keep} pages; each cut-off piece goes to {@code dropped}, last first. */
    void truncate(final long keep, final FrameRuns.RunVisitor dropped) {
        while (pages > keep) {
            final int r = n - 1;
            final long cut = Math.max(first[r], keep);
            dropped.run(cut, phys[r] + ((cut - first[r]) << SHIFT), pages - cut);
            pages = cut;
            if (cut == first[r]) {
                n--;
            }
        }
    }
}
