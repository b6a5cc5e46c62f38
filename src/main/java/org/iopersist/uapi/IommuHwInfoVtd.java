package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_hw_info_vtd}: what {@code IOMMU_GET_HW_INFO} answers for a device behind a VT-d
 * unit ({@code IOMMU_HW_INFO_TYPE_INTEL_VTD}): the unit's CAP and ECAP registers.
 *
 * <pre>
 *   0  u32      flags
 *   4  u32      __reserved
 *   8  u64      cap_reg
 *  16  u64      ecap_reg
 * </pre>
 */
public final class IommuHwInfoVtd {
    public static final long FLAGS_OFFSET = 0;
    public static final long RESERVED_OFFSET = 4;
    public static final long CAP_REG_OFFSET = 8;
    public static final long ECAP_REG_OFFSET = 16;
    /** {@code sizeof(struct iommu_hw_info_vtd)}. */
    public static final long SIZE = 24;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("flags"), U32.withName("__reserved"), ALIGNED_U64.withName("cap_reg"),
            ALIGNED_U64.withName("ecap_reg")).withName("iommu_hw_info_vtd");

    private IommuHwInfoVtd() {
    }

    /** {@code flags}: {@code IOMMU_HW_INFO_VTD_*} errata flags. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code __reserved}: 0. */
    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** {@code cap_reg}: the capability register (VT-d 11.4.2). */
    public static long capReg(final MemorySegment s) {
        return CType.u64(s, CAP_REG_OFFSET);
    }

    /** Sets {@code cap_reg}. */
    public static void capReg(final MemorySegment s, final long v) {
        CType.u64(s, CAP_REG_OFFSET, v);
    }

    /** {@code ecap_reg}: the extended capability register (VT-d 11.4.3). */
    public static long ecapReg(final MemorySegment s) {
        return CType.u64(s, ECAP_REG_OFFSET);
    }

    /** Sets {@code ecap_reg}. */
    public static void ecapReg(final MemorySegment s, final long v) {
        CType.u64(s, ECAP_REG_OFFSET, v);
    }
}
