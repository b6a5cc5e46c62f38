package org.iopersist.hw.vtd;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A bounded, set-associative cache of {@code key -> (v0, v1)}, the storage of both the IOTLB and the
 * context cache. Keys are non-zero longs (0 marks an empty way). Four ways per set; a full set evicts
 * round-robin, as small hardware caches do.
 *
 * <p>Concurrency: device threads look up and insert while the invalidation engine purges. Each way
 * is guarded by a sequence word: odd while a writer holds it. Readers never block: they read the
 * sequence (acquire), key and values, then the sequence again, and take the entry only if it did not
 * change. Inserting writers take the way with a CAS and give up on contention (a cache may always
 * decline to cache); purging writers spin until they hold it, since an invalidation must not be
 * skipped. Every sequence change is a volatile access, so a purge that runs after an insert in the
 * synchronization order sees it (the unit's invalidation protocol relies on that).
 *
 * <p>The lookup path allocates nothing.
 */
final class TagCache {
    static final int WAYS = 4;
    static final int MISS = -1;
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);

    private final int sets;
    private final long[] seq;
    private final long[] keys;
    private final long[] v0;
    private final long[] v1;
    private final int[] victim;

    TagCache(final int capacity) {
        if (capacity < WAYS || Integer.bitCount(capacity) != 1) {
            throw new IllegalArgumentException("cache capacity=" + capacity + " must be a power of two >= " + WAYS);
        }
        this.sets = capacity / WAYS;
        this.seq = new long[capacity];
        this.keys = new long[capacity];
        this.v0 = new long[capacity];
        this.v1 = new long[capacity];
        this.victim = new int[sets];
    }

    int capacity() {
        return keys.length;
    }

    private int setBase(final long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        h ^= h >>> 29;
        return (int) (h & (sets - 1)) * WAYS;
    }

    /** Returns v0 of a consistent entry for {@code key}, or {@code missValue}. */
    long lookup(final long key, final long missValue) {
        final int base = setBase(key);
        for (int way = base; way < base + WAYS; way++) {
            final long s1 = (long) LONGS.getAcquire(seq, way);
            if ((s1 & 1) != 0 || (long) LONGS.getAcquire(keys, way) != key) {
                continue;
            }
            final long value = (long) LONGS.getAcquire(v0, way);
            VarHandle.loadLoadFence();
            if ((long) LONGS.getVolatile(seq, way) == s1) {
                return value;
            }
        }
        return missValue;
    }

    /**
     * Looks up {@code key} and copies both values into {@code out[0..1]}; returns false on a miss.
     */
    boolean lookup2(final long key, final long[] out) {
        final int base = setBase(key);
        for (int way = base; way < base + WAYS; way++) {
            final long s1 = (long) LONGS.getAcquire(seq, way);
            if ((s1 & 1) != 0 || (long) LONGS.getAcquire(keys, way) != key) {
                continue;
            }
            final long a = (long) LONGS.getAcquire(v0, way);
            final long b = (long) LONGS.getAcquire(v1, way);
            VarHandle.loadLoadFence();
            if ((long) LONGS.getVolatile(seq, way) == s1) {
                out[0] = a;
                out[1] = b;
                return true;
            }
        }
        return false;
    }

    /** Inserts; returns the way used, or {@link #MISS} if it declined because of contention. */
    int insert(final long key, final long a, final long b) {
        final int base = setBase(key);
        int way = -1;
        for (int w = base; w < base + WAYS; w++) {
            final long k = (long) LONGS.getAcquire(keys, w);
            if (k == key || k == 0) {
                way = w;
                break;
            }
        }
        if (way < 0) {
            final int set = base / WAYS;
            final int r = victim[set];
            victim[set] = (r + 1) & (WAYS - 1); // racy round-robin is fine: any victim is valid
            way = base + r;
        }
        final long s = (long) LONGS.getVolatile(seq, way);
        if ((s & 1) != 0 || !LONGS.compareAndSet(seq, way, s, s + 1)) {
            return MISS;
        }
        LONGS.setVolatile(keys, way, key);
        LONGS.setVolatile(v0, way, a);
        LONGS.setVolatile(v1, way, b);
        LONGS.setVolatile(seq, way, s + 2);
        return way;
    }

    /** Removes the entry in {@code way} if it still holds {@code key}. */
    void remove(final int way, final long key) {
        final long s = acquire(way);
        if ((long) LONGS.getVolatile(keys, way) == key) {
            LONGS.setVolatile(keys, way, 0L);
        }
        LONGS.setVolatile(seq, way, s + 2);
    }

    private long acquire(final int way) {
        while (true) {
            final long s = (long) LONGS.getVolatile(seq, way);
            if ((s & 1) == 0 && LONGS.compareAndSet(seq, way, s, s + 1)) {
                return s;
            }
            Thread.onSpinWait();
        }
    }

    /** What a purge matches: a predicate over a key and its values, allocation-free by contract. */
    interface Matcher {
        boolean matches(long key, long v0, long v1);
    }

    /** Removes every entry the matcher selects; returns how many. */
    int purge(final Matcher matcher) {
        int removed = 0;
        for (int way = 0; way < keys.length; way++) {
            if ((long) LONGS.getVolatile(keys, way) == 0) {
                // An insert in progress holds the sequence odd; wait for it so it cannot slip past.
                if (((long) LONGS.getVolatile(seq, way) & 1) == 0) {
                    continue;
                }
            }
            final long s = acquire(way);
            final long k = (long) LONGS.getVolatile(keys, way);
            if (k != 0 && matcher.matches(k, (long) LONGS.getVolatile(v0, way), (long) LONGS.getVolatile(v1, way))) {
                LONGS.setVolatile(keys, way, 0L);
                removed++;
            }
            LONGS.setVolatile(seq, way, s + 2);
        }
        return removed;
    }

    /** Number of occupied ways (for tests and statistics; not a consistent snapshot). */
    int size() {
        int n = 0;
        for (int way = 0; way < keys.length; way++) {
            if ((long) LONGS.getVolatile(keys, way) != 0) {
                n++;
            }
        }
        return n;
    }
}
