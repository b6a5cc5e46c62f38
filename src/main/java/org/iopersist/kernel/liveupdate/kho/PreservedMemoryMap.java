package org.iopersist.kernel.liveupdate.kho;

import java.lang.foreign.MemorySegment;

import org.iopersist.kernel.mm.FrameSource;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.LongBinaryOperator;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The preserved-memory tracker: which frames, at which allocation order, the next kernel must not
 * touch. As mainline KHO keeps it (include/linux/kho/abi/radix_tree.h), one radix tree for all
 * orders, every node one 4 KiB frame, kept current in memory as blocks are preserved, so
 * finalize only names its root.
 *
 * <pre>
 *  key = (1 &lt;&lt; (52 - order)) | (phys &gt;&gt; (12 + order))     order bit above the shifted address
 *
 *  bits 63:60  59:51    50:42    41:33    32:24    23:15    14:0
 *       0      level 5  level 4  level 3  level 2  level 1  leaf bit
 *              (root)
 *  table node (levels 5..1): u64 table[512], physical address of the next level, 0 = none
 *  leaf (struct kho_radix_leaf): 32768 bits as u64 LE words, bit i set = block preserved
 * </pre>
 *
 * Bits 63:53 of a valid key are 0 (order 0 puts its bit at 52), so only root slots 0..3 are
 * ever used. A leaf covers one order (the order bit lies above bit 15 for every order up to 30):
 * {@code 2^(15+o)} frames, 128 MiB at order 0. Preserving a whole TiB of 4 KiB frames costs
 * 8192 leaves plus 1 + 1 + 1 + 1 + 16 table nodes, never a record per frame.
 *
 * <p>The tree's own frames are not in the tree: the next kernel reserves them as it walks it
 * (see {@link #deserialize}). Unpreserving leaves nodes in place, as mainline does.
 */
public final class PreservedMemoryMap {
    public static final int MAX_ORDER = 30;
    /** Table levels above the leaves (5), so a walk is 6 frames deep. */
    public static final int TABLE_LEVELS = 5;
    static final int LEAF_SHIFT = 15;
    static final int BITS_PER_LEAF = 1 << LEAF_SHIFT;
    static final int TABLE_SHIFT = 9;
    static final int TABLE_ENTRIES = 1 << TABLE_SHIFT;
    /** The order bit of order 0; key bits above it are 0. */
    static final int ORDER0_BIT = 52;

    private final PhysicalMemory memory;
    private final FrameSource frames;
    // guarded by "this"
    private final List<Long> nodes = new ArrayList<>();
    // key >>> 15 -> leaf frame: the tree in memory is the record, this only spares the walk
    private final java.util.HashMap<Long, Long> leaves = new java.util.HashMap<>();
    private long root;
    private long cachedPrefix = -1;
    private long cachedLeaf;
    private long preservedFrames;

    public PreservedMemoryMap(final PhysicalMemory memory, final FrameSource frames) {
        this.memory = memory;
        this.frames = frames;
    }

    /** The radix key of the {@code 2^order}-frame block at {@code phys}. */
    public static long key(final long phys, final int order) {
        return (1L << (ORDER0_BIT - order)) | (phys >>> (PhysicalMemory.FRAME_SHIFT + order));
    }

    /** Lowest key bit the table at {@code level} (1..5) indexes. */
    static int shift(final int level) {
        return LEAF_SHIFT + TABLE_SHIFT * (level - 1);
    }

    private static void checkBlock(final long phys, final int order) {
        if (order < 0 || order > MAX_ORDER) {
            throw new IllegalArgumentException("order " + order + " outside 0.." + MAX_ORDER);
        }
        if ((phys & ((PhysicalMemory.FRAME_SIZE << order) - 1)) != 0 || phys < 0) {
            throw new IllegalArgumentException(String.format("phys=0x%x is not aligned to order %d", phys, order));
        }
    }

    /** The leaf holding {@code key}, made (with its path) if {@code create}; 0 if absent. */
    private long leaf(final long key, final boolean create) {
        final long prefix = key >>> LEAF_SHIFT;
        if (prefix == cachedPrefix) {
            return cachedLeaf;
        }
        final Long known = leaves.get(prefix);
        if (known != null) {
            cachedPrefix = prefix;
            cachedLeaf = known;
            return known;
        }
        if (root == 0) {
            if (!create) {
                return 0;
            }
            root = newNode();
        }
        long node = root;
        for (int level = TABLE_LEVELS; level >= 1; level--) {
            final long slot = node + ((key >>> shift(level)) & (TABLE_ENTRIES - 1)) * 8;
            long next = memory.load64(slot);
            if (next == 0) {
                if (!create) {
                    return 0; // not cached: a later preserve may make it
                }
                next = newNode();
                memory.store64(slot, next);
            }
            node = next;
        }
        leaves.put(prefix, node);
        cachedPrefix = prefix;
        cachedLeaf = node;
        return node;
    }

    private long newNode() {
        final long n = frames.allocZeroedFrame();
        nodes.add(n);
        return n;
    }

    /** Marks the {@code 2^order}-frame block at {@code phys}; returns false if it already was. */
    public synchronized boolean preserve(final long phys, final int order) {
        checkBlock(phys, order);
        final long key = key(phys, order);
        final long word = leaf(key, true) + ((key & (BITS_PER_LEAF - 1)) >>> 6) * 8;
        final long bit = 1L << (key & 63);
        final long old = memory.load64(word);
        if ((old & bit) != 0) {
            return false;
        }
        memory.store64(word, old | bit);
        preservedFrames += 1L << order;
        return true;
    }

    /** Clears a block preserved with the same order; returns false if it was not preserved. */
    public synchronized boolean unpreserve(final long phys, final int order) {
        checkBlock(phys, order);
        final long key = key(phys, order);
        final long leaf = leaf(key, false);
        if (leaf == 0) {
            return false;
        }
        final long word = leaf + ((key & (BITS_PER_LEAF - 1)) >>> 6) * 8;
        final long bit = 1L << (key & 63);
        final long old = memory.load64(word);
        if ((old & bit) == 0) {
            return false;
        }
        memory.store64(word, old & ~bit);
        preservedFrames -= 1L << order;
        return true;
    }

    /** Preserves {@code [phys, phys + length)} as naturally aligned power-of-two blocks. */
    public synchronized void preserveRange(final long phys, final long length) {
        forEachBlock(phys, length, (p, o) -> {
            preserve(p, (int) o);
            return 0;
        });
    }

    public synchronized void unpreserveRange(final long phys, final long length) {
        forEachBlock(phys, length, (p, o) -> {
            unpreserve(p, (int) o);
            return 0;
        });
    }

    /** Splits a frame-aligned range into the largest naturally aligned blocks, as kho_preserve_phys does. */
    static void forEachBlock(final long phys, final long length, final LongBinaryOperator block) {
        if ((phys & PhysicalMemory.FRAME_MASK) != 0 || (length & PhysicalMemory.FRAME_MASK) != 0 || length < 0) {
            throw new IllegalArgumentException(String.format("range phys=0x%x length=0x%x is not frame aligned", phys, length));
        }
        long pfn = phys >>> PhysicalMemory.FRAME_SHIFT;
        final long endPfn = pfn + (length >>> PhysicalMemory.FRAME_SHIFT);
        while (pfn < endPfn) {
            int order = pfn == 0 ? MAX_ORDER : Math.min(Long.numberOfTrailingZeros(pfn), MAX_ORDER);
            while ((1L << order) > endPfn - pfn) {
                order--;
            }
            block.applyAsLong(pfn << PhysicalMemory.FRAME_SHIFT, order);
            pfn += 1L << order;
        }
    }

    /** Frames covered by preserved blocks. */
    public synchronized long preservedFrames() {
        return preservedFrames;
    }

    /** Frames the tree itself occupies (table nodes and leaves): once made, a node stays, empty or not. */
    public synchronized long metadataFrames() {
        return nodes.size();
    }

    /** Physical address of the root, what finalize hands over (0 if nothing was ever preserved). */
    public synchronized long rootPhys() {
        return root;
    }

    /** One node of an incoming tree: {@code level} 0 is a leaf; {@code firstKey} the lowest key under it. */
    public record Node(int level, long firstKey, long phys) {
        /** A leaf's order (its keys share the order bit). */
        public int order() {
            return ORDER0_BIT - (63 - Long.numberOfLeadingZeros(firstKey));
        }

        /** The first byte a leaf covers. */
        public long physStart() {
            final int order = order();
            return (firstKey & ~(1L << (ORDER0_BIT - order))) << (PhysicalMemory.FRAME_SHIFT + order);
        }
    }

    /** Validates the tree at {@code root} (as {@link #deserialize}) and returns its nodes, root first, depth first. */
    public static List<Node> readLayout(final PhysicalMemory memory, final long root) throws HandoverFormatException {
        final List<Node> out = new ArrayList<>();
        walk(memory, root, null, out, true);
        return out;
    }

    /** What a walk of an incoming tree reports. */
    public interface Visitor {
        /** A preserved block. */
        void block(long phys, int order) throws HandoverFormatException;

        /** A frame of the tree itself (a table node or a leaf). */
        void metadata(long phys) throws HandoverFormatException;
    }

    /**
     * Walks a tree a previous kernel left at {@code root}, validating all of it before reporting
     * anything: every node a 4 KiB-aligned frame of memory reached once (no cycles, no shared
     * nodes), exactly five table levels over the leaves, key bits 63:53 zero, every key's order
     * at most {@link #MAX_ORDER}, every block inside memory. A bad tree leaves nothing half-reserved.
     *
     * @throws HandoverFormatException if it does not validate, or if the visitor refuses something
     */
    public static void deserialize(final PhysicalMemory memory, final long root, final Visitor visitor)
            throws HandoverFormatException {
        walk(memory, root, null, null, true);
        walk(memory, root, visitor, null, false);
    }

    /**
     * Validates the tree at {@code root} as {@link #deserialize} does, in one walk that reports to
     * {@code checker} as it goes: a checker that only looks (counts, refuses a block) and whose
     * findings are void if this throws. What acts on the blocks waits for {@link #visitValidated}.
     */
    public static void validate(final PhysicalMemory memory, final long root, final Visitor checker)
            throws HandoverFormatException {
        walk(memory, root, checker, null, true);
    }

    /**
     * As {@link #deserialize}, for a tree {@link #deserialize} has validated already: one walk, the
     * visitor's. Reserving what was preserved costs one pass over the nodes, not two.
     */
    public static void visitValidated(final PhysicalMemory memory, final long root, final Visitor visitor)
            throws HandoverFormatException {
        walk(memory, root, visitor, null, false);
    }

    private static void walk(final PhysicalMemory memory, final long root, final Visitor visitor, final List<Node> layout,
            final boolean validating) throws HandoverFormatException {
        if (root == 0) {
            return; // nothing was preserved
        }
        final Set<Long> seen = validating ? new HashSet<>() : null; // the validating pass checks sharing
        checkNode(memory, root, seen, "root");
        table(memory, TABLE_LEVELS, root, 0, visitor, layout, seen);
    }

    private static void checkNode(final PhysicalMemory memory, final long phys, final Set<Long> seen, final String what)
            throws HandoverFormatException {
        if ((phys & PhysicalMemory.FRAME_MASK) != 0 || !memory.contains(phys, PhysicalMemory.FRAME_SIZE)) {
            throw new HandoverFormatException(String.format("tracker %s 0x%x is not a frame of memory", what, phys));
        }
        if (seen != null && !seen.add(phys)) {
            throw new HandoverFormatException(String.format("tracker node 0x%x is reached twice", phys));
        }
    }

    private static void table(final PhysicalMemory memory, final int level, final long phys, final long prefix,
                              final Visitor visitor, final List<Node> layout, final Set<Long> seen)
            throws HandoverFormatException {
        if (visitor != null) {
            visitor.metadata(phys);
        }
        if (layout != null) {
            layout.add(new Node(level, prefix, phys));
        }
        // One bulk read per node: most of a table's 512 slots are empty, and a load each would cost
        // the segment's checks each.
        final long[] slots = new long[TABLE_ENTRIES];
        MemorySegment.copy(memory.segment(), PhysicalMemory.U64, phys, slots, 0, TABLE_ENTRIES);
        for (int i = 0; i < TABLE_ENTRIES; i++) {
            final long next = slots[i];
            if (next == 0) {
                continue;
            }
            final long key = prefix | ((long) i << shift(level));
            if (level == TABLE_LEVELS && (key >>> (ORDER0_BIT + 1)) != 0) {
                throw new HandoverFormatException(String.format("tracker root slot %d sets key bits 63:53", i));
            }
            if (seen != null) {
                checkNode(memory, next, seen, "level " + (level - 1) + " node");
            }
            if (level > 1) {
                table(memory, level - 1, next, key, visitor, layout, seen);
            } else {
                leaf(memory, next, key, visitor, layout);
            }
        }
    }

    private static void leaf(final PhysicalMemory memory, final long phys, final long prefix, final Visitor visitor,
                             final List<Node> layout) throws HandoverFormatException {
        final int order = ORDER0_BIT - (63 - Long.numberOfLeadingZeros(prefix));
        if (prefix == 0 || order > MAX_ORDER) {
            throw new HandoverFormatException(String.format("tracker leaf 0x%x at key 0x%x encodes no order", phys, prefix));
        }
        if (visitor != null) {
            visitor.metadata(phys);
        }
        if (layout != null) {
            layout.add(new Node(0, prefix, phys));
        }
        final long orderBit = 1L << (ORDER0_BIT - order);
        final int shift = PhysicalMemory.FRAME_SHIFT + order;
        final long[] words = new long[BITS_PER_LEAF / 64];
        MemorySegment.copy(memory.segment(), PhysicalMemory.U64, phys, words, 0, words.length);
        for (int w = 0; w < words.length; w++) {
            long bits = words[w];
            while (bits != 0) {
                final int b = Long.numberOfTrailingZeros(bits);
                bits &= bits - 1;
                final long index = ((prefix | ((long) w << 6) | b) & ~orderBit);
                final long block = index << shift;
                if ((block >>> shift) != index || block < 0 || !memory.contains(block, PhysicalMemory.FRAME_SIZE << order)) {
                    throw new HandoverFormatException(String.format("tracker block 0x%x order %d lies outside memory", block, order));
                }
                if (visitor != null) {
                    visitor.block(block, order);
                }
            }
        }
    }

    /**
     * The leaf of a validated tree at {@code root} that holds {@code key}, or 0: a walk of five
     * table loads. Callers cache the answer.
     */
    static long findLeaf(final PhysicalMemory memory, final long root, final long key) {
        long node = root;
        for (int level = TABLE_LEVELS; level >= 1 && node != 0; level--) {
            node = memory.load64(node + ((key >>> shift(level)) & (TABLE_ENTRIES - 1)) * 8);
        }
        return node;
    }
}
