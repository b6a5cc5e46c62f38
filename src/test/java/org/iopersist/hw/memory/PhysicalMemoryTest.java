package org.iopersist.hw.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.iopersist.testing.ChildJvm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Physical memory: sparse, shared between processes, atomic where it must be, bounds-checked. */
class PhysicalMemoryTest {
    private static final long TIB = 1L << 40;

    @TempDir
    Path dir;

    @Test
    void aTebibyteMachineCostsOnlyWhatIsTouched() {
        try (PhysicalMemory m = PhysicalMemory.create(dir.resolve("memory"), TIB)) {
            assertEquals(TIB, m.size());
            assertTrue(m.allocatedBytes() < (1L << 20), "fresh: " + m.allocatedBytes());
            for (long phys : new long[] {0, 1L << 30, TIB / 2, TIB - 4096}) {
                m.store64(phys, phys ^ 0x5A5A);
            }
            assertTrue(m.allocatedBytes() <= 4 * 64 * 1024, "four pages touched cost " + m.allocatedBytes() + " bytes");
            assertEquals((TIB - 4096) ^ 0x5A5A, m.load64(TIB - 4096));
        }
    }

    /** Opens the file another JVM created, checks its word, and writes one back. */
    public static final class Peer {
        public static void main(final String[] args) {
            try (PhysicalMemory m = PhysicalMemory.open(Path.of(args[0]))) {
                System.out.printf("peer sees %x%n", m.load64Acquire(0x1000));
                m.store64Release(0x2000, 0xFEEDL);
            }
        }
    }

    @Test
    void aSecondJvmSeesTheSameBytes() throws Exception {
        try (PhysicalMemory m = PhysicalMemory.create(dir.resolve("memory"), 1L << 30)) {
            m.store64Release(0x1000, 0xC0FFEEL);
            try (ChildJvm child = ChildJvm.start(dir.resolve("child.log"), Peer.class, dir.resolve("memory").toString())) {
                assertEquals(0, child.waitFor(60), child.output());
                assertTrue(child.output().contains("peer sees c0ffee"), child.output());
            }
            assertEquals(0xFEEDL, m.load64Acquire(0x2000));
        }
    }

    @Test
    void zeroRangePunchesAHoleThatEveryMappingReadsAsZeros() {
        final long mib = 1L << 20;
        final long start = 64 * mib - 100; // unaligned at both ends
        final long length = 16 * mib + 200;
        try (PhysicalMemory m = PhysicalMemory.create(dir.resolve("memory"), 1L << 30);
             PhysicalMemory other = PhysicalMemory.open(dir.resolve("memory"))) { // as another process maps it
            m.fill(start - 4096, length + 8192, (byte) 0x5A);
            assertEquals(0x5A5A5A5A5A5A5A5AL, other.load64(64 * mib));
            final long written = m.allocatedBytes();
            assertTrue(written >= length, "written: " + written);
            m.zeroRange(start, length);
            final byte[] edge = new byte[2];
            m.read(start - 1, edge, 0, 2);
            assertEquals(0x5A, edge[0], "the byte before the range is kept");
            assertEquals(0, edge[1]);
            m.read(start + length - 1, edge, 0, 2);
            assertEquals(0, edge[0]);
            assertEquals(0x5A, edge[1], "the byte after the range is kept");
            for (long p = 64 * mib; p < 80 * mib; p += 4096) {
                assertEquals(0, other.load64(p), "the other mapping reads zeros at 0x" + Long.toHexString(p));
                assertEquals(0, m.load64(p + 4088));
            }
            final long after = m.allocatedBytes();
            assertTrue(written - after >= 16 * mib - 8192, "zeroing freed the disk: " + written + " -> " + after);
            m.zeroRange(0, 100); // within one frame: just written
            m.zeroRange(0, 0);
            assertThrows(PhysicalAccessException.class, () -> m.zeroRange((1L << 30) - 4096, 8192));
        }
    }

    @Test
    void accessesAreAtomicCheckedAndNeverCrash() {
        try (PhysicalMemory m = PhysicalMemory.create(dir.resolve("memory"), 1L << 20)) {
            m.store64(0x100, 1);
            m.store64Release(0x108, 2);
            assertEquals(1, m.load64Acquire(0x100));
            assertEquals(2, m.load64(0x108));
            assertTrue(m.compareAndSet64(0x100, 1, 3));
            assertTrue(!m.compareAndSet64(0x100, 1, 4));
            assertEquals(3, m.load64(0x100));
            m.fill(0x1000, 0x1000, (byte) 7);
            m.copy(0x1000, 0x3000, 0x1000);
            assertEquals(0x0707070707070707L, m.load64(0x3ff8));
            for (long bad : new long[] {-8, 1L << 20, (1L << 20) - 4, Long.MAX_VALUE}) {
                final PhysicalAccessException e = assertThrows(PhysicalAccessException.class, () -> m.load64(bad));
                assertTrue(e.getMessage().contains("0x"), e.getMessage());
            }
            assertThrows(PhysicalAccessException.class, () -> m.store64(0x104, 1), "misaligned");
            assertThrows(PhysicalAccessException.class, () -> m.copy(0, (1L << 20) - 8, 16), "copy past the end");
            assertThrows(PhysicalAccessException.class, () -> m.fill(-4096, 4096, (byte) 0));
        }
    }
}
