package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U16;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_iommu_type1_info_dma_avail} ({@code VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL}, version 1): how
 * many more mappings may be made. Its {@code struct vfio_info_cap_header} is inlined.
 *
 * <pre>
 *   0  u16      id
 *   2  u16      version
 *   4  u32      next
 *   8  u32      avail
 * </pre>
 */
public final class VfioIommuType1InfoDmaAvail {
    public static final long ID_OFFSET = 0;
    public static final long VERSION_OFFSET = 2;
    public static final long NEXT_OFFSET = 4;
    public static final long AVAIL_OFFSET = 8;
    /** {@code sizeof(struct vfio_iommu_type1_info_dma_avail)}. */
    public static final long SIZE = 12;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U16.withName("id"), U16.withName("version"), U32.withName("next"), U32.withName("avail")).withName("vfio_iommu_type1_info_dma_avail");

    private VfioIommuType1InfoDmaAvail() {
    }

    /** {@code id}: {@code VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL}. */
    public static int id(final MemorySegment s) {
        return CType.u16(s, ID_OFFSET);
    }

    /** Sets {@code id}. */
    public static void id(final MemorySegment s, final int v) {
        CType.u16(s, ID_OFFSET, v);
    }

    /** {@code version}: 1. */
    public static int version(final MemorySegment s) {
        return CType.u16(s, VERSION_OFFSET);
    }

    /** Sets {@code version}. */
    public static void version(final MemorySegment s, final int v) {
        CType.u16(s, VERSION_OFFSET, v);
    }

    /** {@code next}: the next capability, or 0. */
    public static int next(final MemorySegment s) {
        return CType.u32(s, NEXT_OFFSET);
    }

    /** Sets {@code next}. */
    public static void next(final MemorySegment s, final int v) {
        CType.u32(s, NEXT_OFFSET, v);
    }

    /** {@code avail}: mappings allowed; iommufd answers U32_MAX. */
    public static int avail(final MemorySegment s) {
        return CType.u32(s, AVAIL_OFFSET);
    }

    /** Sets {@code avail}. */
    public static void avail(final MemorySegment s, final int v) {
        CType.u32(s, AVAIL_OFFSET, v);
    }
}
