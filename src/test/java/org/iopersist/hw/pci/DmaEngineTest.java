package org.iopersist.hw.pci;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.RemappingUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The DMA engine on its own (workload stopped): transfers that cross pages land page by page
 * where the tables say, a fault on any page aborts the whole transfer before it touches memory,
 * and interrupt-window writes are counted, not performed.
 */
class DmaEngineTest {
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;
    private static final long WINDOW = 0x7_0000_0000L;
    private static final Bdf DEV0 = Bdf.parse("0000:00:02.0");

    @TempDir
    Path dir;

    @Test
    void transfersCrossPagesFaultsAbortWholeAndInterruptsAreCounted() {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small()); Arena arena = Arena.ofConfined()) {
            // IOVA pages 0..2 mapped to frames 5, 1, 3 (out of order); page 3 unmapped; page 4 read-only.
            final HandTables.Domain d = rig.tables.domain(3);
            final long[] frames = {MachineRig.frame(5), MachineRig.frame(1), MachineRig.frame(3)};
            for (int i = 0; i < frames.length; i++) {
                d.map(WINDOW + i * PAGE, frames[i]);
            }
            d.map(WINDOW + 4 * PAGE, MachineRig.frame(7), true, false);
            d.map(RemappingUnit.INTERRUPT_BASE, MachineRig.frame(9));
            rig.tables.attach(DEV0, d);
            final CanaryPages canaries = new CanaryPages(rig.memory, 0xD3A);
            canaries.fill(MachineRig.frame(7), 1);
            canaries.fill(MachineRig.frame(9), 1);
            final DmaEngine dma = rig.machineOrNull.devices().getFirst().dma();
            final DeviceBar bar = rig.bar(0);

            final MemorySegment src = arena.allocate(3 * PAGE, 8);
            for (long i = 0; i < src.byteSize(); i++) {
                src.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7 + 3));
            }
            // 6000 bytes from page 0 offset 3000: the tail of page 0, all of page 1, the head of page 2.
            assertEquals(DmaEngine.DONE, dma.write(WINDOW + 3000, src, 0, 6000));
            assertArrayEquals(bytes(src, 0, 1096), bytes(rig.memory, frames[0] + 3000, 1096));
            assertArrayEquals(bytes(src, 1096, 4096), bytes(rig.memory, frames[1], 4096));
            assertArrayEquals(bytes(src, 5192, 808), bytes(rig.memory, frames[2], 808));
            final MemorySegment dst = arena.allocate(3 * PAGE, 8);
            assertEquals(DmaEngine.DONE, dma.read(WINDOW + 3000, dst, 8, 6000));
            assertArrayEquals(bytes(src, 0, 6000), bytes(dst, 8, 6000));

            // Copy 4000 bytes from page 0 + 3100 (ends in page 1) to page 1 + 4000 (ends in page 2).
            final byte[] expected = bytes(rig.memory, frames[0] + 3100, 996);
            final byte[] expected2 = bytes(rig.memory, frames[1], 3004);
            assertEquals(DmaEngine.DONE, dma.copy(WINDOW + 3100, WINDOW + PAGE + 4000, 4000));
            assertArrayEquals(java.util.Arrays.copyOf(expected, 96), bytes(rig.memory, frames[1] + 4000, 96));
            final MemorySegment back = arena.allocate(4000, 8);
            assertEquals(DmaEngine.DONE, dma.read(WINDOW + PAGE + 4000, back, 0, 4000));
            assertArrayEquals(expected, bytes(back, 0, 996));
            assertArrayEquals(expected2, bytes(back, 996, 3004));
            final long bytesSoFar = 6000 + 6000 + 2 * 4000 + 4000;
            assertEquals(bytesSoFar, bar.counters().bytes());

            // A write over pages 2, 3 and 4 faults on page 3 and leaves page 2 as it was.
            final byte[] page2 = bytes(rig.memory, frames[2], (int) PAGE);
            assertEquals(-FaultReason.WRITE.code, dma.write(WINDOW + 2 * PAGE + 100, src, 0, 2 * PAGE));
            assertArrayEquals(page2, bytes(rig.memory, frames[2], (int) PAGE));
            // A read-only page refuses writes and copies into it; a copy whose source faults moves nothing.
            assertEquals(-FaultReason.WRITE.code, dma.write(WINDOW + 4 * PAGE, src, 0, 64));
            assertEquals(-FaultReason.WRITE.code, dma.copy(WINDOW, WINDOW + 4 * PAGE, 64));
            assertEquals(-FaultReason.READ.code, dma.copy(WINDOW + 3 * PAGE, WINDOW, 64));
            assertArrayEquals(bytes(src, 0, 1096), bytes(rig.memory, frames[0] + 3000, 1096));
            assertEquals(-FaultReason.READ.code, dma.read(WINDOW + 3 * PAGE - 8, dst, 0, 16));
            assertEquals(DmaEngine.DONE, dma.read(WINDOW + 4 * PAGE, dst, 0, 64));

            // Interrupt requests: counted, no translation, no memory, even though the page is mapped.
            assertEquals(DmaEngine.INTERRUPT, dma.write(RemappingUnit.INTERRUPT_BASE, src, 0, 4));
            assertEquals(DmaEngine.INTERRUPT, dma.write(RemappingUnit.INTERRUPT_LAST - 3, src, 0, 4));
            assertEquals(DmaEngine.INTERRUPT, dma.copy(WINDOW, RemappingUnit.INTERRUPT_BASE + 0x40, 4));
            assertThrows(IllegalArgumentException.class, () -> dma.write(RemappingUnit.INTERRUPT_BASE - 2, src, 0, 4));
            assertThrows(IllegalArgumentException.class, () -> dma.write(-8L, src, 0, 16));
            assertThrows(IllegalArgumentException.class, () -> dma.read(WINDOW, dst, 0, 0));

            final DeviceCounters c = bar.counters();
            assertEquals(3, c.interrupts(), c.toString());
            assertEquals(3, c.faults(FaultReason.WRITE), c.toString());
            assertEquals(2, c.faults(FaultReason.READ), c.toString());
            assertEquals(5, c.faults(), c.toString());
            assertEquals(bytesSoFar + 64, c.bytes(), c.toString());
            assertEquals(List.of(), canaries.changes());
        }
    }

    private static byte[] bytes(final MemorySegment seg, final long offset, final int length) {
        return seg.asSlice(offset, length).toArray(ValueLayout.JAVA_BYTE);
    }

    private static byte[] bytes(final PhysicalMemory memory, final long phys, final int length) {
        final byte[] out = new byte[length];
        memory.read(phys, out, 0, length);
        return out;
    }
}
