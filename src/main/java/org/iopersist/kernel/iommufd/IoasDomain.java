package org.iopersist.kernel.iommufd;

/**
 * What an IOAS needs of a domain attached to it: mirror its areas. {@code prot} is IOMMU_READ (1) |
 * IOMMU_WRITE (2). Implemented over the iommu core's domains by the HWPT code.
 */
interface IoasDomain {
    int IOMMU_READ = 1;
    int IOMMU_WRITE = 2;

    /** Maps {@code length} bytes at {@code iova} to {@code phys}, physically contiguous. */
    void map(long iova, long phys, long length, int prot);

    /** Unmaps whatever is mapped in {@code [iova, iova + length)}; holes are fine. Never fails. */
    void unmap(long iova, long length);

    /** Bit n set: the domain maps 2^n-byte pages (pgsize_bitmap). */
    long pgsizeBitmap();

    /** Smallest page size: the IOAS's alignment must reach it. */
    default long minPageSize() {
        return Long.lowestOneBit(pgsizeBitmap());
    }

    /** IOVAs the domain cannot translate, reserved in the IOAS while it is attached. */
    java.util.List<IovaInterval> reservedRanges();
}
