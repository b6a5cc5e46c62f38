package org.iopersist.hw.pci;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The BAR layout and the record format against their documented diagrams, and the canary facility. */
class FormatsTest {
    @TempDir
    Path dir;

    private record Reg(String name, long offset, int width) {
    }

    @Test
    void barRegistersSitWhereTheDiagramSaysAndNeverOverlap() {
        final List<Reg> regs = new ArrayList<>(List.of(
                new Reg("ID", DeviceRegisters.ID, 4), new Reg("VERSION", DeviceRegisters.VERSION, 4),
                new Reg("SID", DeviceRegisters.SID, 4), new Reg("CTRL", DeviceRegisters.CTRL, 4),
                new Reg("STATUS", DeviceRegisters.STATUS, 4), new Reg("ERROR", DeviceRegisters.ERROR, 4),
                new Reg("WIN_BASE", DeviceRegisters.WIN_BASE, 8), new Reg("WIN_LENGTH", DeviceRegisters.WIN_LENGTH, 8),
                new Reg("MODE", DeviceRegisters.MODE, 4), new Reg("RECORD_SIZE", DeviceRegisters.RECORD_SIZE, 4),
                new Reg("GENERATION", DeviceRegisters.GENERATION, 8), new Reg("PACE_NS", DeviceRegisters.PACE_NS, 8),
                new Reg("MSI_ADDR", DeviceRegisters.MSI_ADDR, 8), new Reg("MSI_DATA", DeviceRegisters.MSI_DATA, 4),
                new Reg("MSI_INTERVAL", DeviceRegisters.MSI_INTERVAL, 4),
                new Reg("NEXT_SEQ", DeviceRegisters.NEXT_SEQ, 8), new Reg("OPS", DeviceRegisters.OPS, 8),
                new Reg("BYTES", DeviceRegisters.BYTES, 8), new Reg("CORRUPT", DeviceRegisters.CORRUPT, 8),
                new Reg("INTERRUPTS", DeviceRegisters.INTERRUPTS, 8), new Reg("FAULTS", DeviceRegisters.FAULTS, 8),
                new Reg("MAX_GAP_NS", DeviceRegisters.MAX_GAP_NS, 8),
                new Reg("LAT_COUNT", DeviceRegisters.LAT_COUNT, 8), new Reg("LAT_P50_NS", DeviceRegisters.LAT_P50_NS, 8),
                new Reg("LAT_P90_NS", DeviceRegisters.LAT_P90_NS, 8), new Reg("LAT_P99_NS", DeviceRegisters.LAT_P99_NS, 8),
                new Reg("LAT_P999_NS", DeviceRegisters.LAT_P999_NS, 8), new Reg("LAT_MAX_NS", DeviceRegisters.LAT_MAX_NS, 8),
                new Reg("LAT_EPOCH", DeviceRegisters.LAT_EPOCH, 8)));
        for (int r = 0; r < DeviceRegisters.FAULT_REASON_SLOTS; r++) {
            regs.add(new Reg("FAULT_REASON[" + r + "]", DeviceRegisters.faultReason(r), 8));
        }
        final boolean[] used = new boolean[(int) DeviceRegisters.SIZE];
        for (Reg reg : regs) {
            assertEquals(0, reg.offset % reg.width, reg + " is naturally aligned");
            assertTrue(reg.offset + reg.width <= DeviceRegisters.SIZE, reg + " fits the BAR");
            for (long b = reg.offset; b < reg.offset + reg.width; b++) {
                assertFalse(used[(int) b], reg + " overlaps another register");
                used[(int) b] = true;
            }
        }
        assertEquals(0x180 + 8 * 5, DeviceRegisters.faultReason(5));
        // RESET zeroes OPS..MAX_GAP_NS as one run of 64-bit counters.
        assertEquals(DeviceRegisters.OPS + 5 * 8, DeviceRegisters.MAX_GAP_NS);
        assertEquals(0x0010, DeviceRegisters.sidValue(Bdf.parse("0000:00:02.0")));
        assertEquals(0x0002_0318, DeviceRegisters.sidValue(Bdf.parse("0002:03:03.0")));
    }

