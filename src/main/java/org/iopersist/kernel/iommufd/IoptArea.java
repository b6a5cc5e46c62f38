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

    /** iopt_area_fill_domain: maps the whole area into {@code d}, one call per physically contiguous run. */
    void fill(final IoasDomain d) {
        final long firstIndex = startByte >>> 12;
        final long lastIndex = (startByte + length() - 1) >>> 12;
        final long iovaBase = start - (startByte & (IoPagetable.PAGE_SIZE - 1));
        for (long i = firstIndex; i <= lastIndex; ) {
            final long run = pages.contiguousPages(i, lastIndex - i + 1);
            d.map(iovaBase + ((i - firstIndex) << 12), pages.frame(i), run << 12, prot);
            i += run;
        }
    }

    /** iopt_area_unfill_domain: unmaps every page the area spans from {@code d}; never fails. */
    void unfill(final IoasDomain d) {
        final long iovaBase = start - (startByte & (IoPagetable.PAGE_SIZE - 1));
        final long pagesSpanned = ((startByte + length() - 1) >>> 12) - (startByte >>> 12) + 1;
        d.unmap(iovaBase, pagesSpanned << 12);
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
