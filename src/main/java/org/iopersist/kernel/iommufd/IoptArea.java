package org.iopersist.kernel.iommufd;

/**
 * One mapped range of an IOAS (Linux's {@code struct iopt_area}): its IOVA interval, the pages
 * behind it and where in them it starts. Areas never overlap; the {@link IoPagetable} keeps them by
 * start.
 *
 * @param start     first IOVA
 * @param last      last IOVA (inclusive)
 * @param prot      IOMMU_READ | IOMMU_WRITE
 * @param pages     the shared page range (this area holds one reference, dropped when it is removed)
 * @param startByte byte index into {@code pages} of the area's first byte
 */
public record IoptArea(long start, long last, int prot, IoptPages pages, long startByte) {
    public long length() {
        return last - start + 1;
    }

    /**
     * iopt_area_fill_domain: maps exactly the area's bytes into {@code d}, one call per physically
     * contiguous run, or per page with {@code small} (batch_iommu_map_small, while the IOAS has large
     * pages disabled, so a later split never cuts a leaf). A domain whose pages are smaller than
     * PAGE_SIZE (the selftest's mock) sees the area's own start and page offset.
     */
    void fill(final IoasDomain d, final boolean small) {
        final long firstIndex = startByte >>> 12;
        final long lastIndex = (startByte + length() - 1) >>> 12;
        final long endByte = startByte + length();
        for (long i = firstIndex; i <= lastIndex; ) {
            final long run = small ? 1 : pages.contiguousPages(i, lastIndex - i + 1);
            final long from = Math.max(i << 12, startByte);
            final long to = Math.min((i + run) << 12, endByte);
            d.map(start + (from - startByte), pages.frame(i) + (from - (i << 12)), to - from, prot);
            i += run;
        }
    }

    /** iopt_area_unfill_domain: unmaps the area's IOVA range from {@code d}; never fails. */
    void unfill(final IoasDomain d) {
        d.unmap(start, length());
    }

    /** The frame behind the page at {@code pageIova}, which this area must hold; pages pinned by the caller. */
    long frameOf(final long pageIova) {
        final long base = start - (startByte & (IoPagetable.PAGE_SIZE - 1));
        return pages.frame((startByte >>> 12) + ((pageIova - base) >>> 12));
    }

    /** Whether the page at {@code pageIova} lies in this area. */
    boolean holdsPage(final long pageIova) {
        final long base = start - (startByte & (IoPagetable.PAGE_SIZE - 1));
        return Long.compareUnsigned(pageIova, base) >= 0 && Long.compareUnsigned(pageIova, last) <= 0;
    }
}
