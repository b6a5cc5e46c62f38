package org.iopersist.hw.vtd;

/**
 * The paging-structure caches (VT-d 6.2.3): non-leaf second-level entries, so an IOTLB miss can
 * start its walk below the top. One entry per cached directory entry, tagged by domain id:
 *
 * <pre>
 * key:   63      48 47  46 45 44                                 0
 *       +----------+---+-----+------------------------------------+
 *       |   DID    | V |level|  iova >> levelShift(level)         |
 *       +----------+---+-----+------------------------------------+
 * value: next-level table | R (bit 0) | W (bit 1)    (R/W: the AND down to and including this entry)
 * </pre>
 *
 * A level-L entry (L = 2: a PDE, 3: a PDPE, 4: a PML4E, 5: a PML5E) covers {@code levelSize(L)} of
 * IOVA and points at a level L-1 table. Only a domain-selective or global IOTLB invalidation, or a
 * page-selective one without the invalidation hint (IH = 0), removes them: IH = 1 is software's
 * promise that only leaves changed.
 */
public final class PagingStructureCache extends DomainTaggedCache {
    static final long NO_ENTRY = -1L;
    private static final long VALID = 1L << 47;
    private static final long TAG_MASK = (1L << 44) - 1;

    PagingStructureCache(final int capacity) {
        super(capacity);
    }

    static long key(final int did, final int level, final long iova) {
        return ((long) did << 48) | VALID | ((long) level << 44) | ((iova >>> SlPte.levelShift(level)) & TAG_MASK);
    }

    private static int levelOf(final long key) {
        return (int) (key >>> 44) & 7;
    }

    /** The level-{@code level} entry covering {@code iova} (table | R | W), or {@link #NO_ENTRY}. */
    long lookup(final int did, final int level, final long iova) {
        return cache.lookup(key(did, level, iova), NO_ENTRY);
    }

    int insert(final int did, final int level, final long iova, final long table, final boolean r, final boolean w) {
        return cache.insert(key(did, level, iova), table | (r ? 1 : 0) | (w ? 2 : 0), 0);
    }

    void remove(final int way, final int did, final int level, final long iova) {
        cache.remove(way, key(did, level, iova));
    }

    @Override
    long spanStart(final long key) {
        return (key & TAG_MASK) << SlPte.levelShift(levelOf(key));
    }

    @Override
    long spanSize(final long key) {
        return SlPte.levelSize(levelOf(key));
    }
}
