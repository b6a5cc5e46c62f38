package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_ioas_unmap}, the argument of {@code IOMMU_IOAS_UNMAP}; {@code iova = 0,
 * length = U64_MAX} unmaps everything.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      ioas_id
 *   8  u64      iova
 *  16  u64      length
 * </pre>
 */
public final class IommuIoasUnmap {
    public static final long SIZE_OFFSET = 0;
    public static final long IOAS_ID_OFFSET = 4;
    public static final long IOVA_OFFSET = 8;
    public static final long LENGTH_OFFSET = 16;
    /** {@code sizeof(struct iommu_ioas_unmap)}. */
    public static final long SIZE = 24;
    /** {@code offsetofend(struct iommu_ioas_unmap, length)}: the smallest size IOMMU_IOAS_UNMAP accepts. */
    public static final long MIN_SIZE = LENGTH_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), ALIGNED_U64.withName("iova"),
            ALIGNED_U64.withName("length")).withName("iommu_ioas_unmap");

    private IommuIoasUnmap() {
    }

    /** {@code ioas_id}: the IOAS to unmap from. */
    public static int ioasId(final MemorySegment s) {
        return CType.u32(s, IOAS_ID_OFFSET);
    }

    /** Sets {@code ioas_id}. */
    public static void ioasId(final MemorySegment s, final int v) {
        CType.u32(s, IOAS_ID_OFFSET, v);
    }

    /** {@code iova}: start of the range. */
    public static long iova(final MemorySegment s) {
        return CType.u64(s, IOVA_OFFSET);
    }

    /** Sets {@code iova}. */
    public static void iova(final MemorySegment s, final long v) {
        CType.u64(s, IOVA_OFFSET, v);
    }

    /** {@code length}: in: bytes to unmap; out: bytes unmapped. */
    public static long length(final MemorySegment s) {
        return CType.u64(s, LENGTH_OFFSET);
    }

    /** Sets {@code length}. */
    public static void length(final MemorySegment s, final long v) {
        CType.u64(s, LENGTH_OFFSET, v);
    }
}
