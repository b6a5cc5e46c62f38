package org.iopersist.hw.vtd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Caches that behave like hardware's: a translation is served from the IOTLB or the context
 * cache until the invalidation that covers it, and only that one; and the invalidation queue's
 * order, wait status and error stop.
 */
class CacheAndQueueTest {
    private static final long RING = 0x10_0000L;
    private static final long STATUS = 0x20_0000L;

    @TempDir
    Path dir;

    private static final class Rig implements AutoCloseable {
        final RawTables t;
        final VtdProgrammer q;
        final long ctp;

        Rig(final Path dir, final UnitConfig config) {
            t = new RawTables(dir, config);
            q = new VtdProgrammer(t.mem, t.board.unitRegisters(0), t.unit);
            q.enableQueue(RING, STATUS);
            ctp = t.rootEntry(0);
        }

        @Override
        public void close() {
            t.close();
        }
    }

    @Test
    void theIotlbServesAChangedEntryUntilThePageSelectiveInvalidation() {
        try (Rig rig = new Rig(dir, UnitConfig.DEFAULT)) {
            final RawTables t = rig.t;
            final long pgd = t.map(0, 4, 0x4000_0000L, 1, RawTables.pte(0x1_0000L, true, true, false));
            t.map(pgd, 4, 0x4000_1000L, 1, RawTables.pte(0x2_0000L, true, true, false));
            t.contextEntry(rig.ctp, 0x10, pgd, 0, 2, 7);
            final Requester r = new Requester(0x10);
            assertEquals(0x1_0000L, t.translate(r, 0x4000_0000L, true));
            assertEquals(0x2_0000L, t.translate(r, 0x4000_1000L, true));
            // Both leaves change in memory; the hardware keeps its cached translations.
            final long leaf0 = findLeaf(t, pgd, 0x4000_0000L);
            t.mem.store64Release(leaf0, RawTables.pte(0x3_0000L, true, true, false));
            t.mem.store64Release(leaf0 + 8, 0);
            assertEquals(0x1_0000L, t.translate(r, 0x4000_0000L, true), "stale until invalidated");
            assertEquals(0x2_0000L, t.translate(r, 0x4000_1000L, true), "stale until invalidated");
            // PSI of the first page only (am 0): the second stays cached.
            rig.q.submitSync(InvDesc.iotlbPage(7), InvDesc.iotlbPageQw1(0x4000_0000L, 0, false));
            assertEquals(0x3_0000L, t.translate(r, 0x4000_0000L, true), "the new value after PSI");
            assertEquals(0x2_0000L, t.translate(r, 0x4000_1000L, true), "outside the PSI range");
            // PSI with address mask 1 covers both pages: the removed one faults now.
            rig.q.submitSync(InvDesc.iotlbPage(7), InvDesc.iotlbPageQw1(0x4000_0000L, 1, false));
            assertEquals(-FaultReason.WRITE.code, t.translate(r, 0x4000_1000L, true));
        }
    }

    @Test
    void aDomainInvalidationDropsOnlyThatDomain() {
        try (Rig rig = new Rig(dir, UnitConfig.DEFAULT)) {
            final RawTables t = rig.t;
            final long pgdA = t.map(0, 4, 0x1000, 1, RawTables.pte(0xA000, true, true, false));
            final long pgdB = t.map(0, 4, 0x1000, 1, RawTables.pte(0xB000, true, true, false));
            t.contextEntry(rig.ctp, 0x10, pgdA, 0, 2, 3);
            t.contextEntry(rig.ctp, 0x18, pgdB, 0, 2, 4);
            final Requester a = new Requester(0x10);
            final Requester b = new Requester(0x18);
            assertEquals(0xA000, t.translate(a, 0x1000, false));
            assertEquals(0xB000, t.translate(b, 0x1000, false));
            t.mem.store64Release(findLeaf(t, pgdA, 0x1000), RawTables.pte(0xC000, true, true, false));
            t.mem.store64Release(findLeaf(t, pgdB, 0x1000), RawTables.pte(0xD000, true, true, false));
            rig.q.submitSync(InvDesc.iotlbDomain(3), 0);
            assertEquals(0xC000, t.translate(a, 0x1000, false), "domain 3 re-walked");
            assertEquals(0xB000, t.translate(b, 0x1000, false), "domain 4 untouched");
            rig.q.submitSync(InvDesc.iotlbGlobal(), 0);
            assertEquals(0xD000, t.translate(b, 0x1000, false), "global drops everything");
        }
    }

