package org.iopersist.kernel;

import org.iopersist.uapi.Errno;

/**
 * The one error type of the kernel: a Linux errno plus a context message with the values that
 * explain it ({@code name=value}, addresses in hex). It crosses the syscall boundary as
 * {@code -errno}; the message stays in the kernel log.
 */
public final class KernelException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final Errno errno;

    public KernelException(final Errno errno, final String context) {
        super(errno.name() + ": " + context, null, false, false);
        this.errno = errno;
    }

    public Errno errno() {
        return errno;
    }
}
