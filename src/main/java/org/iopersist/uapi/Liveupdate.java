package org.iopersist.uapi;

import java.lang.foreign.MemorySegment;

/**
 * The Live Update Orchestrator's uAPI, {@code include/uapi/linux/liveupdate.h}: the device
 * {@code /dev/liveupdate}, ioctl type {@code 0xBA}, and commands {@code _IO(0xBA, nr)} whose
 * structs start with {@code u32 size}, iommufd-style. On the device: {@link #LIVEUPDATE_IOCTL_CREATE_SESSION}
 * and {@link #LIVEUPDATE_IOCTL_RETRIEVE_SESSION} ({@link LiveupdateIoctlSession}); on a session fd:
 * {@link #LIVEUPDATE_SESSION_PRESERVE_FD} and {@link #LIVEUPDATE_SESSION_RETRIEVE_FD}
 * ({@link LiveupdateSessionFd}), {@link #LIVEUPDATE_SESSION_FINISH} ({@link LiveupdateSessionFinish})
 * and {@link #LIVEUPDATE_SESSION_GET_NAME} ({@link LiveupdateSessionGetName}).
 */
public final class Liveupdate {
    private Liveupdate() {
    }

    /** The misc device: root only, and one open at a time (EBUSY). */
    public static final String DEV_PATH = "/dev/liveupdate";

    public static final int LIVEUPDATE_IOCTL_TYPE = 0xBA;
    /** Longest session name, its NUL included. */
    public static final int LIVEUPDATE_SESSION_NAME_LENGTH = 64;

    /** Commands of {@code /dev/liveupdate}: {@code LIVEUPDATE_CMD_BASE} and up. */
    public static final int LIVEUPDATE_CMD_BASE = 0x00;
    public static final int LIVEUPDATE_CMD_CREATE_SESSION = LIVEUPDATE_CMD_BASE;
    public static final int LIVEUPDATE_CMD_RETRIEVE_SESSION = 0x01;
    /** Commands of a session fd: {@code LIVEUPDATE_CMD_SESSION_BASE} and up. */
    public static final int LIVEUPDATE_CMD_SESSION_BASE = 0x40;
    public static final int LIVEUPDATE_CMD_SESSION_PRESERVE_FD = LIVEUPDATE_CMD_SESSION_BASE;
    public static final int LIVEUPDATE_CMD_SESSION_RETRIEVE_FD = 0x41;
    public static final int LIVEUPDATE_CMD_SESSION_FINISH = 0x42;
    public static final int LIVEUPDATE_CMD_SESSION_GET_NAME = 0x43;

    /** {@code _IO(type, nr)}: no direction, no size, as LUO defines its commands. */
    public static int io(final int nr) {
        return (LIVEUPDATE_IOCTL_TYPE << 8) | nr;
    }

    /** {@code _IOC_NR(cmd)}: the low 8 bits, what the dispatchers index their tables by. */
    public static int ioctlNr(final int cmd) {
        return cmd & 0xff;
    }

    public static final int LIVEUPDATE_IOCTL_CREATE_SESSION = io(LIVEUPDATE_CMD_CREATE_SESSION);
    public static final int LIVEUPDATE_IOCTL_RETRIEVE_SESSION = io(LIVEUPDATE_CMD_RETRIEVE_SESSION);
    public static final int LIVEUPDATE_SESSION_PRESERVE_FD = io(LIVEUPDATE_CMD_SESSION_PRESERVE_FD);
    public static final int LIVEUPDATE_SESSION_RETRIEVE_FD = io(LIVEUPDATE_CMD_SESSION_RETRIEVE_FD);
    public static final int LIVEUPDATE_SESSION_FINISH = io(LIVEUPDATE_CMD_SESSION_FINISH);
    public static final int LIVEUPDATE_SESSION_GET_NAME = io(LIVEUPDATE_CMD_SESSION_GET_NAME);

    /** The leading {@code u32 size} of every LUO struct. */
    public static int size(final MemorySegment s) {
        return CType.u32(s, 0);
    }

    public static void size(final MemorySegment s, final int v) {
        CType.u32(s, 0, v);
    }
}
