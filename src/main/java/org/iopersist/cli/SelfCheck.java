package org.iopersist.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.RemappingUnit;
import org.iopersist.hw.vtd.Requester;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.hw.vtd.VtdRegisters;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Builds a machine, writes a root table, a context entry and a 4-level second-level table by hand,
 * latches them into the remapping unit through its registers, and translates through them: a 4 KiB
 * page, a 2 MiB page, a read-only page written to, and an unmapped address.
 */
@Command(name = "selfcheck", mixinStandardHelpOptions = true,
        description = "Build a machine, program VT-d tables by hand and translate through them.")
final class SelfCheck implements Callable<Integer> {
    @Option(names = "--dir", description = "machine directory (default: a new temporary one)")
    private Path dir;

    @Option(names = "--levels", description = "second-level table depth: 3, 4 or 5 (default: ${DEFAULT-VALUE})")
    private int levels = 4;

    @Override
    public Integer call() throws Exception {
        Paths.requireNamed("--dir", dir);
        if (dir != null && Files.exists(dir.resolve(org.iopersist.hw.MachineConfig.FILE))) {
            throw new IllegalArgumentException(dir + " already holds a machine; give a new directory");
        }
        final Path machineDir = dir != null ? dir : Files.createTempDirectory("iopersist-selfcheck");
        final UnitConfig unitConfig = UnitConfig.ofLevels(levels);
        final MachineConfig config = MachineConfig.small().withUnits(List.of(unitConfig));
        int failures = 0;
        try (Board board = Board.create(machineDir, config)) {
            final PhysicalMemory mem = board.memory();
            final RemappingUnit unit = new RemappingUnit(0, mem, board.unitRegisters(0), unitConfig);
            unit.powerOn();
            System.out.printf("machine  %s: %d MiB memory (%d KiB on disk), 1 VT-d unit, CAP=0x%016x%n",
                    machineDir, mem.size() >> 20, mem.allocatedBytes() >> 10,
                    board.unitRegisters(0).read64(VtdRegisters.CAP));

            // Frames for the tables, by hand: root, one context table, one page per level.
            long next = 0x10_0000;
            final long root = next;
            next += 0x1000;
            final long ctxTable = next;
            next += 0x1000;
            final long[] tables = new long[levels + 1];
            for (int l = levels; l >= 1; l--) {
                tables[l] = next;
                next += 0x1000;
            }
            final int sid = 0x0010; // 00:02.0
            final int did = 2;
            mem.store64Release(RootEntry.address(root, 0), RootEntry.encodeLo(ctxTable));
            mem.store64(ContextEntry.address(ctxTable, 0x10) + 8, ContextEntry.encodeHi(did, ContextEntry.awForLevels(levels)));
            mem.store64Release(ContextEntry.address(ctxTable, 0x10), ContextEntry.encodeLo(tables[levels], 0, false));

            final long iova4k = 0x4000_0000L;
            final long iova2m = 0x4020_0000L;
            final long iovaRo = 0x4000_1000L;
            for (int l = levels; l > 2; l--) {
                mem.store64Release(tables[l] + SlPte.index(iova4k, l) * 8L, SlPte.encodeTable(tables[l - 1]));
            }
            mem.store64Release(tables[2] + SlPte.index(iova4k, 2) * 8L, SlPte.encodeTable(tables[1]));
            mem.store64Release(tables[1] + SlPte.index(iova4k, 1) * 8L, SlPte.encodeLeaf(0x20_0000_00L, 1, true, true));
            mem.store64Release(tables[1] + SlPte.index(iovaRo, 1) * 8L, SlPte.encodeLeaf(0x20_0010_00L, 1, true, false));
            mem.store64Release(tables[2] + SlPte.index(iova2m, 2) * 8L, SlPte.encodeLeaf(0x30_0000_00L, 2, true, true));

            final var regs = board.unitRegisters(0);
            regs.write64(VtdRegisters.RTADDR, root);
            regs.setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_SRTP | VtdRegisters.GCMD_TE);
            unit.service();
            System.out.printf("unit 0   GSTS=0x%08x (RTPS %s, TES %s), root table at 0x%x%n",
                    regs.read32(VtdRegisters.GSTS),
                    (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_RTPS) != 0 ? "set" : "clear",
                    (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_TES) != 0 ? "set" : "clear", unit.rootTable());

            final Requester dev = new Requester(sid);
            failures += expect(unit, dev, iova4k + 0x123, true, 0x20_0000_00L + 0x123, "4 KiB leaf, write");
            failures += expect(unit, dev, iova2m + 0x1_2345, false, 0x30_0000_00L + 0x1_2345, "2 MiB leaf, read");
            failures += expect(unit, dev, iovaRo, true, -FaultReason.WRITE.code, "read-only leaf, write");
            failures += expect(unit, dev, 0x7000_0000L, false, -FaultReason.READ.code, "unmapped, read");
            final long hi = regs.read64(VtdRegisters.frcd(0) + 8);
            System.out.printf("fault    FRCD0: sid=0x%04x reason=0x%x %s iova page=0x%x%n",
                    hi & 0xFFFF, (hi >>> 32) & 0xFF, (hi & VtdRegisters.FRCD_HI_T_READ) != 0 ? "read" : "write",
                    regs.read64(VtdRegisters.frcd(0)));
        }
        if (dir == null) {
            deleteTree(machineDir);
        }
        System.out.println(failures == 0 ? "selfcheck: ok" : "selfcheck: " + failures + " FAILED");
        return failures == 0 ? 0 : 1;
    }

    static void deleteTree(final Path root) throws java.io.IOException {
        try (var walk = Files.walk(root)) {
            for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    private static int expect(final RemappingUnit unit, final Requester dev, final long iova, final boolean write,
                              final long expected, final String what) {
        unit.begin(dev);
        final long got = unit.translate(dev, iova, write);
        unit.end(dev);
        final String shown = got >= 0 ? String.format("phys 0x%x", got)
                : "fault " + FaultReason.ofCode((int) -got) + " (0x" + Long.toHexString(-got) + ")";
        System.out.printf("%-8s sid 0x%04x iova 0x%x %-22s -> %s%s%n", write ? "write" : "read", dev.sid(), iova,
                "(" + what + ")", shown, got == expected ? "" : "   UNEXPECTED");
        return got == expected ? 0 : 1;
    }
}
