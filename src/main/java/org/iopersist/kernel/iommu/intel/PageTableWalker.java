package org.iopersist.kernel.iommu.intel;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.kernel.iommu.DomainOps;

/**
 * The one walker of a VT-d second-level page table: every read or write of a domain's tables goes
 * through here (what generic_pt's {@code iommu_pt.h} is to a Linux driver). Two ways in:
 * <ul>
 *   <li>a <b>range walk</b> ({@code pt_walk_range}): one descent per table page, in IOVA order,
 *       clipping the range at each level. It serves {@link #map} ({@code __map_range}), {@link #unmap}
 *       ({@code __unmap_range}), {@link #visitTables} ({@code __collect_tables}: handover, free,
 *       adoption, without reading the 4 KiB leaves) and {@link #forEachLeaf} (the scrub after a live
 *       update). Runs of leaves are written or cleared in one tight pass over their table;</li>
 *   <li>a <b>point lookup</b> ({@code pfn_to_dma_pte} down to the leaf, as
 *       {@code intel_iommu_iova_to_phys} uses it): {@link #lookup} from the top, lock-free.</li>
 * </ul>
 * Raw longs inside: {@code iova}, {@code phys}, {@code pte}; {@code last} is inclusive.
 *
 * <p>Memory ordering. A new table page is published with a release store of the entry pointing at it,
 * after it was zeroed. Leaves, and the zeroes that clear them, are written in runs: one release fence,
 * then single-copy-atomic plain 64-bit stores. Each store is then ordered after everything before the
 * fence, which is what a release store gave it; no walker depends on the order between two leaves,
 * and whatever must follow the run (an invalidation's tail pointer, a lock release) is itself a
 * release. (A release store per leaf keeps C2 from hoisting the segment's checks out of the loop:
 * it cost several ns an entry.)
 *
 * <p>Not thread safe except {@link #lookup}: a domain uses its walker under its lock; adoption has
 * one walker per handed-over domain on the booting thread.
 */
final class PageTableWalker {
    /** What {@link #visit} calls for each table page, before reading its entries. */
    @FunctionalInterface
    interface TableVisitor<X extends Exception> {
        void table(long phys, int level) throws X;

        /**
         * {@code count} level-{@code level} tables at consecutive frames from {@code phys}, pointed
         * at by consecutive entries of one table: how {@link #visitTables} reports the level-1
         * tables of a 4 KiB mapping, which a map allocates in a row.
         */
        default void tables(final long phys, final int count, final int level) throws X {
            for (int i = 0; i < count; i++) {
                table(phys + i * PAGE, level);
            }
        }
    }

    /**
     * Linux's {@code struct iommu_iotlb_gather}: the IOVA span an unmap cleared and the table pages it
     * unlinked. The caller invalidates the span, waits, and only then frees the pages.
     */
    static final class Gather {
        private long start = Long.MAX_VALUE;
        private long last = -1;
        private long[] pages = new long[16];
        private int pageCount;

        long start() {
            return start;
        }

        long last() {
            return last;
        }

        int pageCount() {
            return pageCount;
        }

        long page(final int i) {
            return pages[i];
        }

        void reset() {
            start = Long.MAX_VALUE;
            last = -1;
            pageCount = 0;
        }

        private void add(final long spanStart, final long spanLast) {
            start = Math.min(start, spanStart);
            last = Math.max(last, spanLast);
        }

        private void addPage(final long phys) {
            if (pageCount == pages.length) {
                pages = Arrays.copyOf(pages, pageCount * 2);
            }
            pages[pageCount++] = phys;
        }
    }

    private static final VarHandle PTE = PhysicalMemory.U64.varHandle();
    /**
     * Plain access in the tight loops over a table's entries. The layout declares no alignment, so
     * no access checks it (with the aligned layout that check stayed in the loop, a third of a
     * 256-entry map); every entry is 8-byte aligned, and an aligned access is then one 64-bit load
     * or store, as single-copy atomic as through {@link #PTE}.
     */
    private static final VarHandle PTE_RUN = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final int MAX_LEVELS = 5;
    private static final long PAGE = SlPte.levelSize(1);
    /** Where {@link #lookup} puts the leaf's level: bits 54:52, which the hardware ignores. */
    private static final int LEVEL_SHIFT = 52;
    private static final long LEVEL_BITS = 7L << LEVEL_SHIFT;
    /** {@link #descend} answers a table's address with its level in the low bits (a table is 4 KiB aligned). */
    private static final long AT_LEVEL = 7;
    /** {@link #leafRun} answers the entries it passed over {@code << 32 |} the leaves among them. */
    private static final long RUN_LEAVES = 0xFFFF_FFFFL;

