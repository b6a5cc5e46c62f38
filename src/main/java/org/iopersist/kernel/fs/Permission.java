package org.iopersist.kernel.fs;

import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/**
 * Who may open what: an inode's mode, owner and group, checked at open as Linux's
 * {@code generic_permission} does. The owner gets the user bits, a process whose gid is the file's
 * group the group bits, everyone else the other bits; root (uid 0, standing for CAP_DAC_OVERRIDE)
 * passes every check. Supplementary groups are not modelled: a process has the one gid SO_PEERCRED
 * gave it.
 *
 * @param mode the permission bits, e.g. {@code 0660}
 * @param uid  the owner
 * @param gid  the group
 */
public record Permission(int mode, int uid, int gid) {
    static final int MAY_EXEC = 1;
    static final int MAY_WRITE = 2;
    static final int MAY_READ = 4;

    /** A root-owned file with {@code mode}, as a device node udev made or a sysfs attribute. */
    public static Permission root(final int mode) {
        return new Permission(mode, 0, 0);
    }

    /** The bits that apply to {@code p}. */
    private int bitsFor(final UserProcess p) {
        if (p.uid() == uid) {
            return (mode >> 6) & 7;
        }
        if (p.gid() == gid) {
            return (mode >> 3) & 7;
        }
        return mode & 7;
    }

    /** inode_permission for {@code want} (MAY_READ | MAY_WRITE | MAY_EXEC bits); EACCES if not granted. */
    public void check(final UserProcess p, final int want, final String path) {
        if (p.root()) {
            return;
        }
        if ((bitsFor(p) & want) != want) {
            throw new KernelException(Errno.EACCES, String.format("%s is %04o %d:%d, uid %d gid %d may not %s", path, mode, uid, gid,
                    p.uid(), p.gid(), (want & MAY_WRITE) != 0 ? "write it" : (want & MAY_READ) != 0 ? "read it" : "search it"));
        }
    }

    /** may_open: what an open with {@code flags} needs (read for O_RDONLY/O_RDWR, write for O_WRONLY/O_RDWR or O_TRUNC). */
    public void checkOpen(final UserProcess p, final int flags, final String path) {
        check(p, accessFor(flags), path);
    }

    static int accessFor(final int flags) {
        final int acc = flags & Syscall.O_ACCMODE;
        int want = 0;
        if (acc == Syscall.O_RDONLY || acc == Syscall.O_RDWR) {
            want |= MAY_READ;
        }
        if (acc == Syscall.O_WRONLY || acc == Syscall.O_RDWR || (flags & Syscall.O_TRUNC) != 0) {
            want |= MAY_WRITE;
        }
        return want;
    }

    /** Write and search on a directory: what creating or unlinking a name in it needs. */
    public void checkDirectoryChange(final UserProcess p, final String path) {
        check(p, MAY_WRITE | MAY_EXEC, path);
    }
}
