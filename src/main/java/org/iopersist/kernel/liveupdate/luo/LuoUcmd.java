package org.iopersist.kernel.liveupdate.luo;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;

/**
 * One LUO ioctl in flight ({@code struct luo_ucmd}): the user's {@code size}, and the kernel's copy
 * of the struct made by {@code copy_struct_from_user}'s rules, which the device and the session
 * dispatchers apply after their own checks.
 */
final class LuoUcmd {
    final UserProcess process;
    final long userVa;
    final long userSize;
    final MemorySegment cmd;

    private LuoUcmd(final UserProcess process, final long userVa, final long userSize, final MemorySegment cmd) {
        this.process = process;
        this.userVa = userVa;
        this.userSize = userSize;
        this.cmd = cmd;
    }

    /** {@code get_user(ucmd.user_size, ...)}: the struct's leading u32. @throws KernelException EFAULT */
    static long userSize(final UserProcess p, final long va, final Arena arena) {
        final MemorySegment b = arena.allocate(4);
        p.mm().copyFromUser(va, b, 0, 4);
        return Integer.toUnsignedLong(b.get(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED
                .withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 0));
    }

    /**
     * copy_struct_from_user: a shorter user struct reads as zero-extended; a longer one must be zero
     * past the kernel's size (E2BIG), checked before anything is copied; EFAULT for bad memory.
     */
    static LuoUcmd copyIn(final UserProcess p, final long va, final long userSize, final long kernelSize, final Arena arena) {
        final MemorySegment cmd = arena.allocate(kernelSize, 8);
        if (userSize > kernelSize) {
            final long tail = userSize - kernelSize;
            if (tail > 1 << 20) {
                throw new KernelException(Errno.E2BIG, "struct larger than the kernel's by " + tail + " bytes");
            }
            final byte[] b = new byte[(int) tail];
            p.mm().copyFromUser(va + kernelSize, MemorySegment.ofArray(b), 0, tail);
            for (byte x : b) {
                if (x != 0) {
                    throw new KernelException(Errno.E2BIG, "non-zero bytes beyond the kernel's struct");
                }
            }
        }
        p.mm().copyFromUser(va, cmd, 0, Math.min(userSize, kernelSize));
        return new LuoUcmd(p, va, userSize, cmd);
    }

    /** luo_ucmd_respond: copies back {@code min(user size, kernel size)} bytes. @throws KernelException EFAULT */
    void respond() {
        process.mm().copyToUser(userVa, cmd, 0, Math.min(userSize, cmd.byteSize()));
    }
}