    // What the current range walk does to the entries it meets.
    private static final int MAP = 0;
    private static final int UNMAP = 1;
    private static final int VISIT = 2;
    /** {@link #visitTables}: the table pages only; level-1 tables are listed, their entries not read. */
    private static final int TABLES = 3;
    /** {@link #forEachLeaf}: every leaf, with the R|W the whole walk allows. */
    private static final int LEAVES = 4;

    final long pgd;
    final int levels;
    private final PhysicalMemory memory;
    // SAFETY: the segment bounds-checks every access; PhysicalMemory's own accessors would only add messages.
    private final MemorySegment seg;
    private final TablePagePool pages;
    /** Bit {@code l} set: a leaf may sit at level {@code l} (1 always; 2 and 3 as SLLPS allows). */
    private final int leafLevels;

    // The current range walk: what it does, and its arguments; a walk does not nest.
    private int op;
    private long mapDelta; // MAP: phys - iova
    private long mapBits; // MAP: R/W of each leaf
    private long conflict; // MAP: the first IOVA found mapped already, or -1
    private Gather gather; // UNMAP
    private DomainOps.LeafVisitor leafVisitor; // LEAVES
    private static final int ENTRIES = 1 << SlPte.INDEX_BITS;
    /** Where PS sits: R is bit 0, W bit 1, so {@code (pte | pte >>> 1) & ~(pte >>> PS_SHIFT) & 1} is "a table entry". */
    private static final int PS_SHIFT = Long.numberOfTrailingZeros(SlPte.PS);
    /** TABLES: one level-2 table's entries, read in one copy. */
    private final long[] entries = new long[1 << SlPte.INDEX_BITS];
    /** LEAVES: rw[l] is the R|W the entries above a table at level l allow. */
    private final long[] rw = new long[MAX_LEVELS + 2];


    /** A walker that only reads the table at {@code pgd} ({@link #visit}, lookups): adoption's. */
    PageTableWalker(final PhysicalMemory memory, final long pgd, final int levels) {
        this(memory, null, pgd, levels, false, false);
    }

    /** A walker over a domain's table at {@code pgd}, mapping with the leaf sizes the domain allows. */
    PageTableWalker(final PhysicalMemory memory, final TablePagePool pagesOrNull, final long pgd, final int levels,
            final boolean leaf2M, final boolean leaf1G) {
        if (levels < 3 || levels > MAX_LEVELS) {
            throw new IllegalArgumentException(levels + "-level table");
        }
        this.memory = memory;
        this.seg = memory.segment();
        this.pages = pagesOrNull;
        this.pgd = pgd;
        this.levels = levels;
        this.leafLevels = 1 << 1 | (leaf2M ? 1 << 2 : 0) | (leaf1G ? 1 << 3 : 0);
    }

    // ------------------------------------------------------------------ range walks

    /**
     * Maps {@code [iova, last]} onto {@code phys} onwards with leaves of R/W {@code leafBits}, each the
     * largest the level, the alignment of both addresses and the range allow
     * ({@code hardware_largepage_caps}), allocating zeroed table pages for holes on the way
     * ({@code pfn_to_dma_pte}). A present table where a large leaf would fit is walked into, as Linux
     * does. Stops at the first present leaf in the way.
     *
     * @return bytes mapped, all below the first IOVA found mapped; {@code last - iova + 1} if none was
     */
    long map(final long iova, final long last, final long phys, final long leafBits) {
        op(MAP);
        mapDelta = phys - iova;
        mapBits = leafBits;
        conflict = -1;
        return range(iova, last);
    }

    /**
     * Clears every leaf that {@code [iova, last]} touches, whole even where the range ends inside it,
     * and unlinks every table page the range covers completely ({@code dma_pte_clear_level},
     * {@code __unmap_range}); what it cleared and unlinked goes into {@code g}, which the caller
     * flushes before it frees anything.
     *
     * @return bytes of the leaves cleared
     */
    long unmap(final long iova, final long last, final Gather g) {
        op(UNMAP);
        gather = g;
        try {
            return range(iova, last);
        } finally {
            gather = null;
        }
    }

    /**
     * Calls {@code v} for every table page, the pgd first, each before the pages below it.
     *
     * @return bytes mapped: the sum of the leaves' sizes
     */
    <X extends Exception> long visit(final TableVisitor<X> v) throws X {
        op(VISIT);
        return walk(pgd, levels, 0, (1L << SlPte.levelShift(levels + 1)) - 1, v);
    }

