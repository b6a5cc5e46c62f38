package org.iopersist.kernel.iommu.intel;

import java.util.Arrays;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.mm.FrameSource;

/**
 * Where one domain's table pages come from (what {@code iommu-pages} is to a Linux driver, one pool
 * per domain): naturally aligned runs of frames, "chunks", taken from the frame allocator and carved
 * into 4 KiB table pages. Chunks grow with the domain, one frame first, then 2, 4, … up to
 * {@value #MAX_CHUNK_ORDER} (2 MiB), so a small domain costs what it did with single frames and a
 * TiB domain with 4 KiB leaves holds its 512 Ki table pages in about a thousand chunks.
 *
 * <p>Why chunks: a handover preserves and lists the chunks, not the pages, with each chunk's bitmap
 * of the pages in use ({@link #usage}), so the next kernel claims, reserves and rebuilds the pool in
 * O(chunks) inside the blackout, without reading a table ({@link Incoming}). That the tables reach
 * exactly those pages is the scrub's to check after the rebind ({@link #sameUsage}).
 *
 * <p>Which pages of a chunk are in use is a bitmap of 512 bits a chunk, whatever its order. A chunk
 * whose pages are all free goes back to the allocator. A page is zeroed when it is handed out, not
 * the chunk when it is taken: unmap unlinks table pages without clearing them, and a chunk taken
 * zeroed would be a zero range the page's first write must fill again.
 *
 * <p>Not thread safe: the domain uses its pool under its lock.
 */
final class TablePagePool {
    static final int MAX_CHUNK_ORDER = 9;
    private static final int WORDS = 1 << MAX_CHUNK_ORDER >>> 6;
    private static final int SHIFT = 12;

    private final PhysicalMemory memory;
    private final FrameSource frames;
    // Chunk i: chunkPhys[i], chunkOrder[i]; used[i*WORDS ..] its bitmap, inUse[i] its set bits.
    private long[] chunkPhys = new long[4];
    private byte[] chunkOrder = new byte[4];
    private int[] inUse = new int[4];
    private long[] used = new long[4 * WORDS];
    private int chunks;
    /** Chunk indexes by physical address, for {@link #free}. */
    private int[] byPhys = new int[4];
    /** Where the last allocation found room; a hint only. */
    private int cursor;
    private long pages;
    /** Chunks ever allocated (adopted ones count): sets the next chunk's order. */
    private int grown;

    TablePagePool(final PhysicalMemory memory, final FrameSource frames) {
        this.memory = memory;
        this.frames = frames;
    }

    /** Table pages in use. */
    long pages() {
        return pages;
    }

    int chunkCount() {
        return chunks;
    }

    /** Chunk {@code i} packed as a handover lists it: {@code phys | order}. */
    long chunk(final int i) {
        return chunkPhys[i] | chunkOrder[i];
    }

    /** Bitmap words a chunk of {@code order} takes in a handover's {@code table-usage}: one per 64 pages, at least one. */
    static int usageWords(final int order) {
        return Math.max(1, (1 << order) >>> 6);
    }

    /**
     * Which pages of each chunk are in use, chunk by chunk as {@link #chunk} lists them, each chunk's
     * {@link #usageWords} words (bit {@code p} of word {@code w}: page {@code 64 w + p}).
     */
    long[] usage() {
        int n = 0;
        for (int c = 0; c < chunks; c++) {
            n += usageWords(chunkOrder[c]);
        }
        final long[] out = new long[n];
        int at = 0;
        for (int c = 0; c < chunks; c++) {
            final int k = usageWords(chunkOrder[c]);
            System.arraycopy(used, c * WORDS, out, at, k);
            at += k;
        }
        return out;
    }

    /** Whether {@code phys} is a table page in use here. */
    boolean inUse(final long phys) {
        final int c = chunkOf(phys);
        if (c < 0) {
            return false;
        }
        final int page = (int) ((phys - chunkPhys[c]) >>> SHIFT);
        return (used[c * WORDS + (page >>> 6)] & 1L << page) != 0;
    }

