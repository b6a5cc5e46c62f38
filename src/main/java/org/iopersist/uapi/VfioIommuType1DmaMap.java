package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_iommu_type1_dma_map}, the argument of {@code VFIO_IOMMU_MAP_DMA}: maps user memory
 * at a fixed IOVA of the compatibility IOAS.
 *
 * <pre>
 *   0  u32      argsz
 *   4  u32      flags
 *   8  u64      vaddr
 *  16  u64      iova
 *  24  u64      size
 * </pre>
 */
public final class VfioIommuType1DmaMap {
    public static final long ARGSZ_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long VADDR_OFFSET = 8;
    public static final long IOVA_OFFSET = 16;
    public static final long SIZE_OFFSET = 24;
    /** {@code sizeof(struct vfio_iommu_type1_dma_map)}. */
    public static final long SIZE = 32;
    /** {@code offsetofend(struct vfio_iommu_type1_dma_map, size)}: VFIO's {@code minsz}, the bytes the kernel copies first. */
    public static final long MIN_SIZE = SIZE_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), ALIGNED_U64.withName("vaddr"), ALIGNED_U64.withName("iova"),
            ALIGNED_U64.withName("size")).withName("vfio_iommu_type1_dma_map");

    private VfioIommuType1DmaMap() {
    }

    /** {@code vaddr}: the process's virtual address. */
    public static long vaddr(final MemorySegment s) {
        return CType.u64(s, VADDR_OFFSET);
    }

    /** Sets {@code vaddr}. */
    public static void vaddr(final MemorySegment s, final long v) {
        CType.u64(s, VADDR_OFFSET, v);
    }

    /** {@code iova}: the IOVA. */
    public static long iova(final MemorySegment s) {
        return CType.u64(s, IOVA_OFFSET);
    }

    /** Sets {@code iova}. */
    public static void iova(final MemorySegment s, final long v) {
        CType.u64(s, IOVA_OFFSET, v);
    }

    /** {@code size}: bytes. */
    public static long size(final MemorySegment s) {
        return CType.u64(s, SIZE_OFFSET);
    }

    /** Sets {@code size}. */
    public static void size(final MemorySegment s, final long v) {
        CType.u64(s, SIZE_OFFSET, v);
    }
}
