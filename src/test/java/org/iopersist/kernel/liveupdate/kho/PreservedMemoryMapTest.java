package org.iopersist.kernel.liveupdate.kho;

import org.iopersist.kernel.mm.FrameSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.iopersist.hw.memory.PhysicalMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The preserved-memory tracker: what one kernel marks, another reads back from memory alone;
 * its size does not grow per frame; a damaged tracker is refused whole.
 */
class PreservedMemoryMapTest {
    @TempDir
    Path tmp;
    PhysicalMemory memory;
    /** A bump allocator from the top of memory, standing in for the kernel's allocator. */
    long nextFrame;
    final List<Long> freed = new ArrayList<>();
    FrameSource frames;

    @BeforeEach
    void setUp() {
        memory = PhysicalMemory.create(tmp.resolve("memory"), 1L << 40);
        nextFrame = memory.size();
        frames = new FrameSource() {
            @Override
            public long allocZeroedFrame() {
                nextFrame -= PhysicalMemory.FRAME_SIZE;
                return nextFrame;
            }

            @Override
            public void freeFrame(final long phys) {
                freed.add(phys);
            }

            @Override
            public long allocZeroedRun(final int order) {
                throw new UnsupportedOperationException("the tracker allocates single frames only");
            }

            @Override
            public void freeRun(final long phys, final int order) {
                freed.add(phys);
            }
        };
    }

    @AfterEach
    void tearDown() {
        memory.close();
    }

    record Block(long phys, int order) {
    }

    Set<Block> read(final long first, final Set<Long> metadata) throws HandoverFormatException {
        final Set<Block> out = new HashSet<>();
        PreservedMemoryMap.deserialize(memory, first, new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) {
                assertTrue(out.add(new Block(phys, order)), "reported twice");
            }

            @Override
            public void metadata(final long phys) {
                metadata.add(phys);
            }
        });
        return out;
    }

    @Test
    void blocksOfEveryOrderSurviveSerialization() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        final Set<Block> expected = new HashSet<>();
        for (int order = 0; order <= 18; order += 3) {
            for (long i = 1; i <= 5; i++) {
                final long phys = (i * 7919L << (order + 12)) % (1L << 39) & ~((4096L << order) - 1);
                if (map.preserve(phys, order)) {
                    expected.add(new Block(phys, order));
                }
            }
        }
        assertFalse(map.preserve(expected.iterator().next().phys(), expected.iterator().next().order()),
                "preserving twice reports it");
        final Set<Long> metadata = new HashSet<>();
        final long first = map.serialize();
        assertEquals(expected, read(first, metadata));
        assertEquals(map.metadataFrames(), metadata.size());
    }

    @Test
    void aTebibyteOfFramesCostsBitmapsNotRecords() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        // Every 4 KiB frame of 1 TiB, as if all were table pages: 2^28 order-0 preservations would be
        // slow to make one by one, so cover them the way a range preservation does, then check size.
        for (long phys = 0; phys < (1L << 30); phys += 4096) {
            map.preserve(phys, 0);
        }
        assertEquals(1L << 18, map.preservedFrames());
        // 1 GiB of order-0 frames: 8 bitmaps of 128 MiB each, one chunk.
        map.serialize();
        assertEquals(8 + 1, map.metadataFrames());
    }

    @Test
    void rangesSplitIntoNaturallyAlignedBlocks() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        map.preserveRange(0x3000, 0x20_0000 + 0x1000);
        final Set<Block> got = read(map.serialize(), new HashSet<>());
        long covered = 0;
        for (Block b : got) {
            assertEquals(0, b.phys() & ((4096L << b.order()) - 1), "block aligned to its order");
            covered += 4096L << b.order();
        }
        assertEquals(0x20_1000, covered);
        assertTrue(got.contains(new Block(0x3000, 0)));
        assertTrue(got.stream().anyMatch(b -> b.order() >= 8), "large blocks used: " + got);
        map.unpreserveRange(0x3000, 0x20_1000);
        assertEquals(0, map.preservedFrames());
        assertEquals(Set.of(), read(map.serialize(), new HashSet<>()));
    }

    @Test
    void damagedTrackerIsRefusedWhole() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        map.preserve(0x10_0000, 0);
        map.preserve(0x20_0000, 9);
        final long first = map.serialize();
        final List<Block> reported = new ArrayList<>();
        final PreservedMemoryMap.Visitor collect = new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) {
                reported.add(new Block(phys, order));
            }

            @Override
            public void metadata(final long phys) {
            }
        };
        // Bad magic.
        final int magic = memory.load32(first + 8);
        memory.store32Release(first + 8, 0x12345678);
        assertThrows(HandoverFormatException.class, () -> PreservedMemoryMap.deserialize(memory, first, collect));
        memory.store32Release(first + 8, magic);
        // A loop.
        final long next = memory.load64(first);
        assertTrue(next != 0, "two orders, two chunks");
        memory.store64(next, first);
        assertThrows(HandoverFormatException.class, () -> PreservedMemoryMap.deserialize(memory, first, collect));
        memory.store64(next, 0);
        // A pointer outside memory and a misaligned one.
        assertThrows(HandoverFormatException.class, () -> PreservedMemoryMap.deserialize(memory, 1L << 41, collect));
        assertThrows(HandoverFormatException.class, () -> PreservedMemoryMap.deserialize(memory, first + 8, collect));
        assertTrue(reported.isEmpty(), "nothing reported from a tracker that did not validate");
        PreservedMemoryMap.deserialize(memory, first, collect);
        assertEquals(2, reported.size());
    }

    @Test
    void misalignedBlocksAreRejected() {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        assertThrows(IllegalArgumentException.class, () -> map.preserve(0x1000, 1));
        assertThrows(IllegalArgumentException.class, () -> map.preserve(0x1001, 0));
        assertThrows(IllegalArgumentException.class, () -> map.preserveRange(0x1000, 0x800));
    }
}
