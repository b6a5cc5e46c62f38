package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_hwpt_alloc}, the argument of {@code IOMMU_HWPT_ALLOC}: a HW page table for a
 * device over an IOAS (or, nested, over a parent HWPT).
 *
 * <pre>
 *   0  u32      size
 *   4  u32      flags
 *   8  u32      dev_id
 *  12  u32      pt_id
 *  16  u32      out_hwpt_id
 *  20  u32      __reserved
 *  24  u32      data_type
 *  28  u32      data_len
 *  32  u64      data_uptr
 *  40  u32      fault_id
 *  44  u32      __reserved2
 * </pre>
 */
public final class IommuHwptAlloc {
    public static final long SIZE_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long DEV_ID_OFFSET = 8;
    public static final long PT_ID_OFFSET = 12;
    public static final long OUT_HWPT_ID_OFFSET = 16;
    public static final long RESERVED_OFFSET = 20;
    public static final long DATA_TYPE_OFFSET = 24;
    public static final long DATA_LEN_OFFSET = 28;
    public static final long DATA_UPTR_OFFSET = 32;
    public static final long FAULT_ID_OFFSET = 40;
    public static final long RESERVED2_OFFSET = 44;
    /** {@code sizeof(struct iommu_hwpt_alloc)}. */
    public static final long SIZE = 48;
    /**
     * {@code offsetofend(struct iommu_hwpt_alloc, __reserved)}: the smallest size IOMMU_HWPT_ALLOC
     * accepts, the struct as it was before {@code data_type} and {@code fault_id} were appended.
     */
    public static final long MIN_SIZE = RESERVED_OFFSET + 4;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dev_id"), U32.withName("pt_id"),
            U32.withName("out_hwpt_id"), U32.withName("__reserved"), U32.withName("data_type"),
            U32.withName("data_len"), ALIGNED_U64.withName("data_uptr"), U32.withName("fault_id"),
            U32.withName("__reserved2")).withName("iommu_hwpt_alloc");

    private IommuHwptAlloc() {
    }

    /** {@code flags}: {@code IOMMU_HWPT_ALLOC_*} flags. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code dev_id}: the device the HWPT is for. */
    public static int devId(final MemorySegment s) {
        return CType.u32(s, DEV_ID_OFFSET);
    }

    /** Sets {@code dev_id}. */
    public static void devId(final MemorySegment s, final int v) {
        CType.u32(s, DEV_ID_OFFSET, v);
    }

    /** {@code pt_id}: the IOAS or parent HWPT. */
    public static int ptId(final MemorySegment s) {
        return CType.u32(s, PT_ID_OFFSET);
    }

    /** Sets {@code pt_id}. */
    public static void ptId(final MemorySegment s, final int v) {
        CType.u32(s, PT_ID_OFFSET, v);
    }

    /** {@code out_hwpt_id}: the new HWPT's id (out). */
    public static int outHwptId(final MemorySegment s) {
        return CType.u32(s, OUT_HWPT_ID_OFFSET);
    }

    /** Sets {@code out_hwpt_id}. */
    public static void outHwptId(final MemorySegment s, final int v) {
        CType.u32(s, OUT_HWPT_ID_OFFSET, v);
    }

    /** {@code __reserved}: must be 0. */
    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** {@code data_type}: an {@code IOMMU_HWPT_DATA_*} type. */
    public static int dataType(final MemorySegment s) {
        return CType.u32(s, DATA_TYPE_OFFSET);
    }

    /** Sets {@code data_type}. */
    public static void dataType(final MemorySegment s, final int v) {
        CType.u32(s, DATA_TYPE_OFFSET, v);
    }

    /** {@code data_len}: length of the type-specific data. */
    public static int dataLen(final MemorySegment s) {
        return CType.u32(s, DATA_LEN_OFFSET);
    }

    /** Sets {@code data_len}. */
    public static void dataLen(final MemorySegment s, final int v) {
        CType.u32(s, DATA_LEN_OFFSET, v);
    }

    /** {@code data_uptr}: user pointer to the type-specific data. */
    public static long dataUptr(final MemorySegment s) {
        return CType.u64(s, DATA_UPTR_OFFSET);
    }

    /** Sets {@code data_uptr}. */
    public static void dataUptr(final MemorySegment s, final long v) {
        CType.u64(s, DATA_UPTR_OFFSET, v);
    }

    /** {@code fault_id}: a fault queue, with {@code IOMMU_HWPT_FAULT_ID_VALID}. */
    public static int faultId(final MemorySegment s) {
        return CType.u32(s, FAULT_ID_OFFSET);
    }

    /** Sets {@code fault_id}. */
    public static void faultId(final MemorySegment s, final int v) {
        CType.u32(s, FAULT_ID_OFFSET, v);
    }

    /** {@code __reserved2}: must be 0. */
    public static int reserved2(final MemorySegment s) {
        return CType.u32(s, RESERVED2_OFFSET);
    }
}
