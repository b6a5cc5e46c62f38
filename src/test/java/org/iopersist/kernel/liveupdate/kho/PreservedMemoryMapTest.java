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
        assertEquals(expected, read(map.rootPhys(), metadata));
        assertEquals(map.metadataFrames(), metadata.size());
        assertEquals(0, new PreservedMemoryMap(memory, frames).rootPhys(), "nothing preserved, no tree");
    }

    /** The key and the path to its bit, by hand from radix_tree.h, for orders 0, 9 and 18. */
    @Test
    void keysAndNodesAreLaidOutAsMainline() {
        assertEquals(0x0010_0000_0001_2345L, PreservedMemoryMap.key(0x1234_5000L, 0));
        assertEquals(0x0000_0800_0000_0200L, PreservedMemoryMap.key(0x4000_0000L, 9));
        assertEquals(0x0000_0004_0000_0100L, PreservedMemoryMap.key(0x40_0000_0000L, 18));
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        map.preserve(0x1234_5000L, 0);
        map.preserve(0x4000_0000L, 9);
        map.preserve(0x40_0000_0000L, 18);
        final long root = map.rootPhys();
        // Order 0: bit 52 is root slot 2 (59:51); level 4..2 slot 0; level 1 (23:15) slot 0x12345 >> 15 = 2; leaf bit 0x2345.
        assertLeafBit(root, new int[] {2, 0, 0, 0, 2}, 0x2345);
        // Order 9: bit 43 is level-4 slot 2 (50:42); leaf bit 0x200.
        assertLeafBit(root, new int[] {0, 2, 0, 0, 0}, 0x200);
        // Order 18: bit 34 is level-3 slot 2 (41:33); leaf bit 0x100.
        assertLeafBit(root, new int[] {0, 0, 2, 0, 0}, 0x100);
        // Root; order 0's own level 4..1 and leaf; orders 9 and 18 share root slot 0's level-4 node, then
        // order 9 has its level 3..1 and leaf, order 18 its level 3 (slot 0), 2, 1 and leaf.
        assertEquals(1 + 5 + 5 + 4, map.metadataFrames());
    }

    private void assertLeafBit(final long root, final int[] slots, final int bit) {
        long node = root;
        for (int slot : slots) {
            node = memory.load64(node + slot * 8L);
            assertTrue(node != 0 && (node & 4095) == 0, "a node frame at every level");
        }
        assertEquals(1L << (bit & 63), memory.load64(node + (bit >>> 6) * 8L), "only that bit in its word");
    }

    @Test
    void randomPreservationsOfMixedOrdersMatchASet() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        final java.util.Random random = new java.util.Random(17);
        final Set<Block> model = new HashSet<>();
        final int[] orders = {0, 1, 2, 8, 9, 10, 17, 18, 20, 27};
        for (int i = 0; i < 20_000; i++) {
            final int order = orders[random.nextInt(orders.length)];
            // At most 64 blocks per order, spread over the 1 TiB, so preserve and unpreserve hit each other.
            final long blocks = 1L << (40 - 12 - order);
            final long choices = Math.min(blocks, 64);
            final long phys = (random.nextLong(choices) * (blocks / choices)) << (12 + order);
            final Block b = new Block(phys, order);
            if (random.nextInt(3) == 0) {
                assertEquals(model.remove(b), map.unpreserve(phys, order), "unpreserve " + b);
            } else {
                assertEquals(model.add(b), map.preserve(phys, order), "preserve " + b);
            }
        }
        assertTrue(model.size() > 100, "the model is not trivial: " + model.size());
        final Set<Long> metadata = new HashSet<>();
        assertEquals(model, read(map.rootPhys(), metadata));
        assertEquals(model.stream().mapToLong(b -> 1L << b.order()).sum(), map.preservedFrames());
        assertEquals(map.metadataFrames(), metadata.size());
        assertEquals(metadata.size(), PreservedMemoryMap.readLayout(memory, map.rootPhys()).size());
        for (PreservedMemoryMap.Node n : PreservedMemoryMap.readLayout(memory, map.rootPhys())) {
            if (n.level() == 0) {
                assertEquals(0, n.physStart() & ((4096L << n.order() << 15) - 1), "a leaf covers 32768 aligned blocks");
            }
        }
    }

    @Test
    void aGibibyteOfFramesCostsLeavesNotRecords() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        for (long phys = 0; phys < (1L << 30); phys += 4096) {
            map.preserve(phys, 0);
        }
        assertEquals(1L << 18, map.preservedFrames());
        // 1 GiB of order-0 frames: 8 leaves of 128 MiB each under one level-1 node, 5 table nodes in all.
        assertEquals(8 + 5, map.metadataFrames());
    }

    @Test
    void rangesSplitIntoNaturallyAlignedBlocks() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        map.preserveRange(0x3000, 0x20_0000 + 0x1000);
        final Set<Block> got = read(map.rootPhys(), new HashSet<>());
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
        assertEquals(Set.of(), read(map.rootPhys(), new HashSet<>()));
    }

    @Test
    void damagedTreeIsRefusedWhole() throws Exception {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        map.preserve(0x10_0000, 0);
        map.preserve(0x20_0000, 9);
        final long root = map.rootPhys();
        final List<Block> reported = new ArrayList<>();
        final PreservedMemoryMap.Visitor collect = new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) {
                reported.add(new Block(phys, order));
            }

            @Override
            public void metadata(final long phys) {
                reported.add(new Block(phys, -1));
            }
        };
        final long l4 = memory.load64(root + 2 * 8);
        long node;
        // A node pointer outside memory, and a misaligned one.
        memory.store64(root + 2 * 8, 1L << 41);
        refused(root, collect, "not a frame of memory");
        memory.store64(root + 2 * 8, l4 + 8);
        refused(root, collect, "not a frame of memory");
        memory.store64(root + 2 * 8, l4);
        // A cycle: a level-4 slot back to the root; a node shared by two slots.
        memory.store64(l4 + 100 * 8, root);
        refused(root, collect, "reached twice");
        memory.store64(l4 + 100 * 8, memory.load64(l4));
        refused(root, collect, "reached twice");
        memory.store64(l4 + 100 * 8, 0);
        // Key bits 63:53 set: root slot 4 and up, even to a fresh node.
        memory.store64(root + 4 * 8, frames.allocZeroedFrame());
        refused(root, collect, "63:53");
        memory.store64(root + 4 * 8, 0);
        // A leaf whose key has no order bit at 22..52 (order above 30): level-1 slot 1 under slot 0 everywhere.
        node = memory.load64(root); // order 9's level-4 node (its own path is slot 2)
        for (int level = 4; level >= 2; level--) {
            final long next = frames.allocZeroedFrame();
            memory.store64(node, next);
            node = next;
        }
        final long leaf = frames.allocZeroedFrame();
        memory.store64(leaf, 1);
        memory.store64(node + 8, leaf);
        refused(root, collect, "encodes no order");
        memory.store64(memory.load64(root), 0);
        // Misaligned or outside root.
        refused(1L << 41, collect, "not a frame of memory");
        refused(root + 8, collect, "not a frame of memory");
        assertTrue(reported.isEmpty(), "nothing reported from a tree that did not validate");
        PreservedMemoryMap.deserialize(memory, root, collect);
        assertEquals(2, reported.stream().filter(b -> b.order() >= 0).count());
        assertEquals(map.metadataFrames(), reported.stream().filter(b -> b.order() < 0).count());
    }

    private void refused(final long root, final PreservedMemoryMap.Visitor visitor, final String why) {
        final HandoverFormatException e = assertThrows(HandoverFormatException.class,
                () -> PreservedMemoryMap.deserialize(memory, root, visitor));
        assertTrue(e.getMessage().contains(why), e.getMessage());
    }

    @Test
    void aBlockOutsideMemoryIsRefused() {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        map.preserve(2L << 40, 0); // memory is 1 TiB: the tree holds it, the next kernel refuses it
        final HandoverFormatException e = assertThrows(HandoverFormatException.class,
                () -> PreservedMemoryMap.deserialize(memory, map.rootPhys(), new PreservedMemoryMap.Visitor() {
                    @Override
                    public void block(final long phys, final int order) {
                    }

                    @Override
                    public void metadata(final long phys) {
                    }
                }));
        assertTrue(e.getMessage().contains("outside memory"), e.getMessage());
    }

    @Test
    void misalignedBlocksAreRejected() {
        final PreservedMemoryMap map = new PreservedMemoryMap(memory, frames);
        assertThrows(IllegalArgumentException.class, () -> map.preserve(0x1000, 1));
        assertThrows(IllegalArgumentException.class, () -> map.preserve(0x1001, 0));
        assertThrows(IllegalArgumentException.class, () -> map.preserveRange(0x1000, 0x800));
    }
}
