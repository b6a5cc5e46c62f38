package org.iopersist.hw.vtd;

/**
 * What the IOTLB and the paging-structure caches share: entries tagged by domain id (key bits
 * 63:48), each covering a span of IOVA, and the three ways an IOTLB invalidation descriptor removes
 * them (global, one domain, one domain's pages).
 */
abstract sealed class DomainTaggedCache permits Iotlb, PagingStructureCache {
    final TagCache cache;

    DomainTaggedCache(final int capacity) {
        this.cache = new TagCache(capacity);
    }

    static int didOf(final long key) {
        return (int) (key >>> 48);
    }

    /** First IOVA of the span an entry with this key covers. */
    abstract long spanStart(long key);

    /** Bytes of IOVA an entry with this key covers. */
    abstract long spanSize(long key);

    int invalidateGlobal() {
        return cache.purge((k, a, b) -> true);
    }

    int invalidateDomain(final int did) {
        return cache.purge((k, a, b) -> didOf(k) == did);
    }

    /** Every entry of {@code did} whose span overlaps {@code [addr, addr + 4K << am)} (addr aligned down). */
    int invalidatePages(final int did, final long addr, final int am) {
        final long first = addr & ~((1L << (12 + am)) - 1);
        final long last = first + (1L << (12 + am)) - 1;
        return cache.purge((k, a, b) -> {
            if (didOf(k) != did) {
                return false;
            }
            final long start = spanStart(k);
            final long end = start + spanSize(k) - 1;
            return Long.compareUnsigned(start, last) <= 0 && Long.compareUnsigned(first, end) <= 0;
        });
    }

    public int size() {
        return cache.size();
    }

    public int capacity() {
        return cache.capacity();
    }
}
