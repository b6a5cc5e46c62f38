package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;

/**
 * One iommufd ioctl in flight: the kernel's copy of the user struct (zero-extended to the kernel's
 * size), the caller, and where to copy the answer back. Accessors name fields as the header does.
 */
final class Ucmd {
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    final IommufdCtx ctx;
    final UserProcess process;
    final long userVa;
    final long userSize;
    final StructLayout layout;
    final MemorySegment cmd;

    Ucmd(final IommufdCtx ctx, final UserProcess process, final long userVa, final long userSize,
         final StructLayout layout, final MemorySegment cmd) {
        this.ctx = ctx;
        this.process = process;
        this.userVa = userVa;
        this.userSize = userSize;
        this.layout = layout;
        this.cmd = cmd;
    }

    private long off(final String field) {
        return layout.byteOffset(java.lang.foreign.MemoryLayout.PathElement.groupElement(field));
    }

    int u32(final String field) {
        return cmd.get(U32, off(field));
    }

    int u16(final String field) {
        return Short.toUnsignedInt(cmd.get(U16, off(field)));
    }

    long u64(final String field) {
        return cmd.get(U64, off(field));
    }

    void putU32(final String field, final int v) {
        cmd.set(U32, off(field), v);
    }

    void putU64(final String field, final long v) {
        cmd.set(U64, off(field), v);
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
