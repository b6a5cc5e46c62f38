package org.iopersist.hw.vtd;

import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.Bdf;

/**
 * An independent encoder for tests: writes root, context and second-level entries as raw 64-bit
 * words from the bit positions of the VT-d specification (iommu-model.md §4), never through the
 * production flyweights, and drives one remapping unit in this thread (service() by hand).
 */
final class RawTables implements AutoCloseable {
    static final long PAGE = 4096;
    final Board board;
    final PhysicalMemory mem;
    final RemappingUnit unit;
    final UnitConfig config;
    final long root;
    private long next;

    RawTables(final Path dir, final UnitConfig config) {
        this.config = config;
        this.board = Board.create(dir, new MachineConfig(1L << 30, List.of(config),
                List.of(new MachineConfig.DeviceConfig(Bdf.parse("0000:00:02.0"), 0))));
        this.mem = board.memory();
        this.unit = new RemappingUnit(0, mem, board.unitRegisters(0), config);
        unit.powerOn();
        this.next = 0x100_0000L;
        this.root = frame();
        board.unitRegisters(0).write64(VtdRegisters.RTADDR, root);
        board.unitRegisters(0).setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_SRTP | VtdRegisters.GCMD_TE);
        unit.service();
    }

    /** A zeroed frame for a table. */
    long frame() {
        final long f = next;
        next += PAGE;
        mem.fill(f, PAGE, (byte) 0);
        return f;
    }

    /** Root entry for {@code bus}: bit 0 P, bits 63:12 context-table pointer; hi qword 0. */
    long rootEntry(final int bus) {
        final long ctp = frame();
        mem.store64(root + 16L * bus + 8, 0);
        mem.store64Release(root + 16L * bus, ctp | 1);
        return ctp;
    }

    /**
     * Context entry: lo = P(0) | FPD(1) | TT(3:2) | SLPTPTR(63:12); hi = AW(2:0) | DID(23:8).
     */
    void contextEntry(final long ctp, final int devfn, final long slptptr, final int tt, final int aw, final int did) {
        mem.store64(ctp + 16L * devfn + 8, (long) did << 8 | aw);
        mem.store64Release(ctp + 16L * devfn, slptptr | (long) tt << 2 | 1);
    }

    /** Second-level entry: R(0) W(1) PS(7) ADDR(51:12). */
    static long pte(final long addr, final boolean read, final boolean write, final boolean ps) {
        return addr | (read ? 1 : 0) | (write ? 2 : 0) | (ps ? 1L << 7 : 0);
    }

    /** Index of {@code iova} at {@code level} (1 = 4 KiB leaves): bits 12+9(l-1) .. +8. */
    static int index(final long iova, final int level) {
        return (int) ((iova >>> (12 + 9 * (level - 1))) & 511);
    }

    /** Builds the path for {@code iova} down to {@code leafLevel} and writes {@code leaf} there; returns the pgd. */
    long map(final long pgdOrZero, final int levels, final long iova, final int leafLevel, final long leaf) {
        final long pgd = pgdOrZero != 0 ? pgdOrZero : frame();
        long table = pgd;
        for (int l = levels; l > leafLevel; l--) {
            final long at = table + 8L * index(iova, l);
            long e = mem.load64(at);
            if ((e & 3) == 0) {
                e = pte(frame(), true, true, false);
                mem.store64Release(at, e);
            }
            table = e & 0x000F_FFFF_FFFF_F000L;
        }
        mem.store64Release(table + 8L * index(iova, leafLevel), leaf);
        return pgd;
    }

    long translate(final Requester r, final long iova, final boolean write) {
        unit.begin(r);
        try {
            return unit.translate(r, iova, write);
        } finally {
            unit.end(r);
        }
    }

    long frcdLo(final int i) {
        return board.unitRegisters(0).read64(VtdRegisters.frcd(i));
    }

    long frcdHi(final int i) {
        return board.unitRegisters(0).read64(VtdRegisters.frcd(i) + 8);
    }

    @Override
    public void close() {
        board.close();
    }
}
