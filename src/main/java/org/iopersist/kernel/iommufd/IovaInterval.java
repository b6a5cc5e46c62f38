package org.iopersist.kernel.iommufd;

/**
 * An IOVA interval {@code [start, last]}, as the {@code interval_tree_node} io_pagetable keeps its
 * reserved and allowed ranges in; {@code last} is inclusive, both are unsigned 64-bit, so
 * {@code [0, 0xffff_ffff_ffff_ffff]} is the whole space (style rule: 'last' inclusive, 'end'
 * exclusive, compare unsigned). Not the wire struct: that is {@code uapi.IommuIovaRange}.
 */
public record IovaInterval(long start, long last) {
    public static final long ULONG_MAX = -1L;

    public IovaInterval {
        if (Long.compareUnsigned(start, last) > 0) {
            throw new IllegalArgumentException(String.format("interval [0x%x, 0x%x] is inverted", start, last));
        }
    }

    @Override
    public String toString() {
        return String.format("[0x%x, 0x%x]", start, last);
    }
}
