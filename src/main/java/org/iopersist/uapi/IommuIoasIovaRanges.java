package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_ioas_iova_ranges}, the argument of {@code IOMMU_IOAS_IOVA_RANGES}: the IOAS's
 * usable ranges into a user array of {@link IommuIovaRange}, and its IOVA alignment.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      ioas_id
 *   8  u32      num_iovas
 *  12  u32      __reserved
 *  16  u64      allowed_iovas
 *  24  u64      out_iova_alignment
 * </pre>
 */
public final class IommuIoasIovaRanges {
    public static final long SIZE_OFFSET = 0;
    public static final long IOAS_ID_OFFSET = 4;
    public static final long NUM_IOVAS_OFFSET = 8;
    public static final long RESERVED_OFFSET = 12;
    public static final long ALLOWED_IOVAS_OFFSET = 16;
    public static final long OUT_IOVA_ALIGNMENT_OFFSET = 24;
    /** {@code sizeof(struct iommu_ioas_iova_ranges)}. */
    public static final long SIZE = 32;
    /**
     * {@code offsetofend(struct iommu_ioas_iova_ranges, out_iova_alignment)}:
     * the smallest size IOMMU_IOAS_IOVA_RANGES accepts.
     */
    public static final long MIN_SIZE = OUT_IOVA_ALIGNMENT_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U32.withName("num_iovas"), U32.withName("__reserved"),
            ALIGNED_U64.withName("allowed_iovas"),
            ALIGNED_U64.withName("out_iova_alignment")).withName("iommu_ioas_iova_ranges");

    private IommuIoasIovaRanges() {
    }

    /** {@code ioas_id}: the IOAS to read. */
    public static int ioasId(final MemorySegment s) {
        return CType.u32(s, IOAS_ID_OFFSET);
    }

    /** Sets {@code ioas_id}. */
    public static void ioasId(final MemorySegment s, final int v) {
        CType.u32(s, IOAS_ID_OFFSET, v);
    }

    /** {@code num_iovas}: in: room in the array; out: the number of ranges. */
    public static int numIovas(final MemorySegment s) {
        return CType.u32(s, NUM_IOVAS_OFFSET);
    }

    /** Sets {@code num_iovas}. */
    public static void numIovas(final MemorySegment s, final int v) {
        CType.u32(s, NUM_IOVAS_OFFSET, v);
    }

    /** {@code __reserved}: must be 0. */
    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** {@code allowed_iovas}: user pointer to the array. */
    public static long allowedIovas(final MemorySegment s) {
        return CType.u64(s, ALLOWED_IOVAS_OFFSET);
    }

    /** Sets {@code allowed_iovas}. */
    public static void allowedIovas(final MemorySegment s, final long v) {
        CType.u64(s, ALLOWED_IOVAS_OFFSET, v);
    }

    /** {@code out_iova_alignment}: the minimum IOVA and length alignment (out). */
    public static long outIovaAlignment(final MemorySegment s) {
        return CType.u64(s, OUT_IOVA_ALIGNMENT_OFFSET);
    }

    /** Sets {@code out_iova_alignment}. */
    public static void outIovaAlignment(final MemorySegment s, final long v) {
        CType.u64(s, OUT_IOVA_ALIGNMENT_OFFSET, v);
    }
}
