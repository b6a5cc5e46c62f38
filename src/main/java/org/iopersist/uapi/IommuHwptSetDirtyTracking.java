package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_hwpt_set_dirty_tracking}, the argument of {@code IOMMU_HWPT_SET_DIRTY_TRACKING}: turns
 * the dirty tracking of a HWPT allocated with {@code IOMMU_HWPT_ALLOC_DIRTY_TRACKING} on or off.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      flags
 *   8  u32      hwpt_id
 *  12  u32      __reserved
 * </pre>
 */
public final class IommuHwptSetDirtyTracking {
    public static final long SIZE_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long HWPT_ID_OFFSET = 8;
    public static final long RESERVED_OFFSET = 12;
    /** {@code sizeof(struct iommu_hwpt_set_dirty_tracking)}. */
    public static final long SIZE = 16;
    /** {@code offsetofend(struct iommu_hwpt_set_dirty_tracking, __reserved)}: the smallest size IOMMU_HWPT_SET_DIRTY_TRACKING accepts. */
    public static final long MIN_SIZE = RESERVED_OFFSET + 4;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("hwpt_id"), U32.withName("__reserved")).withName("iommu_hwpt_set_dirty_tracking");

    private IommuHwptSetDirtyTracking() {
    }

    /** {@code flags}: {@code IOMMU_HWPT_DIRTY_TRACKING_ENABLE} or 0. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code hwpt_id}: the HWPT_PAGING. */
    public static int hwptId(final MemorySegment s) {
        return CType.u32(s, HWPT_ID_OFFSET);
    }

    /** Sets {@code hwpt_id}. */
    public static void hwptId(final MemorySegment s, final int v) {
        CType.u32(s, HWPT_ID_OFFSET, v);
    }

    /** {@code __reserved}:  */
    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** Sets {@code __reserved}. */
    public static void reserved(final MemorySegment s, final int v) {
        CType.u32(s, RESERVED_OFFSET, v);
    }
}
