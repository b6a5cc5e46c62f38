package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U16;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_info_cap_header}: heads every capability in a VFIO info chain.
 *
 * <pre>
 *   0  u16      id
 *   2  u16      version
 *   4  u32      next
 * </pre>
 */
public final class VfioInfoCapHeader {
    public static final long ID_OFFSET = 0;
    public static final long VERSION_OFFSET = 2;
    public static final long NEXT_OFFSET = 4;
    /** {@code sizeof(struct vfio_info_cap_header)}. */
    public static final long SIZE = 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U16.withName("id"), U16.withName("version"), U32.withName("next")).withName("vfio_info_cap_header");

    private VfioInfoCapHeader() {
    }

    /** {@code id}: the capability. */
    public static int id(final MemorySegment s) {
        return CType.u16(s, ID_OFFSET);
    }

    /** Sets {@code id}. */
    public static void id(final MemorySegment s, final int v) {
        CType.u16(s, ID_OFFSET, v);
    }

    /** {@code version}: its version. */
    public static int version(final MemorySegment s) {
        return CType.u16(s, VERSION_OFFSET);
    }

    /** Sets {@code version}. */
    public static void version(final MemorySegment s, final int v) {
        CType.u16(s, VERSION_OFFSET, v);
    }

    /** {@code next}: offset of the next capability from the start of the info struct, 0 for the last. */
    public static int next(final MemorySegment s) {
        return CType.u32(s, NEXT_OFFSET);
    }

    /** Sets {@code next}. */
    public static void next(final MemorySegment s, final int v) {
        CType.u32(s, NEXT_OFFSET, v);
    }
}
