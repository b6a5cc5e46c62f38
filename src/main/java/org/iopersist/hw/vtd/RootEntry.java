package org.iopersist.hw.vtd;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.VarHandle;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * Legacy-mode root entry: 128 bits, 256 per 4 KiB root table, indexed by PCI bus (VT-d §9.1).
 *
 * <pre>
 *  lo:  63                                12 11         1  0
 *      +------------------------------------+------------+---+
 *      |        CTP (context table ptr)     |  reserved  | P |
 *      +------------------------------------+------------+---+
 *  hi:  63                                                  0
 *      |                     reserved                        |
 * </pre>
 *
 * <p>Access modes: the hardware reads {@code lo} with acquire, then {@code hi}. Software writes
 * {@code hi} first, then {@code lo} with P set using a release store; it clears P first (release),
 * and never rewrites a present entry in place.
 */
public final class RootEntry {
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            PhysicalMemory.U64.withName("lo"), PhysicalMemory.U64.withName("hi")).withName("root_entry");
    public static final long SIZE = LAYOUT.byteSize();
    public static final int ENTRIES = 256;
    public static final long LO_OFFSET = LAYOUT.byteOffset(MemoryLayout.PathElement.groupElement("lo"));
    public static final long HI_OFFSET = LAYOUT.byteOffset(MemoryLayout.PathElement.groupElement("hi"));

    public static final long P = 1L;
    public static final long CTP_MASK = ~0xFFFL;
    public static final long LO_RESERVED = 0xFFEL;

    private static final VarHandle LO = LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("lo"));
    private static final VarHandle HI = LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("hi"));

    private MemorySegment segment;
    private long offset;

    /** Address of the entry for {@code bus} in the root table at {@code rootPhys}. */
    public static long address(final long rootPhys, final int bus) {
        return rootPhys + (bus & 0xFF) * SIZE;
    }

    public static boolean present(final long lo) {
        return (lo & P) != 0;
    }

    public static long contextTable(final long lo) {
        return lo & CTP_MASK;
    }

    /** The low qword of a present entry pointing at {@code contextTablePhys}. */
    public static long encodeLo(final long contextTablePhys) {
        if ((contextTablePhys & 0xFFF) != 0) {
            throw new IllegalArgumentException("context table 0x" + Long.toHexString(contextTablePhys) + " not 4K aligned");
        }
        return contextTablePhys | P;
    }

    /** Reuses this view for the entry at {@code offset} of {@code segment}. Not thread safe. */
    public RootEntry wrap(final MemorySegment segment, final long offset) {
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

    public long contextTable() {
        return contextTable(lo());
    }

    /** Publishes a present entry: hi, then lo with P (release). */
    public void publish(final long contextTablePhys) {
        if (present()) {
            throw new IllegalStateException("root entry is present: clear and invalidate before rewriting");
        }
        HI.set(segment, offset, 0L);
        LO.setRelease(segment, offset, encodeLo(contextTablePhys));
    }

    /** Clears P first (release), then the rest. */
    public void clear() {
        LO.setRelease(segment, offset, 0L);
        HI.set(segment, offset, 0L);
    }
}
