package org.iopersist.kernel.iommu;

import java.util.List;

/**
 * What a driver implements for one paging domain (Linux's {@code iommu_domain_ops} plus the
 * domain's geometry). {@code map} and {@code unmap} complete their own invalidation before they
 * return: when {@code unmap} returns, no device can reach the old translation, and the table
 * pages it emptied are back in the allocator.
 */
public interface DomainOps {
    /** Last IOVA the domain can translate. */
    long apertureLast();

    /** First IOVA the domain can translate (geometry.aperture_start). */
    default long apertureStart() {
        return 0;
    }

    /** Bit n set: the domain can map 2^n-byte leaves. */
    long pgsizeBitmap();

    /** The regions no mapping may cover. */
    List<ReservedRegion> reservedRegions();

    /**
     * Maps {@code [iova, iova + size)} to {@code [phys, phys + size)} with {@code prot}
     * ({@link IommuDomain#READ} | {@link IommuDomain#WRITE}), with the largest leaves alignment
     * allows. EINVAL on misalignment, EFAULT beyond the aperture, EADDRINUSE over a present entry
     * (nothing of the call stays mapped then), ENOMEM without table pages.
     */
    void map(long iova, long phys, long size, int prot);

    /**
     * Unmaps what is mapped in {@code [iova, iova + size)} and returns the bytes it removed. A leaf
     * that starts before {@code iova} is EINVAL; a leaf that starts inside but ends after the range
     * goes whole, so the count can exceed {@code size}.
     */
    long unmap(long iova, long size);

    /** The physical address {@code iova} translates to, or -1. */
    long iovaToPhys(long iova);

    /** One leaf of a domain's tables: {@code size} bytes at {@code iova} to {@code phys}, with {@code prot}. */
    @FunctionalInterface
    interface LeafVisitor {
        void leaf(long iova, long phys, long size, int prot);
    }

    /**
     * Every leaf, in IOVA order, as the hardware would read it (acquire loads). For the check of
     * adopted tables after a live update; concurrent maps may or may not be seen.
     */
    void forEachLeaf(LeafVisitor visitor);

    /**
     * The driver's own check of a domain's table structure, for a scrub of adopted tables: null, or
     * what is wrong (a table page reached twice or outside what the domain owns). Drivers whose
     * adoption already read every table have nothing to add.
     */
    default String checkTables() {
        return null;
    }

    /** domain->dirty_ops: the domain's dirty tracking, or null if it was not allocated with it. */
    default DirtyOps dirtyOps() {
        return null;
    }

    /**
     * What a domain allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING offers (Linux's
     * {@code iommu_dirty_ops}): switch tracking, and read (and clear) the dirty bits of its IOPTEs.
     */
    interface DirtyOps {
        /** set_dirty_tracking. */
        void setDirtyTracking(boolean enable);

        /**
         * read_and_clear_dirty over {@code [iova, iova + size)}: each dirty IOPTE's range goes to
         * {@code recorder} (null: only clear), cleared unless {@code noClear}. EINVAL if tracking is
         * off and a recorder asks.
         */
        void readAndClearDirty(long iova, long size, boolean noClear, DirtyRecorder recorder);
    }

    /** iommu_dirty_bitmap_record: {@code [iova, iova + length)} is dirty. */
    @FunctionalInterface
    interface DirtyRecorder {
        void record(long iova, long length);
    }

    /** What identifies this domain in the driver's handover (VT-d: its pgd), or -1. */
    default long handoverKey() {
        return -1;
    }

    /** Frees the page tables; the domain must be attached nowhere. */
    void free();
}
