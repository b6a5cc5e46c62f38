package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct liveupdate_session_finish}, the argument of {@code LIVEUPDATE_SESSION_FINISH}.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      reserved  must be 0
 * </pre>
 */
public final class LiveupdateSessionFinish {
    public static final long SIZE_OFFSET = 0;
    public static final long RESERVED_OFFSET = 4;
    /** {@code sizeof(struct liveupdate_session_finish)}. */
    public static final long SIZE = 8;
    /** {@code offsetofend(..., reserved)}. */
    public static final long MIN_SIZE = SIZE;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("reserved")).withName("liveupdate_session_finish");

    private LiveupdateSessionFinish() {
    }

    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    public static void reserved(final MemorySegment s, final int v) {
        CType.u32(s, RESERVED_OFFSET, v);
    }
}
