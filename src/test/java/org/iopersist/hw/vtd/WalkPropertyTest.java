package org.iopersist.hw.vtd;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.LongRange;
import net.jqwik.api.constraints.Size;
import org.iopersist.testing.Trees;

/**
 * Random mappings written by the test's own encoder ({@link RawTables}) translate through the
 * walker exactly as a reference model of the same mappings says: address, permissions, faults;
 * and the read-only walk that tools show ({@link Translation}) says the same.
 */
class WalkPropertyTest {
    /** One leaf of the reference model. */
    private record Leaf(long iova, int level, long phys, boolean read, boolean write) {
        long size() {
            return 1L << (12 + 9 * (level - 1));
        }

        boolean covers(final long a) {
            return a >= iova && a - iova < size();
        }
    }

    @Property(tries = 60)
    void randomMappingsTranslateAsTheReferenceSays(
            @ForAll @IntRange(min = 3, max = 5) final int levels,
            @ForAll @Size(min = 1, max = 12) final List<@LongRange(min = 0, max = Long.MAX_VALUE) Long> seeds) throws Exception {
        final Path dir = Files.createTempDirectory("walkprop");
        try (RawTables t = new RawTables(dir.resolve("m"), UnitConfig.ofLevels(levels))) {
            final int width = Math.min(12 + 9 * levels, t.config.mgaw());
            final List<Leaf> leaves = new ArrayList<>();
            final long ctp = t.rootEntry(0);
            long pgd = 0;
            for (long seed : seeds) {
                final int level = 1 + (int) Long.remainderUnsigned(seed, 3);
                final long size = 1L << (12 + 9 * (level - 1));
                final long iova = (Long.remainderUnsigned(seed >>> 2, 1L << (width - 12)) << 12) & -size;
                final long phys = (Long.remainderUnsigned(seed >>> 13, 1L << 30) & -size) & ((1L << 30) - size);
                final boolean read = (seed & (1L << 40)) != 0;
                final boolean write = (seed & (1L << 41)) != 0 || !read;
                final Leaf leaf = new Leaf(iova, level, phys, read, write);
                // Skip mappings that would overlap (the model keeps one leaf per address).
                if (leaves.stream().anyMatch(l -> l.covers(leaf.iova) || leaf.covers(l.iova))) {
                    continue;
                }
                // A large leaf where an intermediate table already exists, or vice versa, is skipped too.
                if (!pathFree(t, pgd, levels, leaf)) {
                    continue;
                }
                pgd = t.map(pgd, levels, iova, level, RawTables.pte(phys, read, write, level > 1));
                leaves.add(leaf);
            }
            if (pgd == 0) {
                return;
            }
            t.contextEntry(ctp, 0x10, pgd, 0, levels - 2, 9);
            final Requester r = new Requester(0x10);
            for (Leaf l : leaves) {
                for (long off : new long[] {0, l.size() / 2 + 0x123, l.size() - 1}) {
                    for (boolean write : new boolean[] {false, true}) {
                        final boolean allowed = write ? l.write() : l.read();
                        final long expect = allowed ? l.phys() + off : -(write ? FaultReason.WRITE : FaultReason.READ).code;
                        assertEquals(expect, t.translate(r, l.iova() + off, write), l + " +0x" + Long.toHexString(off));
                        assertEquals(expect, explained(t, l.iova() + off, write), "explained: " + l + " +0x" + Long.toHexString(off));
                    }
                }
                // Just past the leaf: another leaf's or nothing.
                final long past = l.iova() + l.size();
                if (past < (1L << width) && leaves.stream().noneMatch(o -> o.covers(past))) {
                    assertEquals(-FaultReason.READ.code, t.translate(r, past, false));
                    assertEquals(-FaultReason.READ.code, explained(t, past, false));
                }
            }
        } finally {
            Trees.delete(dir);
        }
    }

    /** What {@link Translation}, the read-only walk tools use, says of the same access: phys, or -reason. */
    private static long explained(final RawTables t, final long iova, final boolean write) {
        final Translation x = Translation.walk(t.mem, t.board.unitRegisters(0), t.config, 0x10, iova);
        final FaultReason f = x.fault(write);
        return f != null ? -f.code : x.phys();
    }

    /** True if every entry on the way to the leaf is absent or an intermediate table, and the slot is empty. */
    private static boolean pathFree(final RawTables t, final long pgd, final int levels, final Leaf leaf) {
        if (pgd == 0) {
            return true;
        }
        long table = pgd;
        for (int l = levels; l >= leaf.level(); l--) {
            final long e = t.mem.load64(table + 8L * RawTables.index(leaf.iova(), l));
            if ((e & 3) == 0) {
                return true;
            }
            if (l == leaf.level() || l == 1 || (e & (1L << 7)) != 0) {
                return false;
            }
            table = e & 0x000F_FFFF_FFFF_F000L;
        }
        return false;
    }
}