    /** A zeroed table page. @throws org.iopersist.kernel.KernelException ENOMEM */
    long allocZeroedPage() {
        // iommu_alloc_pages: a fail_nth site whether or not the pool must grow (growing is another).
        org.iopersist.kernel.FaultInjection.check(frames == null ? null : frames.faults(),
                org.iopersist.kernel.FaultInjection.Site.TABLE_PAGE);
        int c = cursor < chunks && inUse[cursor] < 1 << chunkOrder[cursor] ? cursor : findRoom();
        if (c < 0) {
            c = grow();
        }
        cursor = c;
        final int page = firstClear(c);
        used[c * WORDS + (page >>> 6)] |= 1L << page;
        inUse[c]++;
        pages++;
        final long phys = chunkPhys[c] + ((long) page << SHIFT);
        memory.fill(phys, PhysicalMemory.FRAME_SIZE, (byte) 0);
        return phys;
    }

    /** Returns a table page; its chunk goes back to the allocator once it has none in use. */
    void free(final long phys) {
        final int c = chunkOf(phys);
        final int page = c < 0 ? -1 : (int) ((phys - chunkPhys[c]) >>> SHIFT);
        if (c < 0 || (used[c * WORDS + (page >>> 6)] & 1L << page) == 0) {
            throw new IllegalStateException(String.format("table page 0x%x is not in use in this domain's pool", phys));
        }
        used[c * WORDS + (page >>> 6)] &= ~(1L << page);
        pages--;
        if (--inUse[c] == 0) {
            release(c);
        }
    }

    /** Returns every chunk: the domain is gone. */
    void freeAll() {
        for (int c = 0; c < chunks; c++) {
            frames.freeRun(chunkPhys[c], chunkOrder[c]);
        }
        chunks = 0;
        pages = 0;
        cursor = 0;
    }

    private int findRoom() {
        for (int c = chunks - 1; c >= 0; c--) {
            if (inUse[c] < 1 << chunkOrder[c]) {
                return c;
            }
        }
        return -1;
    }

    private int firstClear(final int c) {
        for (int w = 0; w < WORDS; w++) {
            final long free = ~used[c * WORDS + w];
            if (free != 0) {
                return w << 6 | Long.numberOfTrailingZeros(free);
            }
        }
        throw new IllegalStateException("full chunk chosen for allocation");
    }

    /** A new chunk, the largest the growth allows that the allocator has. */
    private int grow() {
        final int want = Math.min(MAX_CHUNK_ORDER, grown);
        for (int order = want; ; order--) {
            try {
                final long phys = frames.allocRun(order);
                grown++;
                return add(phys, order);
            } catch (org.iopersist.kernel.KernelException e) {
                if (order == 0) {
                    throw e;
                }
            }
        }
    }

    private int add(final long phys, final int order) {
        if (chunks == chunkPhys.length) {
            final int n = chunks * 2;
            chunkPhys = Arrays.copyOf(chunkPhys, n);
            chunkOrder = Arrays.copyOf(chunkOrder, n);
            inUse = Arrays.copyOf(inUse, n);
            used = Arrays.copyOf(used, n * WORDS);
            byPhys = Arrays.copyOf(byPhys, n);
        }
        final int c = chunks++;
        chunkPhys[c] = phys;
        chunkOrder[c] = (byte) order;
        inUse[c] = 0;
        Arrays.fill(used, c * WORDS, (c + 1) * WORDS, 0L);
        // Chunks come mostly in rising address order, so this insertion rarely moves anything.
        int at = chunks - 1;
        while (at > 0 && chunkPhys[byPhys[at - 1]] > phys) {
            byPhys[at] = byPhys[at - 1];
            at--;
        }
        byPhys[at] = c;
        return c;
    }

