package org.iopersist.kernel.iommufd;

/**
 * An IOVA interval {@code [start, last]}; {@code last} is inclusive, both are unsigned 64-bit, so
 * {@code [0, 0xffff_ffff_ffff_ffff]} is the whole space (style rule: 'last' inclusive, 'end'
 * exclusive, compare unsigned).
 */
public record IovaRange(long start, long last) {
    public static final long ULONG_MAX = -1L;

    public IovaRange {
        if (Long.compareUnsigned(start, last) > 0) {
            throw new IllegalArgumentException(String.format("range [0x%x, 0x%x] is inverted", start, last));
        }
    }

    public boolean intersects(final long otherStart, final long otherLast) {
        return Long.compareUnsigned(start, otherLast) <= 0 && Long.compareUnsigned(otherStart, last) <= 0;
    }

    public boolean contains(final long otherStart, final long otherLast) {
        return Long.compareUnsigned(start, otherStart) <= 0 && Long.compareUnsigned(otherLast, last) <= 0;
    }

    /** Bytes in the range; 0 stands for 2^64 (the whole space). */
    public long length() {
        return last - start + 1;
    }

    @Override
    public String toString() {
        return String.format("[0x%x, 0x%x]", start, last);
    }
}
