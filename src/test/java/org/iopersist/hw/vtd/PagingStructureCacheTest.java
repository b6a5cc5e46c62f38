package org.iopersist.hw.vtd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The paging-structure caches behave as VT-d 6.2.3 and 6.5.2 say: an IOTLB miss walks on from the
 * deepest cached directory entry; a page-selective invalidation with the hint (IH = 1) keeps
 * those entries, one without it removes the ones over its range, and a domain-selective one only
 * its domain's. So software that frees a table page must invalidate without the hint first.
 */
class PagingStructureCacheTest {
    private static final long RING = 0x10_0000L;
    private static final long STATUS = 0x20_0000L;
    private static final long X = 0x4000_0000L;

    @TempDir
    Path dir;

    /** The level-{@code level} entry on the path to {@code iova} (2 = the PDE). */
    private static long entry(final RawTables t, final long pgd, final long iova, final int level) {
        long table = pgd;
        for (int l = 4; l > level; l--) {
            table = t.mem.load64(table + 8L * RawTables.index(iova, l)) & 0x000F_FFFF_FFFF_F000L;
        }
        return table + 8L * RawTables.index(iova, level);
    }

    @Test
    void aDirectoryEntryStaysCachedUntilAnInvalidationWithoutTheHint() {
        try (RawTables t = new RawTables(dir, UnitConfig.DEFAULT)) {
            final VtdProgrammer q = new VtdProgrammer(t.mem, t.board.unitRegisters(0), t.unit);
            q.enableQueue(RING, STATUS);
            final long ctp = t.rootEntry(0);
            final long pgd = t.map(0, 4, X, 1, RawTables.pte(0x1_0000L, true, true, false));
            t.map(pgd, 4, X + 0x1000, 1, RawTables.pte(0x2_0000L, true, true, false));
            t.contextEntry(ctp, 0x10, pgd, 0, 2, 7);
            final Requester r = new Requester(0x10);
            assertEquals(0x1_0000L, t.translate(r, X, false));
            final long hits = t.unit.pagingStructureHits();
            assertEquals(0x2_0000L, t.translate(r, X + 0x1000, false), "an IOTLB miss");
            assertEquals(hits + 1, t.unit.pagingStructureHits(), "walked on from the cached PDE");

            // Software points the PDE at another leaf table without telling the hardware so.
            final long other = t.frame();
            t.mem.store64Release(other + 8L * RawTables.index(X, 1), RawTables.pte(0x4_0000L, true, true, false));
            t.mem.store64Release(other + 8L * RawTables.index(X + 0x2000, 1), RawTables.pte(0x3_0000L, true, true, false));
            t.mem.store64Release(entry(t, pgd, X, 2), RawTables.pte(other, true, true, false));
            // IH = 1 claims only leaves changed: the IOTLB forgets X, the cached PDE stays.
            q.submitSync(InvDesc.iotlbPage(7), InvDesc.iotlbPageQw1(X, 0, true));
            assertEquals(0x1_0000L, t.translate(r, X, false), "through the stale PDE to the old table");
            assertEquals(-FaultReason.READ.code, t.translate(r, X + 0x2000, false), "the old table has no such leaf");
            // Without the hint, over the 2 MiB the PDE covers: the new table is walked.
            q.submitSync(InvDesc.iotlbPage(7), InvDesc.iotlbPageQw1(X, 9, false));
            assertEquals(0x4_0000L, t.translate(r, X, false));
            assertEquals(0x3_0000L, t.translate(r, X + 0x2000, false));
        }
    }

    @Test
    void aDomainInvalidationDropsOnlyThatDomainsDirectoryEntries() {
        try (RawTables t = new RawTables(dir, UnitConfig.DEFAULT)) {
            final VtdProgrammer q = new VtdProgrammer(t.mem, t.board.unitRegisters(0), t.unit);
            q.enableQueue(RING, STATUS);
            final long ctp = t.rootEntry(0);
            final long pgdA = t.map(0, 4, X, 1, RawTables.pte(0xA000, true, true, false));
            final long pgdB = t.map(0, 4, X, 1, RawTables.pte(0xB000, true, true, false));
            t.contextEntry(ctp, 0x10, pgdA, 0, 2, 3);
            t.contextEntry(ctp, 0x18, pgdB, 0, 2, 4);
            assertEquals(0xA000, t.translate(new Requester(0x10), X, false));
            assertEquals(0xB000, t.translate(new Requester(0x18), X, false));
            final PagingStructureCache psc = t.unit.pagingStructureCache();
            assertEquals(6, psc.size(), "a PML4E, a PDPE and a PDE per domain");
            q.submitSync(InvDesc.iotlbDomain(3), 0);
            assertEquals(3, psc.size(), "domain 4's stay");
            q.submitSync(InvDesc.iotlbPage(4), InvDesc.iotlbPageQw1(X + 0x20_0000L, 0, false));
            assertEquals(1, psc.size(), "a PSI without the hint two megabytes on: the PDE (2 MiB) is spared, the wider ones go");
            q.submitSync(InvDesc.iotlbGlobal(), 0);
            assertEquals(0, psc.size());
            assertTrue(t.translate(new Requester(0x18), X, false) == 0xB000);
        }
    }
}
