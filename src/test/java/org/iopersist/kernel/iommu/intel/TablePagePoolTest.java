package org.iopersist.kernel.iommu.intel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.mm.FrameAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TablePagePoolTest {
    private static final long MIB = 1L << 20;
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;

    @TempDir
    Path dir;

    @Test
    void chunksGrowToTwoMegabytesAndHoldTheirPages() {
        try (PhysicalMemory mem = PhysicalMemory.create(dir.resolve("m"), 64 * MIB)) {
            final FrameAllocator frames = new FrameAllocator(mem, 64 * MIB, false);
            frames.open();
            final TablePagePool pool = new TablePagePool(mem, frames);
            final Set<Long> pages = new HashSet<>();
            for (int i = 0; i < 2048; i++) {
                final long phys = pool.allocZeroedPage();
                assertTrue(pages.add(phys), "handed out twice: 0x" + Long.toHexString(phys));
            }
            // 1 + 2 + ... + 256 = 511 pages in the first nine chunks, then 2 MiB chunks.
            assertEquals(9 + 4, pool.chunkCount());
            for (int i = 0; i < pool.chunkCount(); i++) {
                final long c = pool.chunk(i);
                final int order = (int) (c & (PAGE - 1));
                assertEquals(Math.min(i, TablePagePool.MAX_CHUNK_ORDER), order, "chunk " + i);
                assertEquals(0, (c & ~(PAGE - 1)) & ((PAGE << order) - 1), "naturally aligned");
            }
            assertEquals(2048, pool.pages());
            assertEquals(511 + 4 * 512, frames.stats().allocatedFrames());
            pool.freeAll();
            assertEquals(0, frames.stats().allocatedFrames(), "every chunk goes back");
        }
    }

    @Test
    void freedPagesComeBackZeroedAndEmptyChunksGoBack() {
        try (PhysicalMemory mem = PhysicalMemory.create(dir.resolve("m"), 64 * MIB)) {
            final FrameAllocator frames = new FrameAllocator(mem, 64 * MIB, false);
            frames.open();
            final TablePagePool pool = new TablePagePool(mem, frames);
            final Random rnd = new Random(7);
            final List<Long> live = new ArrayList<>();
            for (int step = 0; step < 20_000; step++) {
                if (live.isEmpty() || rnd.nextInt(3) != 0) {
                    final long phys = pool.allocZeroedPage();
                    for (long off = 0; off < PAGE; off += 8) {
                        assertEquals(0, mem.load64(phys + off), "a table page must start zeroed");
                    }
                    assertFalse(live.contains(phys));
                    mem.store64(phys + 8 * rnd.nextInt(512), 0xdeadbeefL); // unmap frees pages without clearing them
                    live.add(phys);
                } else {
                    pool.free(live.remove(rnd.nextInt(live.size())));
                }
                assertEquals(live.size(), pool.pages());
            }
            final long page = live.getFirst();
            pool.free(page);
            assertThrows(IllegalStateException.class, () -> pool.free(page), "a double free is a bug");
            for (long phys : live.subList(1, live.size())) {
                pool.free(phys);
            }
            assertEquals(0, pool.chunkCount());
            assertEquals(0, frames.stats().allocatedFrames(), "a chunk with no page in use goes back to the allocator");
        }
    }

    @Test
    void aHandedOverPoolIsRebuiltFromItsChunksAndTheWalk() {
        try (PhysicalMemory mem = PhysicalMemory.create(dir.resolve("m"), 64 * MIB)) {
            final FrameAllocator frames = new FrameAllocator(mem, 64 * MIB, false);
            frames.open();
            final TablePagePool pool = new TablePagePool(mem, frames);
            final List<Long> live = new ArrayList<>();
            for (int i = 0; i < 700; i++) {
                live.add(pool.allocZeroedPage());
            }
            final long[] chunks = new long[pool.chunkCount()];
            for (int i = 0; i < chunks.length; i++) {
                chunks[i] = pool.chunk(i);
            }
            final TablePagePool.Incoming in = TablePagePool.Incoming.of(mem, chunks);
            assertNotNull(in);
            for (long phys : live) {
                assertTrue(in.mark(phys));
            }
            assertFalse(in.mark(live.get(5)), "a page reached twice");
            assertFalse(in.mark(63 * MIB), "a page in no chunk");
            assertEquals(700, in.pages());
            assertEquals(-1, in.idleChunk());

            // The adopted pool goes on where the old one stopped: its free pages first, zeroed.
            final TablePagePool adopted = in.adopt(frames);
            mem.fill(chunks[chunks.length - 1] & ~(PAGE - 1), PAGE << 9, (byte) 0x5a);
            final long next = adopted.allocZeroedPage();
            assertFalse(live.contains(next));
            assertEquals(0, mem.load64(next + PAGE - 8));
            assertEquals(chunks.length, adopted.chunkCount());
            adopted.free(live.getFirst());
            assertEquals(700, adopted.pages());

            // A run of pages marked at once may cross from one chunk into the next, not beyond.
            final TablePagePool.Incoming runs = TablePagePool.Incoming.of(mem, chunks);
            final long c1 = chunks[1] & ~(PAGE - 1);
            final long c2 = chunks[2] & ~(PAGE - 1);
            assertEquals(c1 + 2 * PAGE, c2, "a fresh allocator hands the chunks of order 1 and 2 out side by side");
            assertEquals(-1, runs.mark(c1, 6));
            assertEquals(6, runs.pages());
            assertEquals(c2 + PAGE, runs.mark(c2 + PAGE, 1), "reached twice");
            final long c9 = chunks[9] & ~(PAGE - 1);
            assertEquals(-1, runs.mark(c9 + 400 * PAGE, 12));
            assertEquals(c9 + 512 * PAGE, runs.mark(c9 + 510 * PAGE, 4), "the first page past the last chunk");

            final long[] overlapping = {chunks[9], chunks[9] + PAGE * 4 & ~(PAGE - 1)};
            org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> TablePagePool.Incoming.of(mem, overlapping), "overlapping chunks");
            final TablePagePool.Incoming idle = TablePagePool.Incoming.of(mem, new long[] {chunks[0], chunks[9]});
            assertTrue(idle.mark(live.getFirst()));
            assertEquals(1, idle.idleChunk(), "a listed chunk the walk never reached");
        }
    }

    @Test
    void usageRoundTripsThroughAHandoverInChunksNotPages() {
        try (PhysicalMemory mem = PhysicalMemory.create(dir.resolve("m"), 64 * MIB)) {
            final FrameAllocator frames = new FrameAllocator(mem, 64 * MIB, false);
            frames.open();
            final TablePagePool pool = new TablePagePool(mem, frames);
            final List<Long> live = new ArrayList<>();
            for (int i = 0; i < 1500; i++) {
                live.add(pool.allocZeroedPage());
            }
            final Random rnd = new Random(3);
            for (int i = 0; i < 400; i++) {
                pool.free(live.remove(rnd.nextInt(live.size())));
            }
            final long[] chunks = new long[pool.chunkCount()];
            int words = 0;
            for (int i = 0; i < chunks.length; i++) {
                chunks[i] = pool.chunk(i);
                words += TablePagePool.usageWords((int) (chunks[i] & (PAGE - 1)));
            }
            final long[] usage = pool.usage();
            assertEquals(words, usage.length, "max(1, 2^order / 64) words a chunk");
            final TablePagePool.Incoming in = TablePagePool.Incoming.of(mem, chunks);
            assertNull(in.load(usage));
            assertEquals(live.size(), in.pages());
            assertTrue(in.sameUsage(pool));
            for (long phys : live) {
                assertTrue(in.inUse(phys), "live page 0x" + Long.toHexString(phys));
            }
            // Adopted, it frees what the old pool had in use and hands out only what was free.
            final TablePagePool adopted = in.adopt(frames);
            final Set<Long> fresh = new HashSet<>();
            for (int i = 0; i < 400; i++) {
                final long phys = adopted.allocZeroedPage();
                assertFalse(live.contains(phys), "a page in use handed out again");
                assertTrue(fresh.add(phys));
            }
            // A bit past the end of the one-frame first chunk, and a usage of the wrong length.
            final long[] bad = usage.clone();
            bad[0] |= 2;
            assertNotNull(TablePagePool.Incoming.of(mem, chunks).load(bad));
            assertNotNull(TablePagePool.Incoming.of(mem, chunks).load(java.util.Arrays.copyOf(usage, usage.length - 1)));
            // A walk that marked one page less is not the same usage.
            final TablePagePool.Incoming partial = pool.blank();
            for (int i = 1; i < live.size(); i++) {
                assertEquals(-1, partial.mark(live.get(i), 1));
            }
            assertFalse(partial.sameUsage(pool));
        }
    }
}