    /**
     * Calls {@code v} for every table page, as {@link #visit}, without reading the entries of level-1
     * tables: the cost follows the table pages, not the 4 KiB leaves (512 to a page). What adoption
     * claims at boot, and what a handover preserves.
     */
    <X extends Exception> void visitTables(final TableVisitor<X> v) throws X {
        op(TABLES);
        walk(pgd, levels, 0, (1L << SlPte.levelShift(levels + 1)) - 1, v);
    }

    /**
     * Every leaf in IOVA order, with the R|W the whole walk allows, as the hardware computes them: the
     * scrub's reader of adopted tables. Under the domain's lock, as every range walk.
     */
    void forEachLeaf(final DomainOps.LeafVisitor v) {
        op(LEAVES);
        leafVisitor = v;
        rw[levels] = SlPte.R | SlPte.W;
        try {
            walk(pgd, levels, 0, (1L << SlPte.levelShift(levels + 1)) - 1, null);
        } finally {
            leafVisitor = null;
        }
    }

    /** Every table page, the pgd first: what a handover preserves, and what freeing the domain frees. */
    long[] tablePages() {
        final long[][] out = {new long[16]};
        final int[] n = {0};
        visitTables((phys, level) -> {
            if (n[0] == out[0].length) {
                out[0] = Arrays.copyOf(out[0], n[0] * 2);
            }
            out[0][n[0]++] = phys;
        });
        return Arrays.copyOf(out[0], n[0]);
    }

    /**
     * A map or unmap: one descent to the table where {@code [start, last]} spans several entries or
     * covers one whole (a single 4 KiB call reads one entry per level), then the walk from there.
     */
    private long range(final long start, final long last) {
        int stop = levels;
        for (; stop > 1; stop--) {
            final long mask = SlPte.levelSize(stop) - 1;
            if (((start ^ last) & ~mask) != 0 || ((start & mask) == 0 && ((last + 1) & mask) == 0)) {
                break;
            }
        }
        final long at = descend(start, stop, op == MAP);
        if ((at & AT_LEVEL) == 1) {
            return leaves(at & ~AT_LEVEL, start, last);
        }
        return walk(at & ~AT_LEVEL, (int) (at & AT_LEVEL), start, last, null);
    }

    private void op(final int what) {
        op = what;
        // Orders every store of the walk after what came before: see the class comment.
        VarHandle.releaseFence();
    }

    /** The range walk: entries of {@code table} (at {@code level}) that {@code [start, last]} touches. */
    private <X extends Exception> long walk(final long table, final int level, final long start, final long last,
            final TableVisitor<X> visitor) throws X {
        if (visitor != null) {
            visitor.table(table, level);
        }
        if (level == 1) {
            return op == TABLES ? 0 : leaves(table, start, last);
        }
        if (op == TABLES && level == 2) {
            return leafTables(table, visitor);
        }
        final int shift = SlPte.levelShift(level);
        final long slot = 1L << shift;
        final long base = start & -(slot << SlPte.INDEX_BITS); // the IOVA of entry 0
        final int end = SlPte.index(last, level);
        // The last entry is whole iff the range runs to its end.
        final int lastWhole = ((last + 1) & (slot - 1)) == 0 ? end : end - 1;
        long bytes = 0;
        for (int idx = SlPte.index(start, level); idx <= end; idx++) {
            if (op != MAP) {
                // Leaves and holes in one pass, up to the next table entry.
                final long run = leafRun(table + (long) idx * SlPte.SIZE, level, end - idx + 1, base + ((long) idx << shift));
                bytes += (run & RUN_LEAVES) << shift;
                idx += (int) (run >>> 32);
                if (idx > end) {
                    break;
                }
            }
            final long entry = table + (long) idx * SlPte.SIZE;
            final long slotStart = base + ((long) idx << shift);
            final boolean whole = slotStart >= start && idx <= lastWhole;
            long pte = (long) PTE.get(seg, entry);
            if (op == MAP) {
                if (whole && !SlPte.present(pte) && (leafLevels & 1 << level) != 0 && ((slotStart + mapDelta) & (slot - 1)) == 0) {
                    final int n = writeLeaves(entry, level, lastWhole - idx + 1, slotStart + mapDelta);
                    bytes += (long) n << shift;
                    idx += n - 1;
                    continue;
                }
                if (SlPte.present(pte) && SlPte.largeLeaf(pte)) {
                    conflict = Math.max(start, slotStart);
                    return bytes;
                }
                if (!SlPte.present(pte)) {
                    pte = SlPte.encodeTable(pages.allocZeroedPage());
                    memory.store64Release(entry, pte);
                }
            }
            final long child = SlPte.address(pte);
            rw[level - 1] = rw[level] & pte;
            bytes += walk(child, level - 1, Math.max(start, slotStart), Math.min(last, slotStart + slot - 1), visitor);
            if (op == MAP && conflict >= 0) {
                return bytes;
            }
            if (op == UNMAP && whole) {
                PTE.set(seg, entry, 0L);
                gather.add(slotStart, slotStart + slot - 1);
                gather.addPage(child);
            }
        }
        return bytes;
    }

