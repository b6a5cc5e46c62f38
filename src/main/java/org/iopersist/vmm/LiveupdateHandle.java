package org.iopersist.vmm;

import java.lang.foreign.MemorySegment;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Liveupdate;
import org.iopersist.uapi.LiveupdateIoctlSession;
import org.iopersist.uapi.Syscall;

/**
 * A process's handle on {@code /dev/liveupdate} (root only, one open at a time): creates the
 * sessions this boot hands over and retrieves the ones the previous boot handed over, as
 * {@code tools/testing/selftests/liveupdate/luo_test_utils.c} does.
 */
public final class LiveupdateHandle implements AutoCloseable {
    private final KernelClient client;
    private final int fd;

    private LiveupdateHandle(final KernelClient client, final int fd) {
        this.client = client;
        this.fd = fd;
    }

    public static LiveupdateHandle open(final KernelClient client) {
        return new LiveupdateHandle(client, client.open(Liveupdate.DEV_PATH, Syscall.O_RDWR));
    }

    public int fd() {
        return fd;
    }

    /** LIVEUPDATE_IOCTL_CREATE_SESSION: a new session to preserve files in. */
    public SessionHandle createSession(final String name) {
        return SessionHandle.of(client, session(Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION, name, "CREATE_SESSION"));
    }

    /** LIVEUPDATE_IOCTL_RETRIEVE_SESSION: the session of that name the previous kernel handed over. */
    public SessionHandle retrieveSession(final String name) {
        return SessionHandle.of(client, session(Liveupdate.LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name, "RETRIEVE_SESSION"));
    }

    private int session(final int cmd, final String name, final String what) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) (LiveupdateIoctlSession.SIZE / 8)]);
        Liveupdate.size(s, (int) LiveupdateIoctlSession.SIZE);
        LiveupdateIoctlSession.name(s, name);
        final long ret = client.ioctl(fd, cmd, s);
        if (ret < 0) {
            throw new ErrnoException((int) -ret, "LIVEUPDATE_IOCTL_" + what + " '" + name + "'");
        }
        return LiveupdateIoctlSession.fd(s);
    }

    @Override
    public void close() {
        client.close(fd);
    }
}