    /** Gives chunk {@code c} back and moves the last chunk into its slot. */
    private void release(final int c) {
        frames.freeRun(chunkPhys[c], chunkOrder[c]);
        removeFromIndex(c);
        final int last = --chunks;
        if (c != last) {
            chunkPhys[c] = chunkPhys[last];
            chunkOrder[c] = chunkOrder[last];
            inUse[c] = inUse[last];
            System.arraycopy(used, last * WORDS, used, c * WORDS, WORDS);
            for (int i = 0; i < chunks; i++) {
                if (byPhys[i] == last) {
                    byPhys[i] = c;
                }
            }
        }
        cursor = 0;
    }

    private void removeFromIndex(final int c) {
        int i = 0;
        while (byPhys[i] != c) {
            i++;
        }
        System.arraycopy(byPhys, i + 1, byPhys, i, chunks - i - 1);
    }

    /** The chunk holding {@code phys}, or -1. */
    private int chunkOf(final long phys) {
        int lo = 0;
        int hi = chunks - 1;
        while (lo <= hi) {
            final int mid = (lo + hi) >>> 1;
            final int c = byPhys[mid];
            if (phys < chunkPhys[c]) {
                hi = mid - 1;
            } else if (phys >= chunkPhys[c] + (PhysicalMemory.FRAME_SIZE << chunkOrder[c])) {
                lo = mid + 1;
            } else {
                return c;
            }
        }
        return -1;
    }

    /** An empty pool over this one's chunks, for a walk to mark what it reaches ({@link Incoming#sameUsage}). */
    Incoming blank() {
        final long[] packed = new long[chunks];
        for (int c = 0; c < chunks; c++) {
            packed[c] = chunk(c);
        }
        return Incoming.of(memory, packed);
    }

    // ------------------------------------------------------------------ a handed-over pool

    /**
     * A pool read back from a handover: the chunks as listed, and which of their pages are in use,
     * loaded from {@code table-usage} ({@link #load}) at boot or marked by the scrub's walk of the
     * tables ({@link #mark}). Validation builds it without writing anything; {@link #adopt} makes it
     * the domain's pool once every chunk is claimed.
     */
    static final class Incoming {
        private final TablePagePool pool;

        /**
         * @param packed chunks as listed ({@code phys | order}); the caller has checked each is a
         *               preserved block of memory of an order up to {@value #MAX_CHUNK_ORDER}, and
         *               planned each with {@code KhoIncoming.plan}, which refuses overlapping ones
         * @throws IllegalArgumentException if two chunks overlap all the same: a bug, not a bad handover
         */
        static Incoming of(final PhysicalMemory memory, final long[] packed) {
            final TablePagePool p = new TablePagePool(memory, null);
            for (long c : packed) {
                final int order = (int) (c & (PhysicalMemory.FRAME_SIZE - 1));
                p.add(c & -PhysicalMemory.FRAME_SIZE, order);
            }
            for (int i = 1; i < p.chunks; i++) {
                final int a = p.byPhys[i - 1];
                if (p.chunkPhys[a] + (PhysicalMemory.FRAME_SIZE << p.chunkOrder[a]) > p.chunkPhys[p.byPhys[i]]) {
                    throw new IllegalArgumentException(String.format("table chunks at 0x%x and 0x%x overlap",
                            p.chunkPhys[a], p.chunkPhys[p.byPhys[i]]));
                }
            }
            p.grown = p.chunks;
            return new Incoming(p);
        }

        private Incoming(final TablePagePool pool) {
            this.pool = pool;
        }

        private int last = -1;