    /**
     * TABLES at level 2, the level that dominates a table of 4 KiB leaves (one entry per level-1
     * table): one bulk read of the whole table, then the level-1 tables it points at, in order.
     */
    private <X extends Exception> long leafTables(final long table, final TableVisitor<X> visitor) throws X {
        // A table of large leaves, the whole of a 2 MiB mapping, points at no table: one pass with
        // no branch (present and not PS, or-ed over the entries) says so.
        final MemorySegment mem = seg;
        long tables = 0;
        for (int k = 0; k < ENTRIES; k++) {
            final long pte = (long) PTE_RUN.get(mem, table + k * SlPte.SIZE);
            tables |= (pte | pte >>> 1) & ~(pte >>> PS_SHIFT) & 1;
        }
        if (tables == 0) {
            return 0;
        }
        final long[] e = entries;
        MemorySegment.copy(seg, PhysicalMemory.U64, table, e, 0, e.length);
        int i = 0;
        while (i < e.length) {
            if (!SlPte.present(e[i]) || SlPte.largeLeaf(e[i])) {
                i++;
                continue;
            }
            final long first = SlPte.address(e[i]);
            int n = 1;
            while (i + n < e.length && SlPte.present(e[i + n]) && !SlPte.largeLeaf(e[i + n])
                    && SlPte.address(e[i + n]) == first + n * PAGE) {
                n++;
            }
            visitor.tables(first, n, 1);
            i += n;
        }
        return 0;
    }

    /** A level-1 table, where every entry is a leaf or a hole: one pass over {@code [start, last]}. */
    private long leaves(final long table, final long start, final long last) {
        final int first = SlPte.index(start, 1);
        final int count = SlPte.index(last, 1) - first + 1;
        final long entry = table + (long) first * SlPte.SIZE;
        if (op == MAP) {
            final int n = writeLeaves(entry, 1, count, start + mapDelta);
            if (n < count) {
                conflict = start + n * PAGE;
            }
            return n * PAGE;
        }
        return (leafRun(entry, 1, count, start) & RUN_LEAVES) * PAGE;
    }

    /** MAP: up to {@code max} leaves at {@code level} from {@code entry} on, while the entries are holes; how many. */
    private int writeLeaves(final long entry, final int level, final int max, final long phys) {
        final long bits = mapBits | (level > 1 ? SlPte.PS : 0);
        final int shift = SlPte.levelShift(level);
        final MemorySegment mem = seg;
        // Two passes, each without an early exit, so that C2 unrolls them: is any entry present,
        // then write them all. Int-counted loops with addresses computed from the counter, so the
        // segment's checks are hoisted.
        long any = 0;
        for (int i = 0; i < max; i++) {
            any |= (long) PTE_RUN.get(mem, entry + i * SlPte.SIZE);
        }
        final int n = SlPte.present(any) ? firstPresent(entry, max) : max;
        for (int i = 0; i < n; i++) {
            PTE_RUN.set(mem, entry + i * SlPte.SIZE, (phys + ((long) i << shift)) | bits);
        }
        return n;
    }

    /** The index of the first present entry of the {@code max} from {@code entry}, or {@code max}. */
    private int firstPresent(final long entry, final int max) {
        int n = 0;
        while (n < max && !SlPte.present((long) PTE_RUN.get(seg, entry + n * SlPte.SIZE))) {
            n++;
        }
        return n;
    }

