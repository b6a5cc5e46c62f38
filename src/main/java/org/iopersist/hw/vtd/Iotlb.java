package org.iopersist.hw.vtd;

/**
 * The IOTLB: leaf translations tagged by domain id, one entry per leaf of its own size (4 KiB,
 * 2 MiB, 1 GiB). A lookup probes the three sizes, smallest first.
 *
 * <pre>
 * key:   63      48 47  46 45 44                                 0
 *       +----------+---+-----+------------------------------------+
 *       |   DID    | V |level|  iova >> levelShift(level)         |
 *       +----------+---+-----+------------------------------------+
 * value: leaf page base | R (bit 0) | W (bit 1)
 * </pre>
 *
 * Entries are the result of a complete walk, so they carry the AND of R/W along the walk.
 */
public final class Iotlb extends DomainTaggedCache {
    static final long VALID = 1L << 47;
    static final long NO_ENTRY = -1L;
    private static final long GFN_MASK = (1L << 45) - 1;

    Iotlb(final int capacity) {
        super(capacity);
    }

    static long key(final int did, final int level, final long iova) {
        return ((long) did << 48) | VALID | ((long) level << 45) | ((iova >>> SlPte.levelShift(level)) & GFN_MASK);
    }

    static int levelOf(final long key) {
        return (int) (key >>> 45) & 3;
    }

    /** First IOVA of the leaf a key covers. */
    static long iovaOf(final long key) {
        return (key & GFN_MASK) << SlPte.levelShift(levelOf(key));
    }

    /** The cached leaf value (page base | R | W) for {@code (did, iova)}, or {@link #NO_ENTRY}. */
    long lookup(final int did, final long iova) {
        for (int level = 1; level <= 3; level++) {
            final long v = cache.lookup(key(did, level, iova), NO_ENTRY);
            if (v != NO_ENTRY) {
                return v | ((long) level << 2);
            }
        }
        return NO_ENTRY;
    }

    /** Level encoded by {@link #lookup} into bits 3:2 of its result. */
    static int levelOfValue(final long value) {
        return (int) (value >>> 2) & 3;
    }

    int insert(final int did, final int level, final long iova, final long pageBase, final boolean r, final boolean w) {
        return cache.insert(key(did, level, iova), pageBase | (r ? 1 : 0) | (w ? 2 : 0), 0);
    }

    void remove(final int way, final int did, final int level, final long iova) {
        cache.remove(way, key(did, level, iova));
    }

    @Override
    long spanStart(final long key) {
        return iovaOf(key);
    }

    @Override
    long spanSize(final long key) {
        return SlPte.levelSize(levelOf(key));
    }
}
