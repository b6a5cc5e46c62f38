package org.iopersist.vmm;

import java.lang.foreign.MemorySegment;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Liveupdate;
import org.iopersist.uapi.LiveupdateSessionFd;
import org.iopersist.uapi.LiveupdateSessionFinish;
import org.iopersist.uapi.LiveupdateSessionGetName;

/**
 * A LUO session fd: preserve files by token before the kexec, retrieve them by token after it, and
 * finish. Closing an outgoing session unpreserves its files; keep it open through the kexec (a
 * kexec ends the process without closing anything).
 */
public final class SessionHandle implements AutoCloseable {
    private final KernelClient client;
    private final int fd;

    private SessionHandle(final KernelClient client, final int fd) {
        this.client = client;
        this.fd = fd;
    }

    /** Wraps a session fd this process holds. */
    public static SessionHandle of(final KernelClient client, final int fd) {
        return new SessionHandle(client, fd);
    }

    public int fd() {
        return fd;
    }

    private MemorySegment call(final int cmd, final MemorySegment s, final String what) {
        final long ret = client.ioctl(fd, cmd, s);
        if (ret < 0) {
            throw new ErrnoException((int) -ret, what);
        }
        return s;
    }

    private static MemorySegment struct(final long size) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((size + 7) / 8)]).asSlice(0, size);
        Liveupdate.size(s, (int) size);
        return s;
    }

    /** LIVEUPDATE_SESSION_PRESERVE_FD of {@code fileFd} under {@code token}. */
    public void preserveFd(final int fileFd, final long token) {
        final MemorySegment s = struct(LiveupdateSessionFd.SIZE);
        LiveupdateSessionFd.fd(s, fileFd);
        LiveupdateSessionFd.token(s, token);
        call(Liveupdate.LIVEUPDATE_SESSION_PRESERVE_FD, s, String.format("LIVEUPDATE_SESSION_PRESERVE_FD fd %d token 0x%x", fileFd, token));
    }

    /** LIVEUPDATE_SESSION_RETRIEVE_FD: a new fd for the file preserved under {@code token}. */
    public int retrieveFd(final long token) {
        final MemorySegment s = struct(LiveupdateSessionFd.SIZE);
        LiveupdateSessionFd.token(s, token);
        return LiveupdateSessionFd.fd(call(Liveupdate.LIVEUPDATE_SESSION_RETRIEVE_FD, s,
                String.format("LIVEUPDATE_SESSION_RETRIEVE_FD token 0x%x", token)));
    }

    /** LIVEUPDATE_SESSION_FINISH. */
    public void finish() {
        call(Liveupdate.LIVEUPDATE_SESSION_FINISH, struct(LiveupdateSessionFinish.SIZE), "LIVEUPDATE_SESSION_FINISH");
    }

    /** LIVEUPDATE_SESSION_GET_NAME. */
    public String name() {
        return LiveupdateSessionGetName.name(call(Liveupdate.LIVEUPDATE_SESSION_GET_NAME, struct(LiveupdateSessionGetName.SIZE),
                "LIVEUPDATE_SESSION_GET_NAME"));
    }

    @Override
    public void close() {
        client.close(fd);
    }
}
