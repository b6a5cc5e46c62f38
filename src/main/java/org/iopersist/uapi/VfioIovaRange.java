package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_iova_range}: one usable IOVA range, both ends inclusive.
 *
 * <pre>
 *   0  u64      start
 *   8  u64      end
 * </pre>
 */
public final class VfioIovaRange {
    public static final long START_OFFSET = 0;
    public static final long END_OFFSET = 8;
    /** {@code sizeof(struct vfio_iova_range)}. */
    public static final long SIZE = 16;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            ALIGNED_U64.withName("start"), ALIGNED_U64.withName("end")).withName("vfio_iova_range");

    private VfioIovaRange() {
    }

    /** {@code start}: first IOVA. */
    public static long start(final MemorySegment s) {
        return CType.u64(s, START_OFFSET);
    }

    /** Sets {@code start}. */
    public static void start(final MemorySegment s, final long v) {
        CType.u64(s, START_OFFSET, v);
    }

    /** {@code end}: last IOVA (inclusive). */
    public static long end(final MemorySegment s) {
        return CType.u64(s, END_OFFSET);
    }

    /** Sets {@code end}. */
    public static void end(final MemorySegment s, final long v) {
        CType.u64(s, END_OFFSET, v);
    }
}
