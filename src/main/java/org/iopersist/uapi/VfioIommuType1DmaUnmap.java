package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_iommu_type1_dma_unmap}, the argument of {@code VFIO_IOMMU_UNMAP_DMA}; with
 * {@code VFIO_DMA_UNMAP_FLAG_ALL} (and iova = size = 0) it unmaps everything.
 *
 * <pre>
 *   0  u32      argsz
 *   4  u32      flags
 *   8  u64      iova
 *  16  u64      size
 * </pre>
 *
 * A flexible {@code __u8 data[]} follows (the dirty bitmap of {@code VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP},
 * which iommufd refuses).
 */
public final class VfioIommuType1DmaUnmap {
    public static final long ARGSZ_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long IOVA_OFFSET = 8;
    public static final long SIZE_OFFSET = 16;
    /** {@code sizeof(struct vfio_iommu_type1_dma_unmap)}. */
    public static final long SIZE = 24;
    /** {@code offsetofend(struct vfio_iommu_type1_dma_unmap, size)}: VFIO's {@code minsz}, the bytes the kernel copies first. */
    public static final long MIN_SIZE = SIZE_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), ALIGNED_U64.withName("iova"), ALIGNED_U64.withName("size")).withName("vfio_iommu_type1_dma_unmap");

    private VfioIommuType1DmaUnmap() {
    }

    /** {@code iova}: the IOVA. */
    public static long iova(final MemorySegment s) {
        return CType.u64(s, IOVA_OFFSET);
    }

    /** Sets {@code iova}. */
    public static void iova(final MemorySegment s, final long v) {
        CType.u64(s, IOVA_OFFSET, v);
    }

    /** {@code size}: in: bytes to unmap; out: bytes unmapped. */
    public static long size(final MemorySegment s) {
        return CType.u64(s, SIZE_OFFSET);
    }

    /** Sets {@code size}. */
    public static void size(final MemorySegment s, final long v) {
        CType.u64(s, SIZE_OFFSET, v);
    }
}
