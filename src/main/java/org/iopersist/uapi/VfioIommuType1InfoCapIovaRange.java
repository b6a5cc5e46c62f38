package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U16;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_iommu_type1_info_cap_iova_range} ({@code VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE}, version
 * 1): the IOVA ranges a mapping may use, {@code nr_iovas} {@link VfioIovaRange}s from offset 16. Its
 * {@code struct vfio_info_cap_header} is inlined as {@code id}, {@code version}, {@code next}.
 *
 * <pre>
 *   0  u16      id
 *   2  u16      version
 *   4  u32      next
 *   8  u32      nr_iovas
 *  12  u32      reserved
 * </pre>
 */
public final class VfioIommuType1InfoCapIovaRange {
    public static final long ID_OFFSET = 0;
    public static final long VERSION_OFFSET = 2;
    public static final long NEXT_OFFSET = 4;
    public static final long NR_IOVAS_OFFSET = 8;
    public static final long RESERVED_OFFSET = 12;
    /** {@code sizeof(struct vfio_iommu_type1_info_cap_iova_range)}. */
    public static final long SIZE = 16;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U16.withName("id"), U16.withName("version"), U32.withName("next"), U32.withName("nr_iovas"),
            U32.withName("reserved")).withName("vfio_iommu_type1_info_cap_iova_range");

    private VfioIommuType1InfoCapIovaRange() {
    }

    /** {@code id}: {@code VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE}. */
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

    /** {@code nr_iovas}: ranges that follow. */
    public static int nrIovas(final MemorySegment s) {
        return CType.u32(s, NR_IOVAS_OFFSET);
    }

    /** Sets {@code nr_iovas}. */
    public static void nrIovas(final MemorySegment s, final int v) {
        CType.u32(s, NR_IOVAS_OFFSET, v);
    }
}
