package org.iopersist.hw.vtd;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * One translation explained: the walk a remapping unit does for {@code (source-id, iova)} from the
 * tables in memory, entry by entry, with the checks of {@link RemappingUnit} and in its order. It
 * reads only: no cache is consulted or filled and no fault is recorded, so a tool can run it on a
 * live or a stopped machine. The last step is the entry that decided: the leaf, or the entry that
 * faults.
 *
 * <p>What it cannot see: the unit's IOTLB and context cache live in the machine process, and the
 * unit serves from them until software invalidates. Tables and caches agree whenever the kernel
 * has completed its invalidation, which it does before any change takes effect.
 *
 * @param sid        source-id ({@code bus << 8 | devfn})
 * @param iova       the input address
 * @param steps      the entries read, root entry first; the last one decided
 * @param phys       the output address, or -1 if the walk did not reach a usable leaf
 * @param leafLevel  1 (4 KiB), 2 (2 MiB) or 3 (1 GiB); 0 with translation off; -1 without a leaf
 * @param readable   R along the whole walk (the AND of every level)
 * @param writable   W along the whole walk
 * @param fault      a fault that does not depend on the access (root, context, width, reserved,
 *                   outside memory), or null; see {@link #fault(boolean)}
 * @param notPresent the walk ended on a non-present paging entry: a read faults READ, a write WRITE
 * @param suppressed the context entry has FPD: faults are not recorded (the DMA is aborted all the same)
 */
public record Translation(int sid, long iova, List<Step> steps, long phys, int leafLevel, boolean readable,
                          boolean writable, FaultReason fault, boolean notPresent, boolean suppressed) {

    /**
     * One entry the walk read.
     *
     * @param what      "root", "context" or the paging level's name (PML5E, PML4E, PDPE, PDE, PTE)
     * @param level     5..1 for paging entries, 0 for root and context entries
     * @param index     the entry's index in its table
     * @param entryPhys where the entry is
     * @param lo        the entry (its low qword for root and context entries)
     * @param hi        the high qword of a root or context entry; 0 for paging entries
     * @param meaning   the entry decoded, and what the unit does with it
     */
    public record Step(String what, int level, int index, long entryPhys, long lo, long hi, String meaning) {
    }

    public Translation {
        steps = List.copyOf(steps);
    }

    /** The fault an access of this kind raises, or null if it reaches {@link #phys}. */
    public FaultReason fault(final boolean write) {
        if (fault != null) {
            return fault;
        }
        if (notPresent || (write ? !writable : !readable)) {
            return write ? FaultReason.WRITE : FaultReason.READ;
        }
        return null;
    }

    /** True if some access reaches memory. */
    public boolean mapped() {
        return phys >= 0;
    }

    /** Bytes of the leaf that translated: 4 KiB, 2 MiB or 1 GiB (the whole window with translation off). */
    public long leafSize() {
        return leafLevel > 0 ? SlPte.levelSize(leafLevel) : leafLevel == 0 ? PhysicalMemory.FRAME_SIZE : 0;
    }

    /** The paging-entry name at {@code level}, as the VT-d specification calls it. */
    public static String levelName(final int level) {
        return switch (level) {
            case 5 -> "PML5E";
            case 4 -> "PML4E";
            case 3 -> "PDPE";
            case 2 -> "PDE";
            case 1 -> "PTE";
            default -> "L" + level;
        };
    }

    /**
     * Walks {@code (sid, iova)} on the unit whose registers are {@code regs}, as the unit would
     * on an IOTLB and context-cache miss, reading GSTS and RTADDR for translation-enable and the
     * root table.
     */
    public static Translation walk(final PhysicalMemory memory, final Mmio.Window regs, final UnitConfig config,
            final int sid, final long iova) {
        final Capability cap = Capability.decode(regs.read64(VtdRegisters.CAP));
        final int gsts = regs.read32(VtdRegisters.GSTS);
        final List<Step> steps = new ArrayList<>();
        if ((gsts & VtdRegisters.GSTS_TES) == 0) {
            // Translation off: the unit passes addresses through.
            final boolean in = memory.contains(iova, 1);
            return new Translation(sid, iova, steps, in ? iova : -1, in ? 0 : -1, in, in,
                    in ? null : FaultReason.PAGING_ENTRY_INVALID, false, false);
        }
        final long hawMask = (1L << config.haw()) - 1;
        final long root = (gsts & VtdRegisters.GSTS_RTPS) != 0 ? regs.read64(VtdRegisters.RTADDR) & VtdRegisters.RTADDR_ADDR_MASK : 0;
        final int bus = sid >>> 8;
        final long rootEntry = RootEntry.address(root, bus);
        if (!memory.contains(rootEntry, RootEntry.SIZE)) {
            steps.add(new Step("root", 0, bus, rootEntry, 0, 0, String.format("root table 0x%x lies outside memory", root)));
            return faulted(sid, iova, steps, FaultReason.ROOT_TABLE_INVALID, false);
        }
        final long rootLo = memory.load64Acquire(rootEntry);
        final long rootHi = memory.load64(rootEntry + 8);
        final int rootFault = RemappingUnit.rootEntryFault(rootLo, rootHi, hawMask);
        steps.add(new Step("root", 0, bus, rootEntry, rootLo, rootHi, RootEntry.present(rootLo)
                ? String.format("P=1 CTP=0x%x", RootEntry.contextTable(rootLo)) : "P=0: no context table for bus " + hex(bus)));
        if (rootFault != 0) {
            return faulted(sid, iova, steps, FaultReason.ofCode(rootFault), false);
        }
        final int devfn = sid & 0xFF;
        final long ctxEntry = ContextEntry.address(RootEntry.contextTable(rootLo), devfn);
        if (!memory.contains(ctxEntry, ContextEntry.SIZE)) {
            steps.add(new Step("context", 0, devfn, ctxEntry, 0, 0, "context table lies outside memory"));
            return faulted(sid, iova, steps, FaultReason.CONTEXT_TABLE_INVALID, false);
        }
        final long lo = memory.load64Acquire(ctxEntry);
        final long hi = memory.load64(ctxEntry + 8);
        final int ctxFault = RemappingUnit.contextEntryFault(lo, hi, hawMask, cap);
        final boolean fpd = ContextEntry.faultProcessingDisabled(lo);
        final int aw = ContextEntry.addressWidth(hi);
        steps.add(new Step("context", 0, devfn, ctxEntry, lo, hi, ContextEntry.present(lo)
                ? String.format("P=1 FPD=%d TT=%d SLPTPTR=0x%x AW=%d (%d-level) DID=%d", fpd ? 1 : 0,
                        ContextEntry.translationType(lo), ContextEntry.slptptr(lo), aw, ContextEntry.levels(aw),
                        ContextEntry.domainId(hi))
                : "P=0: the device is blocked (no domain)"));
        if (ctxFault != 0) {
            return faulted(sid, iova, steps, FaultReason.ofCode(ctxFault), false);
        }
        final int levels = ContextEntry.levels(aw);
        final int width = RemappingUnit.inputWidth(aw, cap);
        if ((iova >>> width) != 0) {
            return faulted(sid, iova, steps, FaultReason.ADDRESS_BEYOND_MGAW, fpd);
        }
        long table = ContextEntry.slptptr(lo);
        boolean readable = true;
        boolean writable = true;
        for (int level = levels; level >= 1; level--) {
            final int index = SlPte.index(iova, level);
            final long pteAddr = table + (long) index * SlPte.SIZE;
            final String name = levelName(level);
            if (!memory.contains(pteAddr, SlPte.SIZE)) {
                steps.add(new Step(name, level, index, pteAddr, 0, 0, String.format("table 0x%x lies outside memory", table)));
                return faulted(sid, iova, steps, FaultReason.PAGING_ENTRY_INVALID, fpd);
            }
            final long pte = memory.load64Acquire(pteAddr);
            if (!SlPte.present(pte)) {
                steps.add(new Step(name, level, index, pteAddr, pte, 0, "not present (R=0 W=0)"));
                return new Translation(sid, iova, steps, -1, -1, false, false, null, true, fpd);
            }
            if (RemappingUnit.pagingEntryReserved(pte, level, config.haw(), cap)) {
                steps.add(new Step(name, level, index, pteAddr, pte, 0, "reserved bits set (or a leaf size SLLPS lacks)"));
                return faulted(sid, iova, steps, FaultReason.PAGING_RESERVED, fpd);
            }
            readable &= (pte & SlPte.R) != 0;
            writable &= (pte & SlPte.W) != 0;
            final String rw = ((pte & SlPte.R) != 0 ? "R" : "-") + ((pte & SlPte.W) != 0 ? "W" : "-");
            if (RemappingUnit.isLeaf(pte, level)) {
                final long size = SlPte.levelSize(level);
                final long page = SlPte.address(pte);
                steps.add(new Step(name, level, index, pteAddr, pte, 0, String.format("leaf %s: page 0x%x %s",
                        sizeText(size), page, rw)));
                if (!memory.contains(page, size)) {
                    return faulted(sid, iova, steps, FaultReason.PAGING_ENTRY_INVALID, fpd);
                }
                return new Translation(sid, iova, steps, page | (iova & (size - 1)), level, readable, writable, null, false, fpd);
            }
            table = SlPte.address(pte);
            steps.add(new Step(name, level, index, pteAddr, pte, 0, String.format("table 0x%x %s", table, rw)));
        }
        throw new AssertionError("walk ended without a leaf");
    }

    private static Translation faulted(final int sid, final long iova, final List<Step> steps, final FaultReason reason,
            final boolean fpd) {
        return new Translation(sid, iova, steps, -1, -1, false, false, reason, false, fpd);
    }

    private static String hex(final int v) {
        return String.format("0x%02x", v);
    }

    /** 4K, 2M, 1G, as sizes of leaves are usually written. */
    public static String sizeText(final long bytes) {
        if (bytes >= 1L << 30 && (bytes & ((1L << 30) - 1)) == 0) {
            return (bytes >> 30) + "G";
        }
        if (bytes >= 1L << 20 && (bytes & ((1L << 20) - 1)) == 0) {
            return (bytes >> 20) + "M";
        }
        if ((bytes & 1023) == 0) {
            return (bytes >> 10) + "K";
        }
        return bytes + "B";
    }
}
