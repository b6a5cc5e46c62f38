package org.iopersist.uapi;

import static org.iopersist.uapi.CType.S32;
import static org.iopersist.uapi.CType.U32;
import static org.iopersist.uapi.CType.U8;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.nio.charset.StandardCharsets;

/**
 * {@code struct liveupdate_ioctl_create_session} and {@code struct liveupdate_ioctl_retrieve_session},
 * which have one layout: the arguments of {@code LIVEUPDATE_IOCTL_CREATE_SESSION} and
 * {@code LIVEUPDATE_IOCTL_RETRIEVE_SESSION}.
 *
 * <pre>
 *   0  u32      size
 *   4  s32      fd        out: the session's new file descriptor
 *   8  u8[64]   name      in: NUL-terminated, at most 63 bytes before the NUL
 * </pre>
 */
public final class LiveupdateIoctlSession {
    public static final long SIZE_OFFSET = 0;
    public static final long FD_OFFSET = 4;
    public static final long NAME_OFFSET = 8;
    /** {@code sizeof(struct liveupdate_ioctl_create_session)}. */
    public static final long SIZE = NAME_OFFSET + Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH;
    /** {@code offsetofend(..., name)}: the smallest size the device accepts. */
    public static final long MIN_SIZE = SIZE;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), S32.withName("fd"),
            MemoryLayout.sequenceLayout(Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH, U8).withName("name"))
            .withName("liveupdate_ioctl_create_session");

    private LiveupdateIoctlSession() {
    }

    public static int fd(final MemorySegment s) {
        return CType.u32(s, FD_OFFSET);
    }

    public static void fd(final MemorySegment s, final int v) {
        CType.u32(s, FD_OFFSET, v);
    }

    /** The 64 bytes of {@code name}, as they are (not necessarily NUL-terminated). */
    public static byte[] nameBytes(final MemorySegment s) {
        return s.asSlice(NAME_OFFSET, Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH).toArray(U8);
    }

    /** Sets {@code name} to {@code name}'s UTF-8 bytes, NUL-padded (truncated to 64 bytes, the caller's business). */
    public static void name(final MemorySegment s, final String name) {
        final byte[] b = name.getBytes(StandardCharsets.UTF_8);
        final MemorySegment field = s.asSlice(NAME_OFFSET, Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH);
        field.fill((byte) 0);
        MemorySegment.copy(MemorySegment.ofArray(b), 0, field, 0, Math.min(b.length, field.byteSize()));
    }
}
