package org.iopersist.hw.vtd;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.VarHandle;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * Legacy-mode context entry: 128 bits, 256 per 4 KiB context table, indexed by devfn (VT-d §9.3).
 *
 * <pre>
 *  lo:  63                               12 11     4 3  2  1   0
 *      +-----------------------------------+--------+-----+---+---+
 *      |        SLPTPTR (ASR)              |  rsvd  | TT  |FPD| P |
 *      +-----------------------------------+--------+-----+---+---+
 *  hi:  63           24 23               8  7  6    3 2    0
 *      +---------------+------------------+---+-------+------+
 *      |   reserved    |       DID        | r | AVAIL |  AW  |
 *      +---------------+------------------+---+-------+------+
 * </pre>
 *
 * TT: 00 = untranslated requests walk the second-level table; 01 (device-TLB) needs ECAP.DT and
 * 10 (pass-through) ECAP.PT, which the model does not report, so a unit faults on them as on 11. AW: 1 = 3-level, 2 = 4-level, 3 = 5-level.
 *
 * <p>Access modes as for {@link RootEntry}: hi first, lo with P last (release); clear P first.
 */
public final class ContextEntry {
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            PhysicalMemory.U64.withName("lo"), PhysicalMemory.U64.withName("hi")).withName("context_entry");
    public static final long SIZE = LAYOUT.byteSize();
    public static final int ENTRIES = 256;

    public static final long P = 1L;
    public static final long FPD = 1L << 1;
    public static final int TT_SHIFT = 2;
    public static final long TT_MASK = 3L << TT_SHIFT;
    public static final int TT_MULTI_LEVEL = 0;
    public static final long LO_RESERVED = 0xFF0L;
    public static final long SLPTPTR_MASK = ~0xFFFL;

    public static final long HI_AW_MASK = 7L;
    public static final int HI_DID_SHIFT = 8;
    public static final long HI_DID_MASK = 0xFFFFL << HI_DID_SHIFT;
    public static final long HI_RESERVED = 0xFFFF_FFFF_FF00_0080L;

    private static final VarHandle LO = LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("lo"));
    private static final VarHandle HI = LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("hi"));

    private MemorySegment segment;
    private long offset;

    /** Address of the entry for {@code devfn} in the context table at {@code tablePhys}. */
    public static long address(final long tablePhys, final int devfn) {
        return tablePhys + (devfn & 0xFF) * SIZE;
    }

    public static boolean present(final long lo) {
        return (lo & P) != 0;
    }

    public static boolean faultProcessingDisabled(final long lo) {
        return (lo & FPD) != 0;
    }

    public static int translationType(final long lo) {
        return (int) ((lo & TT_MASK) >>> TT_SHIFT);
    }

    public static long slptptr(final long lo) {
        return lo & SLPTPTR_MASK;
    }

    public static int addressWidth(final long hi) {
        return (int) (hi & HI_AW_MASK);
    }

    public static int domainId(final long hi) {
        return (int) ((hi & HI_DID_MASK) >>> HI_DID_SHIFT);
    }

    /** Table depth for an AW value: AW 1/2/3 = 3/4/5 levels. */
    public static int levels(final int aw) {
        return aw + 2;
    }

    /** AW value for a table depth. */
    public static int awForLevels(final int levels) {
        return levels - 2;
    }

    public static long encodeLo(final long slptptr, final int tt, final boolean fpd) {
        if ((slptptr & 0xFFF) != 0) {
            throw new IllegalArgumentException("slptptr 0x" + Long.toHexString(slptptr) + " not 4K aligned");
        }
        return slptptr | ((long) (tt & 3) << TT_SHIFT) | (fpd ? FPD : 0) | P;
    }

    public static long encodeHi(final int did, final int aw) {
        if (did < 0 || did > 0xFFFF || aw < 0 || aw > 7) {
            throw new IllegalArgumentException("did=" + did + " aw=" + aw + " out of range");
        }
        return ((long) did << HI_DID_SHIFT) | aw;
    }

    /** Reuses this view for the entry at {@code offset} of {@code segment}. Not thread safe. */
    public ContextEntry wrap(final MemorySegment segment, final long offset) {
        this.segment = segment;
        this.offset = offset;
        return this;
    }

    public long lo() {
        return (long) LO.getAcquire(segment, offset);
    }

    public long hi() {
        return (long) HI.get(segment, offset);
    }

    public boolean present() {
        return present(lo());
    }

    public int domainId() {
        return domainId(hi());
    }

    public int addressWidth() {
        return addressWidth(hi());
    }

    public long slptptr() {
        return slptptr(lo());
    }

    /** Publishes a present entry: hi first, then lo with P (release). */
    public void publish(final long lo, final long hi) {
        if (present()) {
            throw new IllegalStateException("context entry is present: clear and invalidate before rewriting");
        }
        if (!present(lo)) {
            throw new IllegalArgumentException("publish needs P set in lo");
        }
        HI.set(segment, offset, hi);
        LO.setRelease(segment, offset, lo);
    }

    /** Clears P first (release), then hi. */
    public void clear() {
        LO.setRelease(segment, offset, 0L);
        HI.set(segment, offset, 0L);
    }
}