    @Test
    void recordHeaderMatchesItsDiagramAndEveryByteCounts() {
        assertEquals(0x30, DmaRecord.HEADER_SIZE);
        assertEquals(0x00, DmaRecord.MAGIC_OFFSET);
        assertEquals(0x04, DmaRecord.SID_OFFSET);
        assertEquals(0x08, DmaRecord.SIZE_OFFSET);
        assertEquals(0x0C, DmaRecord.RESERVED_OFFSET);
        assertEquals(0x10, DmaRecord.SEQ_OFFSET);
        assertEquals(0x18, DmaRecord.IOVA_OFFSET);
        assertEquals(0x20, DmaRecord.GENERATION_OFFSET);
        assertEquals(0x28, DmaRecord.CHECKSUM_OFFSET);
        assertTrue(DmaRecord.MIN_SIZE > DmaRecord.HEADER_SIZE);
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment rec = arena.allocate(256, 8);
            DmaRecord.encode(rec, 0, 0x10, 256, 77, 0x1000, 5);
            assertEquals((byte) 'I', rec.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals((byte) 'R', rec.get(ValueLayout.JAVA_BYTE, 3));
            assertEquals(77, DmaRecord.validSeq(rec, 0, 0x10, 256, 0x1000, 5));
            assertEquals(DmaRecord.INVALID, DmaRecord.validSeq(rec, 0, 0x18, 256, 0x1000, 5));
            assertEquals(DmaRecord.INVALID, DmaRecord.validSeq(rec, 0, 0x10, 256, 0x1100, 5));
            assertEquals(DmaRecord.INVALID, DmaRecord.validSeq(rec, 0, 0x10, 256, 0x1000, 6));
            assertFalse(DmaRecord.isZero(rec, 0, 256));
            for (long bit = 0; bit < 256 * 8; bit += 13) {
                final long at = bit >>> 3;
                final byte old = rec.get(ValueLayout.JAVA_BYTE, at);
                rec.set(ValueLayout.JAVA_BYTE, at, (byte) (old ^ (1 << (bit & 7))));
                assertEquals(DmaRecord.INVALID, DmaRecord.validSeq(rec, 0, 0x10, 256, 0x1000, 5), "bit " + bit);
                rec.set(ValueLayout.JAVA_BYTE, at, old);
            }
            // Swapping two payload words keeps the multiset of words but not the record.
            final long w6 = rec.get(PhysicalMemory.U64, 48);
            final long w7 = rec.get(PhysicalMemory.U64, 56);
            assertNotEquals(w6, w7);
            rec.set(PhysicalMemory.U64, 48, w7);
            rec.set(PhysicalMemory.U64, 56, w6);
            assertEquals(DmaRecord.INVALID, DmaRecord.validSeq(rec, 0, 0x10, 256, 0x1000, 5));
        }
    }

    @Test
    void canariesNoticeAWrittenByteAZeroedFrameAndAFrameCopiedFromAnother() {
        try (PhysicalMemory memory = PhysicalMemory.create(dir.resolve("memory"), 1 << 20)) {
            final CanaryPages canaries = new CanaryPages(memory, 1);
            canaries.fill(0x1000, 2);
            canaries.fill(0x8000, 1);
            assertEquals(3, canaries.frames());
            assertTrue(canaries.intact());
            memory.fill(0x1000 + 4095, 1, (byte) 0x5A);
            memory.fill(0x2000, 4096, (byte) 0);
            memory.copy(0x1000, 0x8000, 4096); // a canary frame, but another frame's canary
            final List<CanaryPages.Change> changes = canaries.changes();
            assertEquals(3, changes.size(), changes.toString());
            assertEquals(0x1000 + 4088, changes.get(0).phys());
            assertEquals(0x2000, changes.get(1).phys());
            assertEquals(0x8000, changes.get(2).phys());
        }
    }
}
