package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U32;
import static org.iopersist.uapi.CType.U8;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.nio.charset.StandardCharsets;

/**
 * {@code struct liveupdate_session_get_name}, the argument of {@code LIVEUPDATE_SESSION_GET_NAME}
 * (liveupdate/next, "liveupdate: add LIVEUPDATE_SESSION_GET_NAME ioctl").
 *
 * <pre>
 *   0  u32      size
 *   4  u32      reserved  must be 0 (else EINVAL)
 *   8  u8[64]   name      out: the session's name, NUL-terminated
 * </pre>
 */
public final class LiveupdateSessionGetName {
    public static final long SIZE_OFFSET = 0;
    public static final long RESERVED_OFFSET = 4;
    public static final long NAME_OFFSET = 8;
    /** {@code sizeof(struct liveupdate_session_get_name)}. */
    public static final long SIZE = NAME_OFFSET + Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH;
    /** {@code offsetofend(..., name)}. */
    public static final long MIN_SIZE = SIZE;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("reserved"),
            MemoryLayout.sequenceLayout(Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH, U8).withName("name"))
            .withName("liveupdate_session_get_name");

    private LiveupdateSessionGetName() {
    }

    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** {@code name} up to its NUL. */
    public static String name(final MemorySegment s) {
        final byte[] b = s.asSlice(NAME_OFFSET, Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH).toArray(U8);
        int n = 0;
        while (n < b.length && b[n] != 0) {
            n++;
        }
        return new String(b, 0, n, StandardCharsets.UTF_8);
    }

    /** Sets {@code name}: the bytes, NUL-padded to 64. */
    public static void name(final MemorySegment s, final byte[] name) {
        final MemorySegment field = s.asSlice(NAME_OFFSET, Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH);
        field.fill((byte) 0);
        MemorySegment.copy(MemorySegment.ofArray(name), 0, field, 0, Math.min(name.length, field.byteSize() - 1));
    }
}
