package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_ioas_alloc}, the argument of {@code IOMMU_IOAS_ALLOC}.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      flags
 *   8  u32      out_ioas_id
 * </pre>
 */
public final class IommuIoasAlloc {
    public static final long SIZE_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long OUT_IOAS_ID_OFFSET = 8;
    /** {@code sizeof(struct iommu_ioas_alloc)}. */
    public static final long SIZE = 12;
    /** {@code offsetofend(struct iommu_ioas_alloc, out_ioas_id)}: the smallest size IOMMU_IOAS_ALLOC accepts. */
    public static final long MIN_SIZE = OUT_IOAS_ID_OFFSET + 4;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("out_ioas_id")).withName("iommu_ioas_alloc");

    private IommuIoasAlloc() {
    }

    /** {@code flags}: must be 0. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code out_ioas_id}: the new IOAS's id (out). */
    public static int outIoasId(final MemorySegment s) {
        return CType.u32(s, OUT_IOAS_ID_OFFSET);
    }

    /** Sets {@code out_ioas_id}. */
    public static void outIoasId(final MemorySegment s, final int v) {
        CType.u32(s, OUT_IOAS_ID_OFFSET, v);
    }
}
