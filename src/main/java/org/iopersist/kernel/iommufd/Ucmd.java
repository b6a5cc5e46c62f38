package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;

/**
 * One iommufd ioctl in flight: the kernel's copy of the user struct (zero-extended to the kernel's
 * size), the caller, and where to copy the answer back. Handlers read and write {@link #cmd} through
 * the struct's class in {@code org.iopersist.uapi} ({@code IommuIoasMap.iova(u.cmd)}).
 */
final class Ucmd {
    final IommufdCtx ctx;
    final UserProcess process;
    final long userVa;
    final long userSize;
    final MemorySegment cmd;

    Ucmd(final IommufdCtx ctx, final UserProcess process, final long userVa, final long userSize,
         final MemorySegment cmd) {
        this.ctx = ctx;
        this.process = process;
        this.userVa = userVa;
        this.userSize = userSize;
        this.cmd = cmd;
    }

    /**
     * iommufd_ucmd_respond: copies the kernel struct back, {@code min(user size, kernel size)} bytes.
     *
     * @throws KernelException EFAULT if the user struct is not writable
     */
    void respond() {
        process.mm().copyToUser(userVa, cmd, 0, Math.min(userSize, cmd.byteSize()));
    }

    static KernelException unsupported(final String what) {
        return new KernelException(Errno.EOPNOTSUPP, what);
    }
}
