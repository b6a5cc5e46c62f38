package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import org.iopersist.kernel.fs.UserProcess;

/**
 * The user's dirty bitmap of IOMMU_HWPT_GET_DIRTY_BITMAP ({@code iova_bitmap.c}): bit n stands for
 * {@code [iova + n * pageSize, iova + (n + 1) * pageSize)}, bits counted from the first byte at the
 * user's address (which need not be aligned), least significant first. Bits are only ever set:
 * what the user had in the bitmap stays.
 */
final class IovaBitmap {
    private final long iova;
    private final long length;
    private final int pgshift;
    private final BitSet bits = new BitSet();

    IovaBitmap(final long iova, final long length, final long pageSize) {
        if (Long.compareUnsigned(length >>> Long.numberOfTrailingZeros(pageSize), Integer.MAX_VALUE) > 0) {
            throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.ENOMEM, "a bitmap of more than 2^31 bits");
        }
        this.iova = iova;
        this.length = length;
        this.pgshift = Long.numberOfTrailingZeros(pageSize);
    }

    /** iova_bitmap_set: {@code [start, start + size)} is dirty; what lies outside the bitmap's range is dropped. */
    void set(final long start, final long size) {
        final long lo = Long.compareUnsigned(start, iova) < 0 ? iova : start;
        final long hi = Long.compareUnsigned(start + size - 1, iova + length - 1) > 0 ? iova + length - 1 : start + size - 1;
        if (Long.compareUnsigned(lo, hi) > 0) {
            return;
        }
        bits.set((int) ((lo - iova) >>> pgshift), (int) ((hi - iova) >>> pgshift) + 1);
    }

    /** ORs the bits set into the user's bitmap at {@code dataVa}. @throws org.iopersist.kernel.KernelException EFAULT */
    void writeTo(final UserProcess p, final long dataVa) {
        if (bits.isEmpty()) {
            return;
        }
        final int firstByte = bits.nextSetBit(0) / 8;
        final int lastByte = (bits.length() - 1) / 8;
        final byte[] user = new byte[lastByte - firstByte + 1];
        final MemorySegment seg = MemorySegment.ofArray(user);
        p.mm().copyFromUser(dataVa + firstByte, seg, 0, user.length);
        final byte[] mine = bits.toByteArray();
        for (int i = firstByte; i <= lastByte && i < mine.length; i++) {
            user[i - firstByte] |= mine[i];
        }
        p.mm().copyToUser(dataVa + firstByte, seg, 0, user.length);
    }
}
