package org.iopersist.kernel.iommu.intel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeMap;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.kernel.mm.FrameAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The walker on its own, against a model of what was mapped: random ranges of random alignment
 * (so every leaf size and table boundary shows up), then lookups, the cached lookup, the visit and
 * an unmap of everything. DmarDomain's tests cover the same walker through the driver.
 */
class PageTableWalkerTest {
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;
    private static final long PAGE = 4096;
    private static final long RW = SlPte.R | SlPte.W;

    @TempDir
    Path dir;

    /** A mapped range of the model: IOVA to physical, both {@code length} long. */
    private record Range(long iova, long phys, long length) {
        long last() {
            return iova + length - 1;
        }
    }

    @Test
    void randomMappingsReadBackAndUnmapToNothing() {
        for (int levels = 3; levels <= 5; levels++) {
            try (PhysicalMemory mem = PhysicalMemory.create(dir.resolve("m" + levels), 64 * MIB)) {
                final FrameAllocator frames = new FrameAllocator(mem, 64 * MIB, false);
                frames.open();
                final TablePagePool pool = new TablePagePool(mem, frames);
                final long pgd = pool.allocZeroedPage();
                final PageTableWalker w = new PageTableWalker(mem, pool, pgd, levels, true, true);
                final Random rnd = new Random(levels);
                final TreeMap<Long, Range> model = new TreeMap<>();
                long mapped = 0;
                for (int k = 0; k < 200; k++) {
                    final Range r = randomRange(rnd, levels);
                    final var before = model.floorEntry(r.last());
                    final boolean free = before == null || before.getValue().last() < r.iova();
                    final long done = w.map(r.iova(), r.last(), r.phys(), RW);
                    if (free) {
                        assertEquals(r.length(), done, "into a hole: " + r);
                        model.put(r.iova(), r);
                        mapped += r.length();
                    } else {
                        // Stops at the first mapped IOVA; what it mapped below it comes out again.
                        final var at = model.floorEntry(r.iova());
                        final long firstMapped = at != null && at.getValue().last() >= r.iova() ? r.iova() : model.ceilingKey(r.iova());
                        assertEquals(firstMapped - r.iova(), done, r + " over " + before.getValue());
                        if (done > 0) {
                            final PageTableWalker.Gather g = new PageTableWalker.Gather();
                            assertEquals(done, w.unmap(r.iova(), r.iova() + done - 1, g));
                            for (int i = 0; i < g.pageCount(); i++) {
                                pool.free(g.page(i));
                            }
                        }
                    }
                }
                assertEquals(mapped, w.visit((phys, level) -> { }), "visit sums the leaves");
                final long[] pages = w.tablePages();
                assertEquals(pgd, pages[0], "the pgd first");
                assertEquals(pool.pages(), pages.length, "every page the pool handed out is a table page");

                // The scrub's reader: every leaf once, in IOVA order, inside its range, with its frame and R|W.
                final PageTableWalker reader = new PageTableWalker(mem, pgd, levels);
                final long[] seen = {0, -1};
                reader.forEachLeaf((iova, phys, size, prot) -> {
                    assertTrue(Long.compareUnsigned(iova, seen[1]) > 0 || seen[1] == -1, "IOVA order at 0x" + Long.toHexString(iova));
                    final var e = model.floorEntry(iova);
                    assertTrue(e != null && e.getValue().last() >= iova + size - 1, "leaf 0x" + Long.toHexString(iova) + " inside a range");
                    assertEquals(e.getValue().phys() + (iova - e.getValue().iova()), phys);
                    assertEquals((int) RW, prot);
                    seen[0] += size;
                    seen[1] = iova;
                });
                assertEquals(mapped, seen[0], "forEachLeaf sees every mapped byte");
                final int[] tables = {0};
                reader.visitTables((phys, level) -> tables[0]++);
                assertEquals(pages.length, tables[0], "visitTables finds every table page without reading the leaves");

                // Point lookups agree with the model.
                final List<Long> probes = new ArrayList<>();
                for (Range r : model.values()) {
                    probes.add(r.iova());
                    probes.add(r.iova() + (rnd.nextLong(r.length()) & -PAGE));
                    probes.add(r.last() & -PAGE);
                    probes.add(r.last() + 1);
                }
                probes.sort(Long::compareUnsigned);
                for (long iova : probes) {
                    final var e = model.floorEntry(iova);
                    final Range r = e == null || e.getValue().last() < iova ? null : e.getValue();
                    final long leaf = w.lookup(iova);
                    if (r == null) {
                        assertEquals(0, leaf, "hole at 0x" + Long.toHexString(iova));
                        continue;
                    }
                    final long size = PageTableWalker.size(leaf);
                    final long leafIova = iova & -size;
                    assertTrue(leafIova >= r.iova() && leafIova + size - 1 <= r.last(), "leaf inside its range at 0x" + Long.toHexString(iova));
                    assertEquals(r.phys() + (leafIova - r.iova()), SlPte.address(leaf) & -size);
                    assertEquals(RW, leaf & RW);
                }

                // Unmapping the whole aperture clears every leaf and unlinks every table but the pgd.
                final PageTableWalker.Gather g = new PageTableWalker.Gather();
                assertEquals(mapped, w.unmap(0, (1L << (12 + 9 * levels)) - 1, g));
                assertEquals(pages.length - 1, g.pageCount());
                assertTrue(g.start() <= model.firstKey() && g.last() >= model.lastEntry().getValue().last(), "the gathered span");
                assertEquals(0, w.visit((phys, level) -> { }));
                assertArrayEquals(new long[] {pgd}, w.tablePages());
                for (int i = 0; i < g.pageCount(); i++) {
                    pool.free(g.page(i));
                }
                assertEquals(1, pool.pages());
                assertEquals(1, frames.stats().allocatedFrames(), "emptied chunks went back: the pgd's frame is left");
            }
        }
    }

    /** A range of 1..1024 pages or 1..3 GiB-aligned GiB, at an IOVA and phys aligned to 4 KiB, 2 MiB or 1 GiB. */
    private static Range randomRange(final Random rnd, final int levels) {
        final long align = switch (rnd.nextInt(3)) {
            case 0 -> PAGE;
            case 1 -> 2 * MIB;
            default -> GIB;
        };
        final long length = align == GIB && rnd.nextBoolean() ? (1 + rnd.nextInt(3)) * GIB : (1 + rnd.nextInt(1024)) * PAGE;
        final long span = Math.min(1L << (12 + 9 * levels), 64 * GIB);
        final long iova = rnd.nextLong(span - length) & -align;
        final long phys = rnd.nextLong(1L << 40) & -align;
        return new Range(iova, phys, length);
    }
}
