package org.iopersist.kernel.iommufd;

import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/** The overflow-checked arithmetic every IOVA computation goes through. */
final class IovaMath {
    private IovaMath() {
    }

    /** {@code iova + length - 1}, or EOVERFLOW if it wraps (an IOVA can reach U64_MAX). */
    static long lastOf(final long iova, final long length) {
        if (length == 0) {
            throw new KernelException(Errno.EINVAL, "length=0");
        }
        final long last = iova + (length - 1);
        if (Long.compareUnsigned(last, iova) < 0) {
            throw new KernelException(Errno.EOVERFLOW, String.format("iova=0x%x length=0x%x wraps", iova, length));
        }
        return last;
    }

    /**
     * EOVERFLOW if any of {@code values} is ULONG_MAX, the value ioas.c refuses in a uAPI length or
     * IOVA before anything else; {@code names} says which fields, for the message.
     */
    static void checkNotUlongMax(final String names, final long... values) {
        for (long v : values) {
            if (v == -1L) {
                throw new KernelException(Errno.EOVERFLOW, names + " is ULONG_MAX");
            }
        }
    }

    /** Rounds up to a power of two; caller guarantees {@code v <= 2^63}. */
    static long roundupPowerOfTwo(final long v) {
        if (v <= 1) {
            return 1;
        }
        return Long.highestOneBit(v - 1) << 1;
    }

    static boolean lt(final long a, final long b) {
        return Long.compareUnsigned(a, b) < 0;
    }

    static boolean le(final long a, final long b) {
        return Long.compareUnsigned(a, b) <= 0;
    }
}
