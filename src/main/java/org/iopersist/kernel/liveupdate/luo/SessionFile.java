package org.iopersist.kernel.liveupdate.luo;

import java.lang.foreign.Arena;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Liveupdate;
import org.iopersist.uapi.LiveupdateSessionFd;
import org.iopersist.uapi.LiveupdateSessionFinish;
import org.iopersist.uapi.LiveupdateSessionGetName;

/**
 * A session fd, the anon inode {@code "[luo_session] <name>"} ({@code luo_session_fops}). Its ioctls
 * are checked in {@code luo_session_ioctl}'s order: a number outside {@code 0x40..0x43} is EINVAL,
 * the {@code size} must be readable (EFAULT), another type or direction is ENOTTY, a command for the
 * other kind of session (PRESERVE_FD on an incoming one; RETRIEVE_FD or FINISH on an outgoing one)
 * is EINVAL, then the size rules (EINVAL, E2BIG). Closing it unpreserves (outgoing) or finishes
 * (incoming).
 */
final class SessionFile implements KernelFile {
    /** {@code luo_session_ioctl_ops}: cmd, kernel size, minimum size, for incoming, for outgoing. */
    private enum Op {
        PRESERVE_FD(Liveupdate.LIVEUPDATE_SESSION_PRESERVE_FD, LiveupdateSessionFd.SIZE, LiveupdateSessionFd.MIN_SIZE, false, true),
        RETRIEVE_FD(Liveupdate.LIVEUPDATE_SESSION_RETRIEVE_FD, LiveupdateSessionFd.SIZE, LiveupdateSessionFd.MIN_SIZE, true, false),
        FINISH(Liveupdate.LIVEUPDATE_SESSION_FINISH, LiveupdateSessionFinish.SIZE, LiveupdateSessionFinish.MIN_SIZE, true, false),
        GET_NAME(Liveupdate.LIVEUPDATE_SESSION_GET_NAME, LiveupdateSessionGetName.SIZE, LiveupdateSessionGetName.MIN_SIZE, true, true);

        final int cmd;
        final long size;
        final long minSize;
        final boolean incoming;
        final boolean outgoing;

        Op(final int cmd, final long size, final long minSize, final boolean incoming, final boolean outgoing) {
            this.cmd = cmd;
            this.size = size;
            this.minSize = minSize;
            this.incoming = incoming;
            this.outgoing = outgoing;
        }

        static Op byNr(final int nr) {
            for (Op o : values()) {
                if (Liveupdate.ioctlNr(o.cmd) == nr) {
                    return o;
                }
            }
            return null;
        }
    }

    private final Luo luo;
    private final LuoSession session;

    SessionFile(final Luo luo, final LuoSession session) {
        this.luo = luo;
        this.session = session;
    }

    @Override
    public long ioctl(final UserProcess p, final int cmd, final long arg) {
        final Op op = Op.byNr(Liveupdate.ioctlNr(cmd));
        if (op == null) {
            throw new KernelException(Errno.EINVAL, "session ioctl nr 0x" + Integer.toHexString(Liveupdate.ioctlNr(cmd)));
        }
        try (Arena arena = Arena.ofConfined()) {
            final long usize = LuoUcmd.userSize(p, arg, arena);
            if (op.cmd != cmd) {
                throw new KernelException(Errno.ENOTTY, "ioctl 0x" + Integer.toHexString(cmd) + " (ENOIOCTLCMD)");
            }
            if (!(session.incoming ? op.incoming : op.outgoing)) {
                throw new KernelException(Errno.EINVAL, op + " on an " + (session.incoming ? "incoming" : "outgoing") + " session");
            }
            if (usize < op.minSize) {
                throw new KernelException(Errno.EINVAL, "size " + usize + " below " + op.minSize);
            }
            final LuoUcmd u = LuoUcmd.copyIn(p, arg, usize, op.size, arena);
            return switch (op) {
                case PRESERVE_FD -> preserveFd(u);
                case RETRIEVE_FD -> retrieveFd(u);
                case FINISH -> finish(u);
                case GET_NAME -> getName(u);
            };
        }
    }

    /** luo_session_preserve_fd: a failed answer leaves the file preserved (and says EFAULT). */
    private long preserveFd(final LuoUcmd u) {
        luo.preserveFd(session, u.process, LiveupdateSessionFd.fd(u.cmd), LiveupdateSessionFd.token(u.cmd));
        u.respond();
        return 0;
    }

    /** luo_session_retrieve_fd: a descriptor first (EMFILE), then the file, then the answer. */
    private long retrieveFd(final LuoUcmd u) {
        final int fd = u.process.fds().reserve();
        try {
            LiveupdateSessionFd.fd(u.cmd, fd);
            final OpenFile f = luo.retrieveFd(session, u.process, LiveupdateSessionFd.token(u.cmd));
            try {
                u.respond();
            } catch (KernelException e) {
                f.put();
                throw e;
            }
            u.process.fds().installAt(fd, f);
            return 0;
        } catch (RuntimeException e) {
            u.process.fds().unreserve(fd);
            throw e;
        }
    }

    /** luo_session_finish: {@code reserved} is documented "must be zero" but, as in Linux, not checked. */
    private long finish(final LuoUcmd u) {
        luo.finishSession(session);
        u.respond();
        return 0;
    }

    private long getName(final LuoUcmd u) {
        if (LiveupdateSessionGetName.reserved(u.cmd) != 0) {
            throw new KernelException(Errno.EINVAL, "GET_NAME reserved");
        }
        LiveupdateSessionGetName.name(u.cmd, session.name.getBytes(java.nio.charset.StandardCharsets.ISO_8859_1));
        u.respond();
        return 0;
    }

    @Override
    public void release() {
        luo.closeSession(session);
    }

    @Override
    public String describe() {
        return "[luo_session] " + session.name;
    }
}
