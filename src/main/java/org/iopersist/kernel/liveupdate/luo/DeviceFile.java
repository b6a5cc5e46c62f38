package org.iopersist.kernel.liveupdate.luo;

import java.lang.foreign.Arena;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Liveupdate;
import org.iopersist.uapi.LiveupdateIoctlSession;

/**
 * An open {@code /dev/liveupdate} ({@code luo_fops}): CREATE_SESSION and RETRIEVE_SESSION, checked in
 * {@code luo_ioctl}'s order: a number past the table is EINVAL, the {@code size} must be readable
 * (EFAULT), a number of the table with another type or direction is ENOTTY, a size below the
 * minimum EINVAL, a longer struct's tail must be zero (E2BIG). Closing it lets the next open in.
 */
public final class DeviceFile implements KernelFile {
    private final Luo luo;

    DeviceFile(final Luo luo) {
        this.luo = luo;
    }

    @Override
    public long ioctl(final UserProcess p, final int cmd, final long arg) {
        final int nr = Liveupdate.ioctlNr(cmd);
        if (Integer.compareUnsigned(nr - Liveupdate.LIVEUPDATE_CMD_BASE, 2) >= 0) {
            throw new KernelException(Errno.EINVAL, "liveupdate ioctl nr 0x" + Integer.toHexString(nr));
        }
        try (Arena arena = Arena.ofConfined()) {
            final long usize = LuoUcmd.userSize(p, arg, arena);
            final boolean create = nr == Liveupdate.LIVEUPDATE_CMD_CREATE_SESSION;
            if (cmd != (create ? Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION : Liveupdate.LIVEUPDATE_IOCTL_RETRIEVE_SESSION)) {
                throw new KernelException(Errno.ENOTTY, "ioctl 0x" + Integer.toHexString(cmd) + " (ENOIOCTLCMD)");
            }
            if (usize < LiveupdateIoctlSession.MIN_SIZE) {
                throw new KernelException(Errno.EINVAL, "size " + usize + " below " + LiveupdateIoctlSession.MIN_SIZE);
            }
            final LuoUcmd u = LuoUcmd.copyIn(p, arg, usize, LiveupdateIoctlSession.SIZE, arena);
            return session(u, create);
        }
    }

    /** luo_ioctl_create_session / luo_ioctl_retrieve_session: a descriptor first (EMFILE), then the session. */
    private long session(final LuoUcmd u, final boolean create) {
        final int fd = u.process.fds().reserve();
        try {
            LiveupdateIoctlSession.fd(u.cmd, fd);
            final byte[] name = LiveupdateIoctlSession.nameBytes(u.cmd);
            final LuoSession s = create ? luo.createSession(name) : luo.retrieveSession(name);
            try {
                u.respond();
            } catch (KernelException e) {
                luo.forgetSession(s);
                throw e;
            }
            u.process.fds().installAt(fd, new OpenFile(new SessionFile(luo, s)));
            return 0;
        } catch (RuntimeException e) {
            u.process.fds().unreserve(fd);
            throw e;
        }
    }

    @Override
    public void release() {
        luo.deviceReleased();
    }

    @Override
    public String describe() {
        return Liveupdate.DEV_PATH;
    }
}
