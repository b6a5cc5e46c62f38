package org.iopersist.hw.vtd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * The walk against tables written by hand from the specification's bit layouts, for 3-, 4- and
 * 5-level tables and each leaf size, and every fault reason where the specification puts it.
 */
class WalkTest {
    private static final int SID = 0x0010; // 00:02.0
    private static final long GIB = 1L << 30;

    @TempDir
    Path dir;

    private static void assertFault(final RawTables t, final Requester r, final long iova, final boolean write,
            final FaultReason reason) {
        final long got = t.translate(r, iova, write);
        assertEquals(-reason.code, got, String.format("iova 0x%x %s", iova, write ? "write" : "read"));
    }

    @ParameterizedTest
    @ValueSource(ints = {3, 4, 5})
    void translatesEveryLeafSize(final int levels) {
        try (RawTables t = new RawTables(dir, UnitConfig.ofLevels(levels))) {
            final long ctp = t.rootEntry(0);
            final long iova4k = 0x12_3456_7000L & ((1L << (30 + 9 * (levels - 2))) - 1);
            final long iova2m = 0x4020_0000L;
            final long iova1g = 2 * GIB;
            long pgd = t.map(0, levels, iova4k, 1, RawTables.pte(0x1234_5000L, true, true, false));
            t.map(pgd, levels, iova2m, 2, RawTables.pte(0x2000_0000L, true, false, true));
            t.map(pgd, levels, iova1g, 3, RawTables.pte(0, true, true, true)); // the whole 1 GiB machine
            t.contextEntry(ctp, SID & 0xFF, pgd, 0, levels - 2, 5);
            final Requester r = new Requester(SID);
            assertEquals(0x1234_5abcL, t.translate(r, iova4k + 0xabc, true));
            assertEquals(0x2001_2345L, t.translate(r, iova2m + 0x1_2345, false));
            assertEquals(0x2345_6789L, t.translate(r, iova1g + 0x2345_6789L, true));
            assertFault(t, r, iova2m + 8, true, FaultReason.WRITE);
            // A second time from the IOTLB: the same answers.
            assertEquals(0x1234_5abcL, t.translate(r, iova4k + 0xabc, false));
            assertTrue(t.unit.iotlbHits() > 0);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {3, 4, 5})
    void faultsWhereTheSpecificationSays(final int levels) {
        final UnitConfig config = UnitConfig.ofLevels(levels);
        try (RawTables t = new RawTables(dir, config)) {
            final long ctp = t.rootEntry(0);
            final long pgd = t.map(0, levels, 0x1000, 1, RawTables.pte(0x20_0000L, true, false, false));
            t.contextEntry(ctp, 0x10, pgd, 0, levels - 2, 3);
            // Root entry of bus 1 not present.
            assertFault(t, new Requester(0x0110), 0x1000, false, FaultReason.ROOT_NOT_PRESENT);
            // Context entry of 00:03.0 not present.
            assertFault(t, new Requester(0x0018), 0x1000, false, FaultReason.CONTEXT_NOT_PRESENT);
            // AW this unit does not walk (SAGAW has only `levels`).
            t.contextEntry(ctp, 0x20, pgd, 0, levels == 5 ? 1 : levels - 1, 4);
            assertFault(t, new Requester(0x0020), 0x1000, false, FaultReason.CONTEXT_INVALID);
            // TT 3 is reserved.
            t.contextEntry(ctp, 0x28, pgd, 3, levels - 2, 4);
            assertFault(t, new Requester(0x0028), 0x1000, false, FaultReason.CONTEXT_INVALID);
            // Reserved bits in the context entry (lo bits 11:4).
            t.contextEntry(ctp, 0x30, pgd, 0, levels - 2, 4);
            t.mem.store64Release(ctp + 16L * 0x30, pgd | 1 | 0x100);
            assertFault(t, new Requester(0x0030), 0x1000, false, FaultReason.CONTEXT_RESERVED);
            final Requester r = new Requester(0x10);
            // Non-present leaf, non-present intermediate, and a write to a read-only leaf.
            assertFault(t, r, 0x2000, false, FaultReason.READ);
            assertFault(t, r, 0x4000_0000L, true, FaultReason.WRITE);
            assertFault(t, r, 0x1000, true, FaultReason.WRITE);
            assertEquals(0x20_0000L, t.translate(r, 0x1000, false));
            // An address bit above HAW (46) in a leaf is reserved.
            t.map(pgd, levels, 0x3000, 1, RawTables.pte(1L << 47, true, true, false));
            assertFault(t, r, 0x3000, false, FaultReason.PAGING_RESERVED);
            // A 2 MiB leaf with low address bits set is reserved.
            t.map(pgd, levels, 0x60_0000L, 2, RawTables.pte(0x80_0000L | 0x1000, true, true, true));
            assertFault(t, r, 0x60_0000L, false, FaultReason.PAGING_RESERVED);
            // Beyond the input width of the table (AGAW): the address is beyond MGAW.
            final int width = Math.min(30 + 9 * (levels - 1), config.mgaw());
            if (width < 64) {
                assertFault(t, r, 1L << width, false, FaultReason.ADDRESS_BEYOND_MGAW);
            }
        }
    }

    @Test
    void faultRecordsHoldSourceAddressAndReasonAndOverflow() {
        final UnitConfig config = UnitConfig.DEFAULT.withNfr(2);
        try (RawTables t = new RawTables(dir, config)) {
            t.rootEntry(0);
            final var regs = t.board.unitRegisters(0);
            assertFault(t, new Requester(0x0010), 0x5123, true, FaultReason.CONTEXT_NOT_PRESENT);
            assertEquals(0x5000, t.frcdLo(0), "FI: the faulting page");
            final long hi = t.frcdHi(0);
            assertTrue((hi & VtdRegisters.FRCD_HI_F) != 0);
            assertEquals(0, hi & VtdRegisters.FRCD_HI_T_READ, "a write");
            assertEquals(FaultReason.CONTEXT_NOT_PRESENT.code, (hi & VtdRegisters.FRCD_HI_FR_MASK) >>> VtdRegisters.FRCD_HI_FR_SHIFT);
            assertEquals(0x0010, hi & VtdRegisters.FRCD_HI_SID_MASK);
            assertTrue((regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_PPF) != 0);
            assertFault(t, new Requester(0x0110), 0x9000, false, FaultReason.ROOT_NOT_PRESENT);
            assertTrue((t.frcdHi(1) & VtdRegisters.FRCD_HI_T_READ) != 0, "a read");
            // Both records full: the third fault overflows (PFO) and is dropped.
            assertFault(t, new Requester(0x0110), 0xA000, false, FaultReason.ROOT_NOT_PRESENT);
            assertTrue((regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_PFO) != 0);
            assertEquals(0x5000, t.frcdLo(0), "the first record kept");
            // Software clears F (RW1C by compare-and-set) and PFO; PPF follows once no record is pending.
            for (int i = 0; i < 2; i++) {
                final long off = VtdRegisters.frcd(i) + 8;
                final long v = regs.read64(off);
                assertTrue(regs.cas64(off, v, v & ~VtdRegisters.FRCD_HI_F));
            }
            regs.clearBits32(VtdRegisters.FSTS, VtdRegisters.FSTS_PFO);
            t.unit.service();
            assertEquals(0, regs.read32(VtdRegisters.FSTS) & (VtdRegisters.FSTS_PPF | VtdRegisters.FSTS_PFO));
            // Recording resumes.
            assertFault(t, new Requester(0x0010), 0x7000, false, FaultReason.CONTEXT_NOT_PRESENT);
            assertTrue((regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_PPF) != 0);
        }
    }

    @Test
    void writesToTheInterruptWindowAreNotMemoryAccesses() {
        assertTrue(RemappingUnit.isInterruptWindow(0xFEE0_0000L));
        assertTrue(RemappingUnit.isInterruptWindow(0xFEEF_FFFCL));
        assertTrue(!RemappingUnit.isInterruptWindow(0xFEF0_0000L));
        assertTrue(!RemappingUnit.isInterruptWindow(0xFEDF_FFFFL));
    }
}