    @Test
    void theContextCacheServesAnOldEntryUntilInvalidated() {
        try (Rig rig = new Rig(dir, UnitConfig.DEFAULT)) {
            final RawTables t = rig.t;
            final long pgdA = t.map(0, 4, 0x1000, 1, RawTables.pte(0xA000, true, true, false));
            final long pgdB = t.map(0, 4, 0x1000, 1, RawTables.pte(0xB000, true, true, false));
            t.contextEntry(rig.ctp, 0x10, pgdA, 0, 2, 3);
            final Requester r = new Requester(0x10);
            assertEquals(0xA000, t.translate(r, 0x1000, false));
            // Clear and re-point the entry at domain 5 / pgdB, without invalidating.
            t.mem.store64Release(rig.ctp + 16L * 0x10, 0);
            t.contextEntry(rig.ctp, 0x10, pgdB, 0, 2, 5);
            assertEquals(0xA000, t.translate(r, 0x1000, false), "context and IOTLB still cached");
            rig.q.submitSync(InvDesc.contextDevice(3, 0x10, 0), 0);
            assertEquals(0xB000, t.translate(r, 0x1000, false), "new context: domain 5 has nothing cached");
            // Domain- and global-granular context invalidation.
            t.mem.store64Release(rig.ctp + 16L * 0x10, 0);
            assertEquals(0xB000, t.translate(r, 0x1000, false));
            rig.q.submitSync(InvDesc.contextDomain(5), 0, InvDesc.iotlbDomain(5), 0);
            assertEquals(-FaultReason.CONTEXT_NOT_PRESENT.code, t.translate(r, 0x1000, false));
            t.contextEntry(rig.ctp, 0x10, pgdA, 0, 2, 3);
            rig.q.submitSync(InvDesc.contextGlobal(), 0, InvDesc.iotlbGlobal(), 0);
            assertEquals(0xA000, t.translate(r, 0x1000, false));
        }
    }

    @Test
    void cachesAreBoundedAndEvict() {
        try (Rig rig = new Rig(dir, UnitConfig.DEFAULT.withCaches(8, 4))) {
            final RawTables t = rig.t;
            long pgd = 0;
            for (int i = 0; i < 64; i++) {
                pgd = t.map(pgd, 4, (long) i << 12, 1, RawTables.pte(0x100_0000L + ((long) i << 12), true, true, false));
            }
            t.contextEntry(rig.ctp, 0x10, pgd, 0, 2, 3);
            final Requester r = new Requester(0x10);
            for (int lap = 0; lap < 2; lap++) {
                for (int i = 0; i < 64; i++) {
                    assertEquals(0x100_0000L + ((long) i << 12), t.translate(r, (long) i << 12, false));
                }
            }
            assertTrue(t.unit.iotlb().size() <= 8, "bounded: " + t.unit.iotlb().size());
            assertTrue(t.unit.iotlbMisses() > 64, "evicted entries were walked again");
        }
    }

    @Test
    void theQueueRunsInOrderWritesTheWaitStatusAndStopsOnABadDescriptor() {
        try (Rig rig = new Rig(dir, UnitConfig.DEFAULT)) {
            final RawTables t = rig.t;
            final var regs = t.board.unitRegisters(0);
            final long status = 0x30_0000L;
            // Three descriptors, the last a wait with status write: IQH reaches IQT, status written.
            rig.q.post(InvDesc.contextGlobal(), 0, InvDesc.iotlbGlobal(), 0, InvDesc.wait(0x1234, true), status);
            t.unit.service();
            assertEquals(regs.read64(VtdRegisters.IQT), regs.read64(VtdRegisters.IQH));
            assertEquals(0x1234, t.mem.load32Acquire(status));
            final long before = t.unit.descriptorsProcessed();
            // A descriptor of unknown type 7 between two good ones: the first runs, the queue stops on the bad one.
            final long headBefore = regs.read64(VtdRegisters.IQH);
            rig.q.post(InvDesc.iotlbGlobal(), 0, 7, 0, InvDesc.wait(0x5678, false), status);
            t.unit.service();
            assertTrue((regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_IQE) != 0, "IQE set");
            assertEquals(headBefore + 16, regs.read64(VtdRegisters.IQH), "IQH stays on the bad descriptor");
            assertEquals(before + 1, t.unit.descriptorsProcessed());
            assertEquals(0x1234, t.mem.load32Acquire(status), "the wait behind it did not run");
            t.unit.service();
            assertEquals(headBefore + 16, regs.read64(VtdRegisters.IQH), "stopped while IQE is set");
            // Software replaces the bad descriptor and clears IQE: the queue resumes from IQH.
            t.mem.store64(RING + headBefore + 16 + 8, 0);
            t.mem.store64Release(RING + headBefore + 16, InvDesc.TYPE_WAIT);
            regs.clearBits32(VtdRegisters.FSTS, VtdRegisters.FSTS_IQE);
            t.unit.service();
            assertEquals(regs.read64(VtdRegisters.IQT), regs.read64(VtdRegisters.IQH));
            assertEquals(0x5678, t.mem.load32Acquire(status));
        }
    }

    /** Address of the level-1 entry for {@code iova} in a 4-level table. */
    private static long findLeaf(final RawTables t, final long pgd, final long iova) {
        long table = pgd;
        for (int l = 4; l > 1; l--) {
            table = t.mem.load64(table + 8L * RawTables.index(iova, l)) & 0x000F_FFFF_FFFF_F000L;
        }
        return table + 8L * RawTables.index(iova, 1);
    }
}
