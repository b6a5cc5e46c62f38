package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_ioas_map}, the argument of {@code IOMMU_IOAS_MAP}: maps {@code length} bytes
 * of user memory at {@code user_va} into an IOAS.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      flags
 *   8  u32      ioas_id
 *  12  u32      __reserved
 *  16  u64      user_va
 *  24  u64      length
 *  32  u64      iova
 * </pre>
 */
public final class IommuIoasMap {
    public static final long SIZE_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long IOAS_ID_OFFSET = 8;
    public static final long RESERVED_OFFSET = 12;
    public static final long USER_VA_OFFSET = 16;
    public static final long LENGTH_OFFSET = 24;
    public static final long IOVA_OFFSET = 32;
    /** {@code sizeof(struct iommu_ioas_map)}. */
    public static final long SIZE = 40;
    /** {@code offsetofend(struct iommu_ioas_map, iova)}: the smallest size IOMMU_IOAS_MAP accepts. */
    public static final long MIN_SIZE = IOVA_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("ioas_id"), U32.withName("__reserved"),
            ALIGNED_U64.withName("user_va"), ALIGNED_U64.withName("length"),
            ALIGNED_U64.withName("iova")).withName("iommu_ioas_map");

    private IommuIoasMap() {
    }

    /** {@code flags}: {@code IOMMU_IOAS_MAP_*} flags. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }

    /** {@code ioas_id}: the IOAS to map into. */
    public static int ioasId(final MemorySegment s) {
        return CType.u32(s, IOAS_ID_OFFSET);
    }

    /** Sets {@code ioas_id}. */
    public static void ioasId(final MemorySegment s, final int v) {
        CType.u32(s, IOAS_ID_OFFSET, v);
    }

    /** {@code __reserved}: must be 0. */
    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** {@code user_va}: start of the user memory. */
    public static long userVa(final MemorySegment s) {
        return CType.u64(s, USER_VA_OFFSET);
    }

    /** Sets {@code user_va}. */
    public static void userVa(final MemorySegment s, final long v) {
        CType.u64(s, USER_VA_OFFSET, v);
    }

    /** {@code length}: bytes to map. */
    public static long length(final MemorySegment s) {
        return CType.u64(s, LENGTH_OFFSET);
    }

    /** Sets {@code length}. */
    public static void length(final MemorySegment s, final long v) {
        CType.u64(s, LENGTH_OFFSET, v);
    }

    /** {@code iova}: in with {@code FIXED_IOVA}; out: where the mapping was placed. */
    public static long iova(final MemorySegment s) {
        return CType.u64(s, IOVA_OFFSET);
    }

    /** Sets {@code iova}. */
    public static void iova(final MemorySegment s, final long v) {
        CType.u64(s, IOVA_OFFSET, v);
    }
}
