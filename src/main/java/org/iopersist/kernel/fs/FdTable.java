package org.iopersist.kernel.fs;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * A process's file descriptors: the lowest free number on install, as POSIX requires. Each entry
 * holds the open file and its position.
 *
 * <p>Lock: this object's monitor.
 */
public final class FdTable {
    public static final int MAX_FDS = 1024;

    /** One descriptor: the file and, for seekable files, the position. */
    public static final class Entry {
        private final KernelFile file;
        private long position;

        Entry(final KernelFile file) {
            this.file = file;
        }

        public KernelFile file() {
            return file;
        }

        public long position() {
            return position;
        }

        public void position(final long newPosition) {
            position = newPosition;
        }
    }

    private final TreeMap<Integer, Entry> fds = new TreeMap<>();
    /** A descriptor between get_unused_fd and fd_install: taken, yet no file behind it. */
    private final Entry RESERVED = new Entry(null);

    /** Installs {@code file} at the lowest free descriptor. @throws KernelException EMFILE */
    public synchronized int install(final KernelFile file) {
        final int fd = reserve();
        fds.put(fd, new Entry(file));
        return fd;
    }

    /**
     * get_unused_fd_flags: the lowest free descriptor, held (EBADF to every call) until
     * {@link #installAt} fills it or {@link #unreserve} gives it back. An open takes its descriptor
     * first, so an open with a side effect (a reopen, a claim) never happens for a process that
     * could not get one. @throws KernelException EMFILE
     */
    public synchronized int reserve() {
        int fd = 0;
        for (int used : fds.keySet()) {
            if (used != fd) {
                break;
            }
            fd++;
        }
        if (fd >= MAX_FDS) {
            throw new KernelException(Errno.EMFILE, "too many open files");
        }
        fds.put(fd, RESERVED);
        return fd;
    }

    /** fd_install into a descriptor {@link #reserve} returned. */
    public synchronized void installAt(final int fd, final KernelFile file) {
        if (fds.get(fd) != RESERVED) {
            throw new IllegalStateException("fd " + fd + " was not reserved");
        }
        fds.put(fd, new Entry(file));
    }

    /** put_unused_fd: the open failed; the descriptor is free again. */
    public synchronized void unreserve(final int fd) {
        if (fds.get(fd) == RESERVED) {
            fds.remove(fd);
        }
    }

    public synchronized Entry entry(final int fd) {
        final Entry e = fds.get(fd);
        if (e == null || e == RESERVED) {
            throw new KernelException(Errno.EBADF, "fd " + fd);
        }
        return e;
    }

    public KernelFile get(final int fd) {
        return entry(fd).file;
    }

    /** Removes {@code fd} and returns its file (the caller releases it). @throws KernelException EBADF */
    public synchronized KernelFile remove(final int fd) {
        final Entry e = fds.get(fd);
        if (e == null || e == RESERVED) {
            throw new KernelException(Errno.EBADF, "fd " + fd);
        }
        fds.remove(fd);
        return e.file;
    }

    /** Removes every descriptor (exit), returning the files in descriptor order. */
    public synchronized List<KernelFile> clear() {
        final List<KernelFile> out = new ArrayList<>();
        for (Entry e : fds.values()) {
            if (e != RESERVED) {
                out.add(e.file);
            }
        }
        fds.clear();
        return out;
    }

    /** The open files, in descriptor order (one per descriptor; a shared file appears once per fd). */
    public synchronized List<KernelFile> files() {
        final List<KernelFile> out = new ArrayList<>();
        for (Entry e : fds.values()) {
            if (e != RESERVED) {
                out.add(e.file);
            }
        }
        return out;
    }

    public synchronized int size() {
        return fds.size();
    }
}
