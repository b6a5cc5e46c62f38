package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;
import static org.iopersist.uapi.CType.U8;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_hw_info}, the argument of {@code IOMMU_GET_HW_INFO}: the driver's hardware
 * description (for VT-d an {@link IommuHwInfoVtd}) into a user buffer.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      flags
 *   8  u32      dev_id
 *  12  u32      data_len
 *  16  u64      data_uptr
 *  24  u32      out_data_type
 *  28  u8       out_max_pasid_log2
 *  29  u8[3]    __reserved
 *  32  u64      out_capabilities
 * </pre>
 *
 * Newer kernels make {@code out_data_type} a union with {@code in_data_type}, read only with
 * {@code IOMMU_HW_INFO_FLAG_INPUT_TYPE}; this model accepts no flags, so it is output only here.
 */
public final class IommuHwInfo {
    public static final long SIZE_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long DEV_ID_OFFSET = 8;
    public static final long DATA_LEN_OFFSET = 12;
    public static final long DATA_UPTR_OFFSET = 16;
    public static final long OUT_DATA_TYPE_OFFSET = 24;
    public static final long OUT_MAX_PASID_LOG2_OFFSET = 28;
    public static final long RESERVED_OFFSET = 29;
    public static final long OUT_CAPABILITIES_OFFSET = 32;
    /** {@code sizeof(struct iommu_hw_info)}. */
    public static final long SIZE = 40;
    /** {@code offsetofend(struct iommu_hw_info, __reserved)}: the smallest size IOMMU_GET_HW_INFO accepts. */
    public static final long MIN_SIZE = RESERVED_OFFSET + 3;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dev_id"), U32.withName("data_len"),
            ALIGNED_U64.withName("data_uptr"), U32.withName("out_data_type"), U8.withName("out_max_pasid_log2"),
            MemoryLayout.sequenceLayout(3, U8).withName("__reserved"),
            ALIGNED_U64.withName("out_capabilities")).withName("iommu_hw_info");

    private IommuHwInfo() {
    }

    /** {@code flags}: must be 0 here (no {@code IOMMU_HW_INFO_FLAG_INPUT_TYPE}). */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code dev_id}: the bound device. */
    public static int devId(final MemorySegment s) {
        return CType.u32(s, DEV_ID_OFFSET);
    }

    /** Sets {@code dev_id}. */
    public static void devId(final MemorySegment s, final int v) {
        CType.u32(s, DEV_ID_OFFSET, v);
    }

    /** {@code data_len}: in: the buffer's length; out: the length of the kernel's data. */
    public static int dataLen(final MemorySegment s) {
        return CType.u32(s, DATA_LEN_OFFSET);
    }

    /** Sets {@code data_len}. */
    public static void dataLen(final MemorySegment s, final int v) {
        CType.u32(s, DATA_LEN_OFFSET, v);
    }

    /** {@code data_uptr}: user pointer to the buffer. */
    public static long dataUptr(final MemorySegment s) {
        return CType.u64(s, DATA_UPTR_OFFSET);
    }

    /** Sets {@code data_uptr}. */
    public static void dataUptr(final MemorySegment s, final long v) {
        CType.u64(s, DATA_UPTR_OFFSET, v);
    }

    /** {@code out_data_type}: an {@code IOMMU_HW_INFO_TYPE_*} type (out). */
    public static int outDataType(final MemorySegment s) {
        return CType.u32(s, OUT_DATA_TYPE_OFFSET);
    }

    /** Sets {@code out_data_type}. */
    public static void outDataType(final MemorySegment s, final int v) {
        CType.u32(s, OUT_DATA_TYPE_OFFSET, v);
    }

    /** {@code out_max_pasid_log2}: PASID width, 0 without PASID support (out). */
    public static int outMaxPasidLog2(final MemorySegment s) {
        return CType.u8(s, OUT_MAX_PASID_LOG2_OFFSET);
    }


    /** {@code out_capabilities}: {@code IOMMU_HW_CAP_*} bits (out). */
    public static long outCapabilities(final MemorySegment s) {
        return CType.u64(s, OUT_CAPABILITIES_OFFSET);
    }

    /** Sets {@code out_capabilities}. */
    public static void outCapabilities(final MemorySegment s, final long v) {
        CType.u64(s, OUT_CAPABILITIES_OFFSET, v);
    }

    /** Whether all three {@code __reserved} bytes are zero, as the kernel requires. */
    public static boolean reservedIsZero(final MemorySegment s) {
        return CType.u16(s, RESERVED_OFFSET) == 0 && CType.u8(s, RESERVED_OFFSET + 2) == 0;
    }
}
