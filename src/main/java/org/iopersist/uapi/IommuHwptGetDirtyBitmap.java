package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_hwpt_get_dirty_bitmap}, the argument of {@code IOMMU_HWPT_GET_DIRTY_BITMAP}: sets a
 * bit in the user bitmap at {@code data} for every {@code page_size} of {@code [iova, iova + length)} the
 * device wrote, and clears the IOPTEs' dirty bits unless {@code IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR}.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      hwpt_id
 *   8  u32      flags
 *  12  u32      __reserved
 *  16  u64      iova
 *  24  u64      length
 *  32  u64      page_size
 *  40  u64      data
 * </pre>
 */
public final class IommuHwptGetDirtyBitmap {
    public static final long SIZE_OFFSET = 0;
    public static final long HWPT_ID_OFFSET = 4;
    public static final long FLAGS_OFFSET = 8;
    public static final long RESERVED_OFFSET = 12;
    public static final long IOVA_OFFSET = 16;
    public static final long LENGTH_OFFSET = 24;
    public static final long PAGE_SIZE_OFFSET = 32;
    public static final long DATA_OFFSET = 40;
    /** {@code sizeof(struct iommu_hwpt_get_dirty_bitmap)}. */
    public static final long SIZE = 48;
    /** {@code offsetofend(struct iommu_hwpt_get_dirty_bitmap, data)}: the smallest size IOMMU_HWPT_GET_DIRTY_BITMAP accepts. */
    public static final long MIN_SIZE = DATA_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("hwpt_id"), U32.withName("flags"), U32.withName("__reserved"),
            ALIGNED_U64.withName("iova"), ALIGNED_U64.withName("length"), ALIGNED_U64.withName("page_size"),
            ALIGNED_U64.withName("data")).withName("iommu_hwpt_get_dirty_bitmap");

    private IommuHwptGetDirtyBitmap() {
    }

    /** {@code hwpt_id}: the HWPT_PAGING. */
    public static int hwptId(final MemorySegment s) {
        return CType.u32(s, HWPT_ID_OFFSET);
    }

    /** Sets {@code hwpt_id}. */
    public static void hwptId(final MemorySegment s, final int v) {
        CType.u32(s, HWPT_ID_OFFSET, v);
    }

    /** {@code flags}: {@code IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR} or 0. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code __reserved}: must be 0. */
    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** Sets {@code __reserved}. */
    public static void reserved(final MemorySegment s, final int v) {
        CType.u32(s, RESERVED_OFFSET, v);
    }

    /** {@code iova}: first IOVA. */
    public static long iova(final MemorySegment s) {
        return CType.u64(s, IOVA_OFFSET);
    }

    /** Sets {@code iova}. */
    public static void iova(final MemorySegment s, final long v) {
        CType.u64(s, IOVA_OFFSET, v);
    }

    /** {@code length}: bytes, a multiple of page_size. */
    public static long length(final MemorySegment s) {
        return CType.u64(s, LENGTH_OFFSET);
    }

    /** Sets {@code length}. */
    public static void length(final MemorySegment s, final long v) {
        CType.u64(s, LENGTH_OFFSET, v);
    }

    /** {@code page_size}: what one bit stands for. */
    public static long pageSize(final MemorySegment s) {
        return CType.u64(s, PAGE_SIZE_OFFSET);
    }

    /** Sets {@code page_size}. */
    public static void pageSize(final MemorySegment s, final long v) {
        CType.u64(s, PAGE_SIZE_OFFSET, v);
    }

    /** {@code data}: the bitmap, in the caller's memory (any alignment). */
    public static long data(final MemorySegment s) {
        return CType.u64(s, DATA_OFFSET);
    }

    /** Sets {@code data}. */
    public static void data(final MemorySegment s, final long v) {
        CType.u64(s, DATA_OFFSET, v);
    }
}
