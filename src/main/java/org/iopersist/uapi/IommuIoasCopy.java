package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_ioas_copy}, the argument of {@code IOMMU_IOAS_COPY}: maps what one IOAS maps at
 * {@code src_iova} into another, sharing the pinned pages.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      flags
 *   8  u32      dst_ioas_id
 *  12  u32      src_ioas_id
 *  16  u64      length
 *  24  u64      dst_iova
 *  32  u64      src_iova
 * </pre>
 */
public final class IommuIoasCopy {
    public static final long SIZE_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long DST_IOAS_ID_OFFSET = 8;
    public static final long SRC_IOAS_ID_OFFSET = 12;
    public static final long LENGTH_OFFSET = 16;
    public static final long DST_IOVA_OFFSET = 24;
    public static final long SRC_IOVA_OFFSET = 32;
    /** {@code sizeof(struct iommu_ioas_copy)}. */
    public static final long SIZE = 40;
    /** {@code offsetofend(struct iommu_ioas_copy, src_iova)}: the smallest size IOMMU_IOAS_COPY accepts. */
    public static final long MIN_SIZE = SRC_IOVA_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dst_ioas_id"), U32.withName("src_ioas_id"),
            ALIGNED_U64.withName("length"), ALIGNED_U64.withName("dst_iova"),
            ALIGNED_U64.withName("src_iova")).withName("iommu_ioas_copy");

    private IommuIoasCopy() {
    }

    /** {@code flags}: {@code IOMMU_IOAS_MAP_*} flags. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code dst_ioas_id}: the IOAS to map into. */
    public static int dstIoasId(final MemorySegment s) {
        return CType.u32(s, DST_IOAS_ID_OFFSET);
    }

    /** Sets {@code dst_ioas_id}. */
    public static void dstIoasId(final MemorySegment s, final int v) {
        CType.u32(s, DST_IOAS_ID_OFFSET, v);
    }

    /** {@code src_ioas_id}: the IOAS to copy from. */
    public static int srcIoasId(final MemorySegment s) {
        return CType.u32(s, SRC_IOAS_ID_OFFSET);
    }

    /** Sets {@code src_ioas_id}. */
    public static void srcIoasId(final MemorySegment s, final int v) {
        CType.u32(s, SRC_IOAS_ID_OFFSET, v);
    }

    /** {@code length}: bytes to copy. */
    public static long length(final MemorySegment s) {
        return CType.u64(s, LENGTH_OFFSET);
    }

    /** Sets {@code length}. */
    public static void length(final MemorySegment s, final long v) {
        CType.u64(s, LENGTH_OFFSET, v);
    }

    /** {@code dst_iova}: in with {@code FIXED_IOVA}; out: where the copy was placed. */
    public static long dstIova(final MemorySegment s) {
        return CType.u64(s, DST_IOVA_OFFSET);
    }

    /** Sets {@code dst_iova}. */
    public static void dstIova(final MemorySegment s, final long v) {
        CType.u64(s, DST_IOVA_OFFSET, v);
    }

    /** {@code src_iova}: start of the source range. */
    public static long srcIova(final MemorySegment s) {
        return CType.u64(s, SRC_IOVA_OFFSET);
    }

    /** Sets {@code src_iova}. */
    public static void srcIova(final MemorySegment s, final long v) {
        CType.u64(s, SRC_IOVA_OFFSET, v);
    }
}
