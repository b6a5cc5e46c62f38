package org.iopersist.uapi;

/** A syscall that returned {@code -errno}, as seen by a process. */
public final class ErrnoException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int errno;

    public ErrnoException(final int errno, final String what) {
        super(what + ": " + (Errno.of(errno) != null ? Errno.of(errno).name() : "errno " + errno));
        this.errno = errno;
    }

    public int errno() {
        return errno;
    }

    /** The errno as the enum, or null for a number the model does not name. */
    public Errno error() {
        return Errno.of(errno);
    }
}
