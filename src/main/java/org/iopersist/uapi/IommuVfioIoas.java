package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U16;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_vfio_ioas}, the argument of {@code IOMMU_VFIO_IOAS}: gets, sets or clears the
 * context's VFIO compatibility IOAS, the one the type1 ioctls on this fd work on.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      ioas_id
 *   8  u16      op
 *  10  u16      __reserved
 * </pre>
 */
public final class IommuVfioIoas {
    public static final long SIZE_OFFSET = 0;
    public static final long IOAS_ID_OFFSET = 4;
    public static final long OP_OFFSET = 8;
    public static final long RESERVED_OFFSET = 10;
    /** {@code sizeof(struct iommu_vfio_ioas)}. */
    public static final long SIZE = 12;
    /** {@code offsetofend(struct iommu_vfio_ioas, __reserved)}: the smallest size IOMMU_VFIO_IOAS accepts. */
    public static final long MIN_SIZE = RESERVED_OFFSET + 2;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U16.withName("op"), U16.withName("__reserved")).withName("iommu_vfio_ioas");

    private IommuVfioIoas() {
    }

    /** {@code ioas_id}: in for SET, out for GET. */
    public static int ioasId(final MemorySegment s) {
        return CType.u32(s, IOAS_ID_OFFSET);
    }

    /** Sets {@code ioas_id}. */
    public static void ioasId(final MemorySegment s, final int v) {
        CType.u32(s, IOAS_ID_OFFSET, v);
    }

    /** {@code op}: {@code IOMMU_VFIO_IOAS_GET}, {@code _SET} or {@code _CLEAR}. */
    public static int op(final MemorySegment s) {
        return CType.u16(s, OP_OFFSET);
    }

    /** Sets {@code op}. */
    public static void op(final MemorySegment s, final int v) {
        CType.u16(s, OP_OFFSET, v);
    }

    /** {@code __reserved}: must be 0. */
    public static int reserved(final MemorySegment s) {
        return CType.u16(s, RESERVED_OFFSET);
    }

    /** Sets {@code __reserved}. */
    public static void reserved(final MemorySegment s, final int v) {
        CType.u16(s, RESERVED_OFFSET, v);
    }
}
