package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U16;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_option}, the argument of {@code IOMMU_OPTION}: gets or sets one option of the
 * context ({@code object_id} 0) or of an object.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      option_id
 *   8  u16      op
 *  10  u16      __reserved
 *  12  u32      object_id
 *  16  u64      val64
 * </pre>
 */
public final class IommuOption {
    public static final long SIZE_OFFSET = 0;
    public static final long OPTION_ID_OFFSET = 4;
    public static final long OP_OFFSET = 8;
    public static final long RESERVED_OFFSET = 10;
    public static final long OBJECT_ID_OFFSET = 12;
    public static final long VAL64_OFFSET = 16;
    /** {@code sizeof(struct iommu_option)}. */
    public static final long SIZE = 24;
    /** {@code offsetofend(struct iommu_option, val64)}: the smallest size IOMMU_OPTION accepts. */
    public static final long MIN_SIZE = VAL64_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("option_id"), U16.withName("op"), U16.withName("__reserved"),
            U32.withName("object_id"), ALIGNED_U64.withName("val64")).withName("iommu_option");

    private IommuOption() {
    }

    /** {@code option_id}: an {@code IOMMU_OPTION_*} option. */
    public static int optionId(final MemorySegment s) {
        return CType.u32(s, OPTION_ID_OFFSET);
    }

    /** Sets {@code option_id}. */
    public static void optionId(final MemorySegment s, final int v) {
        CType.u32(s, OPTION_ID_OFFSET, v);
    }

    /** {@code op}: {@code IOMMU_OPTION_OP_SET} or {@code IOMMU_OPTION_OP_GET}. */
    public static int op(final MemorySegment s) {
        return CType.u16(s, OP_OFFSET);
    }

    /** Sets {@code op}. */
    public static void op(final MemorySegment s, final int v) {
        CType.u16(s, OP_OFFSET, v);
    }

    /** {@code __reserved}: must be 0. */
    public static int reserved(final MemorySegment s) {
        return CType.u16(s, RESERVED_OFFSET);
    }

    /** {@code object_id}: the object, or 0 for a context option. */
    public static int objectId(final MemorySegment s) {
        return CType.u32(s, OBJECT_ID_OFFSET);
    }

    /** Sets {@code object_id}. */
    public static void objectId(final MemorySegment s, final int v) {
        CType.u32(s, OBJECT_ID_OFFSET, v);
    }

    /** {@code val64}: the value to set, or the value got (out). */
    public static long val64(final MemorySegment s) {
        return CType.u64(s, VAL64_OFFSET);
    }

    /** Sets {@code val64}. */
    public static void val64(final MemorySegment s, final long v) {
        CType.u64(s, VAL64_OFFSET, v);
    }
}
