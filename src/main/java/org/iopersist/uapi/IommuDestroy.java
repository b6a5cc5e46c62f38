package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_destroy}, the argument of {@code IOMMU_DESTROY}: destroys any object by id.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      id
 * </pre>
 */
public final class IommuDestroy {
    public static final long SIZE_OFFSET = 0;
    public static final long ID_OFFSET = 4;
    /** {@code sizeof(struct iommu_destroy)}. */
    public static final long SIZE = 8;
    /** {@code offsetofend(struct iommu_destroy, id)}: the smallest size IOMMU_DESTROY accepts. */
    public static final long MIN_SIZE = ID_OFFSET + 4;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("id")).withName("iommu_destroy");

    private IommuDestroy() {
    }

    /** {@code id}: the object to destroy. */
    public static int id(final MemorySegment s) {
        return CType.u32(s, ID_OFFSET);
    }

    /** Sets {@code id}. */
    public static void id(final MemorySegment s, final int v) {
        CType.u32(s, ID_OFFSET, v);
    }
}
