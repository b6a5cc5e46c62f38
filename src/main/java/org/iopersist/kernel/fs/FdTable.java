package org.iopersist.kernel.fs;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * A process's file descriptors: the lowest free number on install, as POSIX requires, below the
 * process's {@code RLIMIT_NOFILE}. Each descriptor holds one reference on its {@link OpenFile}.
 *
 * <p>Lock: this object's monitor.
 */
public final class FdTable {
    /** {@code RLIMIT_NOFILE}'s soft limit a process starts with (Linux's INR_OPEN_CUR). */
    public static final int DEFAULT_NOFILE = 1024;
    /** Its hard limit (INR_OPEN_MAX): an unprivileged process may raise the soft limit up to it. */
    public static final int DEFAULT_NOFILE_MAX = 4096;
    /** {@code fs.nr_open}: no limit goes above it, not even root's. */
    public static final int NR_OPEN = 1 << 20;

    /** What a descriptor taken by {@link #reserve} and not yet installed points at. */
    private final OpenFile reserved = new OpenFile(new KernelFile() {
        @Override
        public String describe() {
            return "(reserved descriptor)";
        }
    });

    private final TreeMap<Integer, OpenFile> fds = new TreeMap<>(); // guarded by this
    private long nofile = DEFAULT_NOFILE; // guarded by this
    private long nofileMax = DEFAULT_NOFILE_MAX; // guarded by this

    /** Installs a new description of {@code file} at the lowest free descriptor. @throws KernelException EMFILE */
    public int install(final KernelFile file) {
        return install(new OpenFile(file));
    }

    /** Installs {@code file}, whose reference moves into the table. @throws KernelException EMFILE */
    public synchronized int install(final OpenFile file) {
        final int fd = lowestFree();
        fds.put(fd, file);
        return fd;
    }

    /**
     * get_unused_fd: takes the lowest free descriptor without a file yet, so its number can be
     * answered before the file is published; {@link #installAt} or {@link #unreserve} ends it.
     *
     * @throws KernelException EMFILE
     */
    public synchronized int reserve() {
        final int fd = lowestFree();
        fds.put(fd, reserved);
        return fd;
    }

    /** fd_install: publishes {@code file} (its reference moves in) at a reserved descriptor. */
    public synchronized void installAt(final int fd, final OpenFile file) {
        if (fds.get(fd) != reserved) {
            throw new IllegalStateException("fd " + fd + " was not reserved");
        }
        fds.put(fd, file);
    }

    /** put_unused_fd: gives a reserved descriptor back. */
    public synchronized void unreserve(final int fd) {
        if (fds.get(fd) == reserved) {
            fds.remove(fd);
        }
    }

    private int lowestFree() {
        int fd = 0;
        for (int used : fds.keySet()) {
            if (used != fd) {
                break;
            }
            fd++;
        }
        if (fd >= nofile) {
            throw new KernelException(Errno.EMFILE, "too many open files (RLIMIT_NOFILE " + nofile + ")");
        }
        return fd;
    }

    /** The open file at {@code fd}. @throws KernelException EBADF */
    public synchronized OpenFile entry(final int fd) {
        final OpenFile e = fds.get(fd);
        if (e == null || e == reserved) {
            throw new KernelException(Errno.EBADF, "fd " + fd);
        }
        return e;
    }

    public KernelFile get(final int fd) {
        return entry(fd).file();
    }

    /** fget: the open file at {@code fd} with a reference the caller puts. @throws KernelException EBADF */
    public synchronized OpenFile fget(final int fd) {
        return entry(fd).get();
    }

    /** Removes {@code fd} and returns its open file, whose reference the caller puts. @throws KernelException EBADF */
    public synchronized OpenFile remove(final int fd) {
        final OpenFile e = entry(fd);
        fds.remove(fd);
        return e;
    }

    /** Removes every descriptor (exit), returning their open files in descriptor order; the caller puts each. */
    public synchronized List<OpenFile> clear() {
        final List<OpenFile> out = new ArrayList<>();
        for (OpenFile e : fds.values()) {
            if (e != reserved) {
                out.add(e);
            }
        }
        fds.clear();
        return out;
    }

    /** The open files, in descriptor order (one per descriptor; a shared file appears once per fd). */
    public synchronized List<KernelFile> files() {
        final List<KernelFile> out = new ArrayList<>();
        for (OpenFile e : fds.values()) {
            if (e != reserved) {
                out.add(e.file());
            }
        }
        return out;
    }

    public synchronized int size() {
        return fds.size();
    }

    /** {@code RLIMIT_NOFILE} as {@code {rlim_cur, rlim_max}}. */
    public synchronized long[] nofileLimit() {
        return new long[] {nofile, nofileMax};
    }

    /**
     * setrlimit(RLIMIT_NOFILE): the soft limit may not exceed the hard one (EINVAL), the hard one
     * rises only for root (EPERM), and neither goes above {@link #NR_OPEN} (EPERM), as
     * {@code do_prlimit} checks.
     */
    public synchronized void nofileLimit(final long cur, final long max, final boolean privileged) {
        if (Long.compareUnsigned(cur, max) > 0) {
            throw new KernelException(Errno.EINVAL, "rlim_cur " + cur + " above rlim_max " + max);
        }
        if (Long.compareUnsigned(max, NR_OPEN) > 0) {
            throw new KernelException(Errno.EPERM, "RLIMIT_NOFILE above fs.nr_open " + NR_OPEN);
        }
        if (Long.compareUnsigned(max, nofileMax) > 0 && !privileged) {
            throw new KernelException(Errno.EPERM, "raising the hard RLIMIT_NOFILE needs CAP_SYS_RESOURCE");
        }
        nofile = cur;
        nofileMax = max;
    }
}