    /**
     * UNMAP or VISIT: up to {@code max} entries from {@code entry} (at {@code level}, mapping
     * {@code iova} on) while each is a leaf or a hole; UNMAP clears the leaves and gathers their span.
     * Returns the entries passed over {@code << 32 |} the leaves among them.
     */
    private long leafRun(final long entry, final int level, final int max, final long iova) {
        final boolean clear = op == UNMAP;
        if (clear && level == 1) {
            return clearLeaves(entry, max, iova);
        }
        final MemorySegment mem = seg;
        long first = -1;
        long lastFound = -1;
        long leaves = 0;
        int i = 0;
        for (; i < max; i++) {
            final long e = entry + i * SlPte.SIZE;
            final long pte = (long) PTE_RUN.get(mem, e);
            if (!SlPte.present(pte)) {
                continue;
            }
            if (level > 1 && !SlPte.largeLeaf(pte)) {
                break;
            }
            if (clear) {
                PTE_RUN.set(mem, e, 0L);
            } else if (op == LEAVES) {
                final int shift = SlPte.levelShift(level);
                // R and W sit where IOMMU_READ and IOMMU_WRITE do.
                leafVisitor.leaf(iova + ((long) i << shift), SlPte.address(pte), 1L << shift, (int) (rw[level] & pte & (SlPte.R | SlPte.W)));
            }
            if (leaves++ == 0) {
                first = i;
            }
            lastFound = i;
        }
        if (clear && leaves > 0) {
            final int shift = SlPte.levelShift(level);
            gather.add(iova + (first << shift), iova + ((lastFound + 1) << shift) - 1);
        }
        return (long) i << 32 | leaves;
    }

    /**
     * UNMAP in a level-1 table, where every entry is a leaf or a hole: count the leaves, then clear
     * every entry, each pass without an early exit (see {@link #writeLeaves}); the span gathered
     * runs from the first leaf to the last.
     */
    private long clearLeaves(final long entry, final int max, final long iova) {
        final MemorySegment mem = seg;
        long leaves = 0;
        for (int i = 0; i < max; i++) {
            leaves += SlPte.present((long) PTE_RUN.get(mem, entry + i * SlPte.SIZE)) ? 1 : 0;
        }
        if (leaves == 0) {
            return (long) max << 32;
        }
        final int first = firstPresent(entry, max);
        int last = max - 1;
        while (!SlPte.present((long) PTE_RUN.get(mem, entry + last * SlPte.SIZE))) {
            last--;
        }
        for (int i = first; i <= last; i++) {
            PTE_RUN.set(mem, entry + i * SlPte.SIZE, 0L);
        }
        gather.add(iova + first * PAGE, iova + (last + 1) * PAGE - 1);
        return (long) max << 32 | leaves;
    }

    // ------------------------------------------------------------------ descent and point lookups

    /**
     * {@code pfn_to_dma_pte}: from the pgd follows table entries towards {@code iova} down to the table at level
     * {@code stop}, or to the first leaf or hole above it; {@code alloc} puts a zeroed table page in
     * each hole instead. Acquire loads: the lookups run without the domain's lock.
     *
     * @return the table it stopped in {@code |} its level
     */
    private long descend(final long iova, final int stop, final boolean alloc) {
        int level = levels;
        long table = pgd;
        for (; level > stop; level--) {
            final long entry = table + (long) SlPte.index(iova, level) * SlPte.SIZE;
            long pte = (long) PTE.getAcquire(seg, entry);
            if (!SlPte.present(pte)) {
                if (!alloc) {
                    break;
                }
                pte = SlPte.encodeTable(pages.allocZeroedPage());
                memory.store64Release(entry, pte);
            } else if (SlPte.largeLeaf(pte)) {
                break;
            }
            table = SlPte.address(pte);
        }
        return table | level;
    }

    /**
     * The leaf translating {@code iova}: its entry, with its level in bits 54:52 (which the hardware
     * ignores; cleared here first), or 0 where a hole ends the walk. From the pgd and keeping no
     * state: safe without the domain's lock, as {@code iommu_iova_to_phys} is.
     */
    long lookup(final long iova) {
        return leafAt(descend(iova, 1, false), iova);
    }

    private long leafAt(final long at, final long iova) {
        final int level = (int) (at & AT_LEVEL);
        final long pte = (long) PTE.getAcquire(seg, (at & ~AT_LEVEL) + (long) SlPte.index(iova, level) * SlPte.SIZE);
        // Not a leaf (a table a racing map just put in the hole descend saw): nothing translated then.
        if (!SlPte.present(pte) || (level > 1 && !SlPte.largeLeaf(pte))) {
            return 0;
        }
        return (pte & ~LEVEL_BITS) | (long) level << LEVEL_SHIFT;
    }

    /** The level of a leaf {@link #lookup} found: 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB). */
    static int level(final long leaf) {
        return (int) ((leaf & LEVEL_BITS) >>> LEVEL_SHIFT);
    }

    /** The size of a leaf {@link #lookup} found. */
    static long size(final long leaf) {
        return SlPte.levelSize(level(leaf));
    }
}
