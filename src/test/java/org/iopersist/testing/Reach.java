package org.iopersist.testing;

import java.util.ArrayList;
import java.util.List;
import java.util.function.LongPredicate;
import org.iopersist.hw.Board;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.hw.vtd.VtdRegisters;

/**
 * What the devices can reach right now, read from the hardware's own structures (the unit's root
 * table, each present context entry, the second-level tables under it), not from any kernel: every
 * table page the unit may walk and every frame a leaf lets a device read or write. A kernel that
 * has any of these on its free lists could hand a frame a device still reaches to someone else.
 */
public final class Reach {
    private Reach() {
    }

    /** One frame a device reaches: a table page of its walk, or a page a leaf maps. */
    public record Frame(int unit, int sourceId, long phys, boolean table) {
        @Override
        public String toString() {
            return String.format("unit %d sid 0x%04x %s 0x%x", unit, sourceId, table ? "table page" : "page", phys);
        }
    }

    /** Every reachable frame that {@code free} says is free, at most {@code limit} of them. */
    public static List<Frame> freeButReachable(final Board board, final LongPredicate free, final int limit) {
        final List<Frame> out = new ArrayList<>();
        final PhysicalMemory mem = board.memory();
        for (int u = 0; u < board.config().units().size(); u++) {
            final long root = board.unitRegisters(u).read64(VtdRegisters.RTADDR) & VtdRegisters.RTADDR_ADDR_MASK;
            for (int bus = 0; bus < RootEntry.ENTRIES; bus++) {
                final long rootLo = mem.load64(RootEntry.address(root, bus));
                if (!RootEntry.present(rootLo)) {
                    continue;
                }
                final long ctxTable = RootEntry.contextTable(rootLo);
                check(out, free, limit, new Frame(u, bus << 8, ctxTable, true));
                for (int devfn = 0; devfn < ContextEntry.ENTRIES; devfn++) {
                    final long lo = mem.load64(ContextEntry.address(ctxTable, devfn));
                    if (!ContextEntry.present(lo)) {
                        continue;
                    }
                    final long hi = mem.load64(ContextEntry.address(ctxTable, devfn) + 8);
                    final int levels = ContextEntry.levels(ContextEntry.addressWidth(hi));
                    walk(out, free, limit, mem, u, bus << 8 | devfn, ContextEntry.slptptr(lo), levels);
                }
            }
        }
        return out;
    }

    private static void walk(final List<Frame> out, final LongPredicate free, final int limit, final PhysicalMemory mem,
            final int unit, final int sid, final long table, final int level) {
        check(out, free, limit, new Frame(unit, sid, table, true));
        for (int i = 0; i < SlPte.ENTRIES && out.size() < limit; i++) {
            final long pte = mem.load64(table + 8L * i);
            if (!SlPte.present(pte)) {
                continue;
            }
            if (level == 1 || SlPte.largeLeaf(pte)) {
                final long base = SlPte.address(pte);
                for (long off = 0; off < SlPte.levelSize(level) && out.size() < limit; off += PhysicalMemory.FRAME_SIZE) {
                    check(out, free, limit, new Frame(unit, sid, base + off, false));
                }
            } else {
                walk(out, free, limit, mem, unit, sid, SlPte.address(pte), level - 1);
            }
        }
    }

    private static void check(final List<Frame> out, final LongPredicate free, final int limit, final Frame f) {
        if (out.size() < limit && free.test(f.phys())) {
            out.add(f);
        }
    }
}
