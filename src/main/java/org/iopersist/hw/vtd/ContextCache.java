package org.iopersist.hw.vtd;

/**
 * The context cache: source-id to the context entry (lo, hi) the unit last read for it. Only present
 * entries are cached (CAP.CM is 0), so a non-present to present change needs no invalidation, while
 * any change to a present entry does.
 */
public final class ContextCache {
    private static final long VALID = 1L << 32;
    private final TagCache cache;

    ContextCache(final int capacity) {
        this.cache = new TagCache(capacity);
    }

    private static long key(final int sid) {
        return VALID | (sid & 0xFFFF);
    }

    boolean lookup(final int sid, final long[] out) {
        return cache.lookup2(key(sid), out);
    }

    int insert(final int sid, final long lo, final long hi) {
        return cache.insert(key(sid), lo, hi);
    }

    void remove(final int way, final int sid) {
        cache.remove(way, key(sid));
    }

    int invalidateGlobal() {
        return cache.purge((k, lo, hi) -> true);
    }

    int invalidateDomain(final int did) {
        return cache.purge((k, lo, hi) -> ContextEntry.domainId(hi) == did);
    }

    /**
     * Device-selective, with the function mask: FM 0 compares all 16 bits, 1 ignores bit 2 of the
     * source-id, 2 bits 2:1, 3 bits 2:0.
     */
    int invalidateDevice(final int sid, final int fm) {
        final int ignore = fm == 0 ? 0 : ((1 << fm) - 1) << (3 - fm);
        final int keep = 0xFFFF & ~ignore;
        return cache.purge((k, lo, hi) -> (((int) k & keep) == (sid & keep)));
    }

    public int size() {
        return cache.size();
    }
}