        /**
         * Loads the pages in use from a handover's {@code table-usage} ({@link TablePagePool#usage}'s
         * layout), in O(chunks): what the previous kernel's pool had when it wrote the handover.
         *
         * @return null, or what is wrong with it (its length, or a bit past its chunk's end)
         */
        String load(final long[] usage) {
            final TablePagePool p = pool;
            int at = 0;
            for (int c = 0; c < p.chunks; c++) {
                final int order = p.chunkOrder[c];
                final int k = usageWords(order);
                if (at + k > usage.length) {
                    return "table-usage holds " + usage.length + " words, the chunks need more";
                }
                if (order < 6 && (usage[at] & (-1L << (1 << order))) != 0) {
                    return String.format("table-usage marks pages past the end of chunk 0x%x", p.chunkPhys[c]);
                }
                int n = 0;
                for (int w = 0; w < k; w++) {
                    p.used[c * WORDS + w] = usage[at + w];
                    n += Long.bitCount(usage[at + w]);
                }
                p.inUse[c] = n;
                p.pages += n;
                at += k;
            }
            if (at != usage.length) {
                return "table-usage holds " + usage.length + " words, the chunks need " + at;
            }
            return null;
        }

        /** Whether {@code phys} is a page in use after {@link #load} or {@link #mark}. */
        boolean inUse(final long phys) {
            return pool.inUse(phys);
        }

        /** Whether the pages marked here are exactly those in use in {@code other}, chunk for chunk. */
        boolean sameUsage(final TablePagePool other) {
            return pool.pages == other.pages && Arrays.equals(pool.usage(), other.usage());
        }

        /**
         * Marks the table page at {@code phys} in use.
         *
         * @return false if no listed chunk holds it, or the walk reached it before (a shared page)
         */
        boolean mark(final long phys) {
            return mark(phys, 1) < 0;
        }

        /**
         * Marks {@code count} table pages at consecutive frames from {@code phys} in use, a word of
         * the bitmap at a time.
         *
         * @return -1, or the first page that no listed chunk holds or that the walk reached before
         */
        long mark(final long phys, final int count) {
            final TablePagePool p = pool;
            long at = phys;
            int left = count;
            while (left > 0) {
                int c = last;
                if (c < 0 || at < p.chunkPhys[c] || at >= p.chunkPhys[c] + (PhysicalMemory.FRAME_SIZE << p.chunkOrder[c])) {
                    c = p.chunkOf(at);
                    if (c < 0) {
                        return at;
                    }
                    last = c;
                }
                final int first = (int) ((at - p.chunkPhys[c]) >>> SHIFT);
                final int end = Math.min(1 << p.chunkOrder[c], first + left);
                for (int page = first; page < end; ) {
                    final int w = c * WORDS + (page >>> 6);
                    final int upTo = Math.min(end, (page | 63) + 1);
                    final long bits = (-1L >>> (64 - (upTo - page))) << page;
                    if ((p.used[w] & bits) != 0) {
                        return p.chunkPhys[c] + ((long) (page + Long.numberOfTrailingZeros(p.used[w] & bits) - (page & 63)) << SHIFT);
                    }
                    p.used[w] |= bits;
                    page = upTo;
                }
                p.inUse[c] += end - first;
                p.pages += end - first;
                left -= end - first;
                at += (long) (end - first) << SHIFT;
            }
            return -1;
        }

        long pages() {
            return pool.pages;
        }

        /** A chunk with no table page in use, or -1: the old kernel gives such a chunk back. */
        int idleChunk() {
            for (int c = 0; c < pool.chunks; c++) {
                if (pool.inUse[c] == 0) {
                    return c;
                }
            }
            return -1;
        }

        int chunkCount() {
            return pool.chunks;
        }

        long chunk(final int i) {
            return pool.chunk(i);
        }

        /** The domain's pool, allocating from {@code frames} from now on. */
        TablePagePool adopt(final FrameSource frames) {
            final TablePagePool p = new TablePagePool(pool.memory, frames);
            p.chunkPhys = pool.chunkPhys;
            p.chunkOrder = pool.chunkOrder;
            p.inUse = pool.inUse;
            p.used = pool.used;
            p.byPhys = pool.byPhys;
            p.chunks = pool.chunks;
            p.pages = pool.pages;
            p.grown = pool.grown;
            return p;
        }
    }
}
