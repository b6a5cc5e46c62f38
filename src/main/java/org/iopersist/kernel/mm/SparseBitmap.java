package org.iopersist.kernel.mm;

/**
 * A bitmap over a large index space whose memory follows the bits ever set: 64 Ki-bit chunks are
 * allocated on the first set inside them. The frame allocator's bitmaps on a 1 TiB machine whose
 * RAM is mostly a carve-out cost what the few GiB it manages need, not 1 bit per frame of the machine.
 * Not thread-safe: its owner's lock guards it.
 */
public final class SparseBitmap {
    private static final int CHUNK_SHIFT = 16; // bits per chunk: 65536 = 1024 longs = 8 KiB
    private static final int CHUNK_WORDS = 1 << (CHUNK_SHIFT - 6);

    private final long bits;
    private final long[][] chunks;
    private int chunksInUse;

    public SparseBitmap(final long bits) {
        if (bits < 0 || ((bits + (1L << CHUNK_SHIFT) - 1) >>> CHUNK_SHIFT) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("bitmap of " + bits + " bits");
        }
        this.bits = bits;
        this.chunks = new long[(int) ((bits + (1L << CHUNK_SHIFT) - 1) >>> CHUNK_SHIFT)][];
    }

    public long size() {
        return bits;
    }

    public boolean get(final long index) {
        final long[] c = chunks[(int) (index >>> CHUNK_SHIFT)];
        return c != null && (c[(int) (index >>> 6) & (CHUNK_WORDS - 1)] & (1L << index)) != 0;
    }

    public void set(final long index) {
        final int ci = (int) (index >>> CHUNK_SHIFT);
        long[] c = chunks[ci];
        if (c == null) {
            c = new long[CHUNK_WORDS];
            chunks[ci] = c;
            chunksInUse++;
        }
        c[(int) (index >>> 6) & (CHUNK_WORDS - 1)] |= 1L << index;
    }

    public void clear(final long index) {
        final long[] c = chunks[(int) (index >>> CHUNK_SHIFT)];
        if (c != null) {
            c[(int) (index >>> 6) & (CHUNK_WORDS - 1)] &= ~(1L << index);
        }
    }

    /** Sets bits {@code [from, to)}, a word at a time. */
    public void setRange(final long from, final long to) {
        for (long i = from; i < to; ) {
            final long wordEnd = Math.min(to, (i | 63) + 1);
            final int ci = (int) (i >>> CHUNK_SHIFT);
            long[] c = chunks[ci];
            if (c == null) {
                c = new long[CHUNK_WORDS];
                chunks[ci] = c;
                chunksInUse++;
            }
            c[(int) (i >>> 6) & (CHUNK_WORDS - 1)] |= mask(i, wordEnd);
            i = wordEnd;
        }
    }

    /** Clears bits {@code [from, to)}; returns how many were set. */
    public long clearRange(final long from, final long to) {
        long was = 0;
        for (long i = from; i < to; ) {
            final long wordEnd = Math.min(to, (i | 63) + 1);
            final long[] c = chunks[(int) (i >>> CHUNK_SHIFT)];
            if (c != null) {
                final int w = (int) (i >>> 6) & (CHUNK_WORDS - 1);
                final long m = mask(i, wordEnd);
                was += Long.bitCount(c[w] & m);
                c[w] &= ~m;
            }
            i = wordEnd;
        }
        return was;
    }

    /** True if any bit of {@code [from, to)} is set. */
    public boolean anySet(final long from, final long to) {
        for (long i = from; i < to; ) {
            final long wordEnd = Math.min(to, (i | 63) + 1);
            final long[] c = chunks[(int) (i >>> CHUNK_SHIFT)];
            if (c == null) {
                i = Math.min(to, ((i >>> CHUNK_SHIFT) + 1) << CHUNK_SHIFT); // a whole absent chunk at once
                continue;
            }
            if ((c[(int) (i >>> 6) & (CHUNK_WORDS - 1)] & mask(i, wordEnd)) != 0) {
                return true;
            }
            i = wordEnd;
        }
        return false;
    }

    /** Bits {@code from & 63 .. (end - 1) & 63} of one word; {@code end} is at most the word's end. */
    private static long mask(final long from, final long end) {
        final int lo = (int) (from & 63);
        final int n = (int) (end - from);
        return n == 64 ? -1L : ((1L << n) - 1) << lo;
    }

    /** Heap bytes held by chunks: what this bitmap costs. */
    public long bytesInUse() {
        return (long) chunksInUse * CHUNK_WORDS * 8 + chunks.length * 8L;
    }
}
