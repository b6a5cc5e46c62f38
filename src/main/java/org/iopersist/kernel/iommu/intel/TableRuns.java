package org.iopersist.kernel.iommu.intel;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.SlPte;

/**
 * A second-level table read from outside the driver, for tools that look at a machine (the
 * {@code inspect} command): the driver's own {@link PageTableWalker}, read-only, with its leaves
 * merged into runs. It takes no lock and reads with the walker's loads, so on a live machine it
 * shows the tables as they were while it passed; a table page outside memory ends the walk with an
 * {@link IllegalStateException}.
 */
public final class TableRuns {
    private TableRuns() {
    }

    /**
     * Leaves that continue each other: IOVA and physical address contiguous, the same leaf size and
     * the same permissions.
     *
     * @param iova     first IOVA
     * @param phys     where it lands
     * @param length   bytes
     * @param prot     R|W as the whole walk allows ({@code SlPte.R}, {@code SlPte.W})
     * @param leafSize bytes of each leaf (4 KiB, 2 MiB or 1 GiB)
     */
    public record Run(long iova, long phys, long length, int prot, long leafSize) {
        public long leaves() {
            return length / leafSize;
        }
    }

    /** Every run of the {@code levels}-level table at {@code pgd}, in IOVA order. */
    public static List<Run> of(final PhysicalMemory memory, final long pgd, final int levels) {
        final List<Run> out = new ArrayList<>();
        final long[] cur = {-1, 0, 0, 0, 0}; // iova, phys, length, prot, leaf size
        final PageTableWalker walker = new PageTableWalker(memory, pgd, levels);
        try {
            walker.forEachLeaf((iova, phys, size, prot) -> {
                if (cur[0] >= 0 && cur[0] + cur[2] == iova && cur[1] + cur[2] == phys && cur[3] == prot && cur[4] == size) {
                    cur[2] += size;
                    return;
                }
                if (cur[0] >= 0) {
                    out.add(new Run(cur[0], cur[1], cur[2], (int) cur[3], cur[4]));
                }
                cur[0] = iova;
                cur[1] = phys;
                cur[2] = size;
                cur[3] = prot;
                cur[4] = size;
            });
        } catch (IndexOutOfBoundsException e) {
            throw new IllegalStateException(String.format("the table at 0x%x points outside memory", pgd), e);
        }
        if (cur[0] >= 0) {
            out.add(new Run(cur[0], cur[1], cur[2], (int) cur[3], cur[4]));
        }
        return out;
    }

    /** Table pages of the table at {@code pgd}, the pgd first: what a handover of it preserves. */
    public static long tablePages(final PhysicalMemory memory, final long pgd, final int levels) {
        try {
            return new PageTableWalker(memory, pgd, levels).tablePages().length;
        } catch (IndexOutOfBoundsException e) {
            throw new IllegalStateException(String.format("the table at 0x%x points outside memory", pgd), e);
        }
    }

    /** R and W as {@link Run#prot} holds them, e.g. {@code rw}, {@code r-}. */
    public static String protText(final int prot) {
        return ((prot & SlPte.R) != 0 ? "r" : "-") + ((prot & SlPte.W) != 0 ? "w" : "-");
    }
}
