package org.iopersist.kernel.fs;

import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.MappableFile;
import org.iopersist.uapi.Errno;

/**
 * An open file description: what an fd points at. Several fds (and several processes, later) may
 * share one; {@link #release} runs when the last reference goes, as a driver's {@code release}.
 * Every operation a file does not support answers the errno Linux would.
 */
public interface KernelFile extends MappableFile {
    /** ioctl(2): {@code arg} is a user pointer (or value) in {@code process}'s address space. */
    default long ioctl(final UserProcess process, final int cmd, final long arg) {
        throw new KernelException(Errno.ENOTTY, "ioctl 0x" + Integer.toHexString(cmd) + " on " + describe());
    }

    /** read(2) at {@code offset}; returns bytes read. */
    default long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        throw new KernelException(Errno.EINVAL, "read on " + describe());
    }

    /** write(2) at {@code offset}; returns bytes written. */
    default long write(final UserProcess process, final long bufVa, final long count, final long offset) {
        throw new KernelException(Errno.EINVAL, "write on " + describe());
    }

    /** Whether read/write advance a file position (false for sysfs-like files read whole). */
    default boolean seekable() {
        return true;
    }

    /** ftruncate(2). */
    default void truncate(final long length) {
        throw new KernelException(Errno.EINVAL, "ftruncate on " + describe());
    }

    default long size() {
        return 0;
    }

    /** The last reference went away. Never fails. */
    default void release() {
    }

    @Override
    String describe();
}
