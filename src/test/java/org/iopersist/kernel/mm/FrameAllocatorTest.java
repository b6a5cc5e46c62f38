package org.iopersist.kernel.mm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FrameAllocatorTest {
    private static final long MIB = 1L << 20;
    private static final long FRAME = PhysicalMemory.FRAME_SIZE;

    @TempDir
    Path dir;
    PhysicalMemory memory;

    @BeforeEach
    void setUp() {
        memory = PhysicalMemory.create(dir.resolve("memory"), 16 * MIB);
    }

    @AfterEach
    void tearDown() {
        memory.close();
    }

    private static void assertAccounted(final FrameAllocator a) {
        final FrameAllocator.Stats s = a.stats();
        assertEquals(s.totalFrames(), s.freeFrames() + s.reservedFrames() + s.allocatedFrames(), s.toString());
    }

    @Test
    void reservedRangesAreNeverHandedOut() {
        final FrameAllocator a = new FrameAllocator(memory, 16 * MIB, false);
        a.reserve(new PhysRange(0, MIB), "firmware");
        a.reserve(new PhysRange(3 * MIB, 2 * MIB), "carve-out");
        a.reserve(new PhysRange(4 * MIB, 2 * MIB), "overlapping");
        a.open();
        assertEquals(256 + 768, a.stats().reservedFrames(), "overlap counted once");
        assertAccounted(a);
        final Set<Long> seen = new HashSet<>();
        while (a.stats().freeFrames() > 0) {
            final long phys = a.allocRun(0);
            assertTrue(seen.add(phys), "handed out twice: " + Long.toHexString(phys));
            assertFalse(phys < MIB || (phys >= 3 * MIB && phys < 6 * MIB), "reserved frame 0x" + Long.toHexString(phys));
        }
        assertEquals(4096 - 256 - 768, seen.size());
        assertEquals(Errno.ENOMEM, assertThrows(KernelException.class, () -> a.allocRun(0)).errno());
        assertAccounted(a);
    }

    @Test
    void runsAreAlignedAndCoalesceBack() {
        final FrameAllocator a = new FrameAllocator(memory, 16 * MIB, false);
        a.open();
        final Random rnd = new Random(42);
        final List<long[]> held = new ArrayList<>();
        for (int i = 0; i < 300; i++) {
            final int order = rnd.nextInt(5);
            final long phys = a.allocRun(order);
            assertEquals(0, phys & ((FRAME << order) - 1), "run of order " + order + " at 0x" + Long.toHexString(phys));
            held.add(new long[] {phys, order});
        }
        assertAccounted(a);
        java.util.Collections.shuffle(held, rnd);
        for (long[] h : held) {
            a.freeRun(h[0], (int) h[1]);
        }
        assertEquals(4096, a.stats().freeFrames());
        // Everything coalesced: the whole 16 MiB comes back as one order-12 run.
        assertEquals(0, a.allocRun(12));
        assertAccounted(a);
    }

    @Test
    void doubleFreeAndBadFreesAreCaught() {
        final FrameAllocator a = new FrameAllocator(memory, 16 * MIB, false);
        a.open();
        final long phys = a.allocZeroedFrame();
        a.freeFrame(phys);
        assertThrows(IllegalStateException.class, () -> a.freeFrame(phys));
        assertThrows(IllegalArgumentException.class, () -> a.freeRun(FRAME, 1), "misaligned run");
        assertThrows(IllegalArgumentException.class, () -> a.freeFrame(16 * MIB), "beyond memory");
        assertThrows(IllegalStateException.class, () -> a.freeRun(0, 12), "free frames inside the run");
        assertAccounted(a);
    }

    @Test
    void earlyReservationsGivenBackBecomeFree() {
        final FrameAllocator a = new FrameAllocator(memory, 16 * MIB, false);
        a.reserve(new PhysRange(8 * MIB, 2 * MIB), "preserved");
        a.open();
        final long before = a.stats().freeFrames();
        a.freeRun(8 * MIB, 9); // as KHO's finish frees what nobody claimed
        assertEquals(before + 512, a.stats().freeFrames());
        assertEquals(0, a.stats().reservedFrames());
        assertAccounted(a);
    }

    @Test
    void poisoningCatchesAWriteAfterFree() {
        final FrameAllocator a = new FrameAllocator(memory, 16 * MIB, true);
        a.reserve(new PhysRange(0, 15 * MIB), "most of it");
        a.open();
        final long phys = a.allocZeroedFrame();
        assertEquals(0, memory.load64(phys), "allocZeroed zeroes the poison");
        a.freeFrame(phys);
        assertEquals(0x6b6b6b6b6b6b6b6bL, memory.load64(phys + 64), "freed frames are poisoned");
        assertEquals(0, a.stats().poisonViolations());
        memory.store64(phys + 128, 0xBADL); // a stale writer
        // Hand out every frame so the written one is checked.
        while (a.stats().freeFrames() > 0) {
            a.allocRun(0);
        }
        assertEquals(1, a.stats().poisonViolations());
    }

    @Test
    void largeRunsAreZeroedAndPoisonedWithoutWritingThem() {
        memory.fill(0, 16 * MIB, (byte) 0x5A); // stale contents everywhere
        assertTrue(memory.allocatedBytes() >= 16 * MIB);
        final FrameAllocator a = new FrameAllocator(memory, 16 * MIB, true);
        a.open(); // one order-12 run, poisoned as a hole
        assertTrue(memory.allocatedBytes() < 64 * 1024, "poisoning 16 MiB cost " + memory.allocatedBytes() + " bytes");
        final long run = a.allocZeroedRun(10);
        assertEquals(0, a.stats().poisonViolations(), "a hole passes the poison check");
        assertEquals(0, memory.load64(run + 4 * MIB - 8));
        memory.fill(run, 4 * MIB, (byte) 0x77);
        a.freeRun(run, 10);
        assertEquals(0, memory.load64(run), "freed large runs are zeroed, not written");
        assertTrue(memory.allocatedBytes() < 64 * 1024, "after free: " + memory.allocatedBytes());
        final long small = a.allocRun(0);
        a.freeFrame(small);
        assertEquals(0x6b6b6b6b6b6b6b6bL, memory.load64(small + 8), "small runs still get the poison pattern");
        memory.store64(run + 3 * MIB + 16, 0xBADL); // a stale writer into a zeroed run
        while (a.stats().freeFrames() > 0) {
            a.allocRun(0);
        }
        assertEquals(1, a.stats().poisonViolations());
    }

    @Test
    void reservationsCloseWhenTheAllocatorOpens() {
        final FrameAllocator a = new FrameAllocator(memory, 16 * MIB, false);
        assertThrows(IllegalStateException.class, () -> a.allocRun(0), "no allocation before open");
        a.open();
        assertThrows(IllegalStateException.class, () -> a.reserve(new PhysRange(0, FRAME), "late"));
        assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> a.allocRun(FrameAllocator.MAX_ORDER + 1)).errno());
    }
}
