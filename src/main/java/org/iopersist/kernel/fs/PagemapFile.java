package org.iopersist.kernel.fs;

import org.iopersist.kernel.mm.Vma;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * {@code /proc/self/pagemap}: one u64 per virtual page at offset {@code (va / 4096) * 8}; bit 63 =
 * present, bits 54:0 = PFN. This is how a process finds the frames behind its own mappings and so
 * reaches its memory (by mapping those frames of the machine's memory file): its MMU, in effect.
 */
final class PagemapFile implements KernelFile {
    static final long PRESENT = 1L << 63;
    static final long PFN_MASK = (1L << 55) - 1;
    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final UserProcess owner;

    PagemapFile(final UserProcess owner) {
        this.owner = owner;
    }

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        if ((offset & 7) != 0 || (count & 7) != 0) {
            throw new KernelException(Errno.EINVAL, "pagemap reads are whole u64 entries");
        }
        final int entries = (int) Math.min(count / 8, 1 << 16);
        final MemorySegment out = MemorySegment.ofArray(new long[entries]);
        for (int i = 0; i < entries; i++) {
            final long va = ((offset >>> 3) + i) << Vma.PAGE_SHIFT;
            final Vma v = owner.mm().find(va);
            out.set(LE64, i * 8L, v == null ? 0 : PRESENT | ((v.frameOf(va) >>> Vma.PAGE_SHIFT) & PFN_MASK));
        }
        process.mm().copyToUser(bufVa, out, 0, entries * 8L);
        return entries * 8L;
    }

    @Override
    public String describe() {
        return "/proc/" + owner.pid() + "/pagemap";
    }
}
