package org.iopersist.hw.vtd;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One DMA requester (a device's DMA engine) as its remapping unit sees it: its source-id, the
 * in-flight marker the invalidation drain waits on, and scratch space so translation allocates
 * nothing. One thread at a time per requester.
 *
 * <p>In-flight protocol: {@link RemappingUnit#begin} stores the unit's invalidation generation here
 * (volatile) before any lookup; {@link RemappingUnit#end} stores {@link #IDLE}. An invalidation bumps
 * the generation and waits until no requester is in flight with an older one.
 */
public final class Requester {
    static final long IDLE = Long.MAX_VALUE;
    private static final VarHandle ACTIVE;

    static {
        try {
            ACTIVE = MethodHandles.lookup().findVarHandle(Requester.class, "active", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final int sid;
    @SuppressWarnings("unused") // accessed through ACTIVE
    private volatile long active = IDLE;
    final long[] scratch = new long[2];
    long generation;

    public Requester(final int sid) {
        if (sid < 0 || sid > 0xFFFF) {
            throw new IllegalArgumentException("sid=0x" + Integer.toHexString(sid) + " is not a 16-bit source-id");
        }
        this.sid = sid;
    }

    public int sid() {
        return sid;
    }

    void enter(final long gen) {
        generation = gen;
        ACTIVE.setVolatile(this, gen);
    }

    void exit() {
        ACTIVE.setRelease(this, IDLE);
    }

    long active() {
        return (long) ACTIVE.getVolatile(this);
    }
}
