package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.S32;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct liveupdate_session_preserve_fd} and {@code struct liveupdate_session_retrieve_fd},
 * which have one layout: the arguments of {@code LIVEUPDATE_SESSION_PRESERVE_FD} (fd in) and
 * {@code LIVEUPDATE_SESSION_RETRIEVE_FD} (fd out).
 *
 * <pre>
 *   0  u32      size
 *   4  s32      fd
 *   8  u64      token     (__aligned_u64)
 * </pre>
 */
public final class LiveupdateSessionFd {
    public static final long SIZE_OFFSET = 0;
    public static final long FD_OFFSET = 4;
    public static final long TOKEN_OFFSET = 8;
    /** {@code sizeof(struct liveupdate_session_preserve_fd)}. */
    public static final long SIZE = 16;
    /** {@code offsetofend(..., token)}: the smallest size the session accepts. */
    public static final long MIN_SIZE = TOKEN_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), S32.withName("fd"), ALIGNED_U64.withName("token"))
            .withName("liveupdate_session_preserve_fd");

    private LiveupdateSessionFd() {
    }

    public static int fd(final MemorySegment s) {
        return CType.u32(s, FD_OFFSET);
    }

    public static void fd(final MemorySegment s, final int v) {
        CType.u32(s, FD_OFFSET, v);
    }

    public static long token(final MemorySegment s) {
        return CType.u64(s, TOKEN_OFFSET);
    }

    public static void token(final MemorySegment s, final long v) {
        CType.u64(s, TOKEN_OFFSET, v);
    }
}
