package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_iommu_type1_info}, the argument of {@code VFIO_IOMMU_GET_INFO}: the page sizes the
 * container maps with and, past the struct, a chain of capabilities ({@link VfioInfoCapHeader}).
 *
 * <pre>
 *   0  u32      argsz
 *   4  u32      flags
 *   8  u64      iova_pgsizes
 *  16  u32      cap_offset
 *  20  u32      pad
 * </pre>
 *
 * Older headers end the struct at {@code cap_offset}; the C size (24) is the same.
 */
public final class VfioIommuType1Info {
    public static final long ARGSZ_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long IOVA_PGSIZES_OFFSET = 8;
    public static final long CAP_OFFSET_OFFSET = 16;
    public static final long PAD_OFFSET = 20;
    /** {@code sizeof(struct vfio_iommu_type1_info)}. */
    public static final long SIZE = 24;
    /** {@code offsetofend(struct vfio_iommu_type1_info, iova_pgsizes)}: VFIO's {@code minsz}, the bytes the kernel copies first. */
    public static final long MIN_SIZE = IOVA_PGSIZES_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), ALIGNED_U64.withName("iova_pgsizes"),
            U32.withName("cap_offset"), U32.withName("pad")).withName("vfio_iommu_type1_info");

    private VfioIommuType1Info() {
    }

    /** {@code iova_pgsizes}: bitmap of the page sizes mappings are made of. */
    public static long iovaPgsizes(final MemorySegment s) {
        return CType.u64(s, IOVA_PGSIZES_OFFSET);
    }

    /** Sets {@code iova_pgsizes}. */
    public static void iovaPgsizes(final MemorySegment s, final long v) {
        CType.u64(s, IOVA_PGSIZES_OFFSET, v);
    }

    /** {@code cap_offset}: offset of the first capability, 0 if the buffer was too small for all. */
    public static int capOffset(final MemorySegment s) {
        return CType.u32(s, CAP_OFFSET_OFFSET);
    }

    /** Sets {@code cap_offset}. */
    public static void capOffset(final MemorySegment s, final int v) {
        CType.u32(s, CAP_OFFSET_OFFSET, v);
    }
}
