package org.iopersist.kernel.liveupdate.kho;

import org.iopersist.kernel.mm.FrameSource;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * Kexec HandOver, the incoming side: the handover a new kernel found in memory, validated whole
 * before anything uses it.
 *
 * <p>The incoming tracker's radix leaves are the set of blocks nobody has claimed yet: {@link #claim}
 * clears a block's bit, {@link #finish} frees every block whose bit is still set and then the
 * tracker's own frames. So an unclaimed TiB costs no Java objects.
 *
 * <p>Lock: this object's monitor.
 */
public final class KhoIncoming {
    private static final long MAX_TREE = 1L << 20;
    /**
     * A subsystem blob's largest size: what one buddy run holds (order 18, 1 GiB), which is where
     * {@link Kho} puts it. iommufd-v1 at 48 bytes an area takes 22 M areas to fill it.
     */
    private static final long MAX_BLOB = 1L << 30;

    private final PhysicalMemory memory;
    private final SetupData setup;
    private final FdtReader root;
    private final long treeRoot;
    // per order: the last leaf looked up (prefix = key >>> 15, leaf 0 = absent), so runs of claims walk once
    private final long[] cachedPrefix = new long[PreservedMemoryMap.MAX_ORDER + 1];
    private final long[] cachedLeaf = new long[PreservedMemoryMap.MAX_ORDER + 1];
    private final Map<String, Long> subtrees = new LinkedHashMap<>();
    private final Set<String> retrieved = new HashSet<>();
    private final List<long[]> carried = new ArrayList<>();
    /** The blocks validation has promised to some handler's adopt, start → end: no two may overlap. */
    private final java.util.TreeMap<Long, Long> planned = new java.util.TreeMap<>();
    private long unclaimedFrames;
    private long nodeFrames;
    private boolean finished;

    private KhoIncoming(final PhysicalMemory memory, final SetupData setup, final FdtReader root, final long treeRoot) {
        this.memory = memory;
        this.setup = setup;
        this.root = root;
        this.treeRoot = treeRoot;
        java.util.Arrays.fill(cachedPrefix, -1);
    }

    /**
     * Validates the handover {@code setup} points at: the tree (in the scratch region, version,
     * {@code compatible = "kho-v2"}), the tracker's radix tree, and every subsystem blob (a valid
     * FDT lying in preserved memory). Nothing is reserved or changed; a handover that fails
     * anywhere is refused whole.
     *
     * @throws HandoverFormatException with the first reason it does not validate
     */
    public static KhoIncoming parse(final PhysicalMemory memory, final SetupData setup) throws HandoverFormatException {
        if (!memory.contains(setup.scratchAddr(), setup.scratchSize()) || setup.scratchSize() == 0
                || (setup.scratchAddr() & PhysicalMemory.FRAME_MASK) != 0) {
            throw new HandoverFormatException(String.format("scratch region 0x%x+0x%x is not frame-aligned memory",
                    setup.scratchAddr(), setup.scratchSize()));
        }
        if (setup.fdtSize() < Fdt.HEADER_SIZE || setup.fdtSize() > MAX_TREE
                || setup.fdtAddr() < setup.scratchAddr()
                || setup.fdtAddr() - setup.scratchAddr() > setup.scratchSize() - setup.fdtSize()) {
            throw new HandoverFormatException(String.format("KHO tree 0x%x+0x%x does not lie in the scratch region",
                    setup.fdtAddr(), setup.fdtSize()));
        }
        final FdtReader root = FdtReader.open(memory.slice(setup.fdtAddr(), setup.fdtSize()));
        final String compatible = root.string(root.root(), "compatible");
        if (!Kho.COMPATIBLE.equals(compatible)) {
            throw new HandoverFormatException("handover is '" + compatible + "', not '" + Kho.COMPATIBLE + "'");
        }
        if (Kho.treeCrc(root) != root.u32(root.root(), Kho.PROP_CRC)) {
            throw new HandoverFormatException("the KHO tree fails its CRC-32C");
        }
        final KhoIncoming in = new KhoIncoming(memory, setup, root, root.u64(root.root(), Kho.PROP_MEMORY_MAP));
        in.countAndCheckScratch();
        for (int node : root.children(root.root())) {
            final String name = root.nodeName(node);
            final long phys = root.u64(node, Kho.PROP_FDT);
            if (!memory.contains(phys, Fdt.HEADER_SIZE)) {
                throw new HandoverFormatException("subtree " + name + " at 0x" + Long.toHexString(phys) + " lies outside memory");
            }
            if ((phys & 7) != 0) {
                // libfdt refuses an FDT that is not 8-byte aligned (FDT_ERR_ALIGNMENT); finalize
                // puts every blob at the start of a frame.
                throw new HandoverFormatException("subtree " + name + " at 0x" + Long.toHexString(phys) + " is not 8-byte aligned");
            }
            final long total = Integer.toUnsignedLong(Integer.reverseBytes(memory.load32(phys + Fdt.OFF_TOTALSIZE)));
            if (total > MAX_BLOB || !memory.contains(phys, total)) {
                throw new HandoverFormatException("subtree " + name + " has a bad size " + total);
            }
            if (Kho.blobCrc(memory, phys) != root.u32(node, Kho.PROP_CRC)) {
                throw new HandoverFormatException("subtree " + name + " fails its CRC-32C");
            }
            FdtReader.open(memory.slice(phys, total));
            for (long f = phys & ~PhysicalMemory.FRAME_MASK; f < phys + total; f += PhysicalMemory.FRAME_SIZE) {
                if (!in.preserved(f)) {
                    throw new HandoverFormatException("subtree " + name + " lies in memory that is not preserved");
                }
            }
            in.subtrees.put(name, phys);
        }
        return in;
    }

    /** Validates the radix tree whole, then counts its blocks and nodes: none may lie in the scratch region. */
    private void countAndCheckScratch() throws HandoverFormatException {
        final long scratchStart = setup.scratchAddr();
        final long scratchEnd = scratchStart + setup.scratchSize();
        PreservedMemoryMap.validate(memory, treeRoot, new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) throws HandoverFormatException {
                if (phys < scratchEnd && scratchStart < phys + (PhysicalMemory.FRAME_SIZE << order)) {
                    throw new HandoverFormatException(String.format("preserved block 0x%x lies in the scratch region", phys));
                }
                unclaimedFrames += 1L << order;
            }

            @Override
            public void metadata(final long phys) throws HandoverFormatException {
                if (phys < scratchEnd && scratchStart <= phys) {
                    throw new HandoverFormatException(String.format("tracker node 0x%x lies in the scratch region", phys));
                }
                nodeFrames++;
            }
        });
    }

    public SetupData setup() {
        return setup;
    }

    public FdtReader tree() {
        return root;
    }

    /** Reports every preserved block and every tracker frame, for reservation before the allocator opens. */
    public void reserveAll(final PreservedMemoryMap.Visitor visitor) {
        try {
            PreservedMemoryMap.visitValidated(memory, treeRoot, visitor);
        } catch (HandoverFormatException e) {
            throw new IllegalStateException("tracker changed after validation", e);
        }
    }

    /** Names of the subsystems that handed over a blob. */
    public synchronized List<String> subtreeNames() {
        return List.copyOf(subtrees.keySet());
    }

    /** The blob subsystem {@code name} handed over, or null; its frames stay unclaimed until claimed. */
    public synchronized FdtReader retrieveSubtree(final String name) {
        final Long phys = subtrees.get(name);
        if (phys == null) {
            return null;
        }
        retrieved.add(name);
        final long total = Integer.toUnsignedLong(Integer.reverseBytes(memory.load32(phys + Fdt.OFF_TOTALSIZE)));
        try {
            return FdtReader.open(memory.slice(phys, total));
        } catch (HandoverFormatException e) {
            throw new IllegalStateException("subtree changed after validation", e);
        }
    }

    /** Physical address of subsystem {@code name}'s blob, or -1. */
    public synchronized long subtreePhys(final String name) {
        return subtrees.getOrDefault(name, -1L);
    }

    private long wordOf(final long phys, final int order) {
        final long key = PreservedMemoryMap.key(phys, order);
        final long prefix = key >>> PreservedMemoryMap.LEAF_SHIFT;
        if (cachedPrefix[order] != prefix) { // the tree's shape never changes here: absent stays absent
            cachedLeaf[order] = treeRoot == 0 ? 0 : PreservedMemoryMap.findLeaf(memory, treeRoot, key);
            cachedPrefix[order] = prefix;
        }
        final long leaf = cachedLeaf[order];
        return leaf == 0 ? -1 : leaf + ((key & (PreservedMemoryMap.BITS_PER_LEAF - 1)) >>> 6) * 8;
    }

    /** The bit of block {@code (phys, order)} within its tracker word. */
    private static long bitOf(final long phys, final int order) {
        return 1L << (PreservedMemoryMap.key(phys, order) & 63);
    }

    /** Whether exactly the aligned block {@code (phys, order)} is preserved and unclaimed. */
    private boolean isSet(final long phys, final int order) {
        final long word = wordOf(phys, order);
        return word >= 0 && (memory.load64(word) & bitOf(phys, order)) != 0;
    }

    /** True if the frame at {@code phys} lies in a preserved, unclaimed block of any order. */
    public synchronized boolean preserved(final long phys) {
        for (int order = 0; order <= PreservedMemoryMap.MAX_ORDER; order++) {
            if (isSet(phys & ~((PhysicalMemory.FRAME_SIZE << order) - 1), order)) {
                return true;
            }
        }
        return false;
    }

    /** What {@link #plan} made of a block a handler will claim at adopt. */
    public enum Planned {
        /** Preserved exactly so and promised to no one else: the claim at adopt cannot fail. */
        PLANNED,
        /** Not preserved as this very block (a block inside a larger preserved one cannot be claimed alone). */
        NOT_PRESERVED,
        /** Overlaps a block promised before, by this handler or another. */
        CLAIMED_TWICE
    }

    /**
     * Validation's promise that adopt will claim the block {@code (phys, order)}. It must be
     * preserved as exactly that block, unclaimed ({@link #claim} will take it), and overlap no block
     * promised before, by this handler or another (a memfd page that is also a VT-d table page). The
     * tracker keeps blocks of every order side by side, so each handler's own check cannot see the
     * overlap; without this, the second claim would fail half-way through adoption, or two owners
     * would hold one frame. Only a {@link Planned#PLANNED} block is recorded.
     */
    public synchronized Planned plan(final long phys, final int order) {
        if (finished || (phys & ((PhysicalMemory.FRAME_SIZE << order) - 1)) != 0 || !isSet(phys, order)) {
            return Planned.NOT_PRESERVED;
        }
        final long end = phys + (PhysicalMemory.FRAME_SIZE << order);
        final Map.Entry<Long, Long> before = planned.floorEntry(phys);
        if (before != null && before.getValue() > phys) {
            return Planned.CLAIMED_TWICE;
        }
        final Map.Entry<Long, Long> after = planned.ceilingEntry(phys);
        if (after != null && after.getKey() < end) {
            return Planned.CLAIMED_TWICE;
        }
        planned.put(phys, end);
        return Planned.PLANNED;
    }

    /**
     * Claims a preserved block: from now on its owner is the claiming subsystem, and finish will
     * not free it. Returns false if that exact block was not preserved (or was claimed already),
     * which the caller treats as an inconsistent handover.
     */
    public synchronized boolean claim(final long phys, final int order) {
        if (finished || (phys & ((PhysicalMemory.FRAME_SIZE << order) - 1)) != 0) {
            return false;
        }
        final long word = wordOf(phys, order);
        if (word < 0) {
            return false;
        }
        final long bit = bitOf(phys, order);
        final long old = memory.load64(word);
        if ((old & bit) == 0) {
            return false;
        }
        memory.store64(word, old & ~bit);
        unclaimedFrames -= 1L << order;
        return true;
    }

    public synchronized long unclaimedFrames() {
        return unclaimedFrames;
    }

    /** Frames of the preserved-memory tracker itself (its radix tree's nodes); finish frees them too. */
    public synchronized long trackerFrames() {
        return finished ? 0 : nodeFrames;
    }

    public synchronized boolean finished() {
        return finished;
    }

    /**
     * Frees every block nobody claimed, then the tracker's own frames. Returns the number of frames
     * of unclaimed blocks it freed.
     */
    public synchronized long finish(final FrameSource frames) {
        if (finished) {
            return 0;
        }
        final long[] freed = {0};
        final List<Long> metadata = new ArrayList<>();
        reserveAll(new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) {
                frames.freeRun(phys, order);
                freed[0] += 1L << order;
            }

            @Override
            public void metadata(final long phys) {
                metadata.add(phys);
            }
        });
        for (long m : metadata) {
            frames.freeFrame(m);
        }
        unclaimedFrames = 0;
        finished = true;
        return freed[0];
    }

    /** Adds every unclaimed block to {@code out} and every unretrieved blob to {@code subtreesOut}. */
    synchronized void carryInto(final PreservedMemoryMap out, final Map<String, Long> subtreesOut) {
        if (finished) {
            return;
        }
        reserveAll(new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) {
                if (out.preserve(phys, order)) {
                    carried.add(new long[] {phys, order});
                }
            }

            @Override
            public void metadata(final long phys) {
            }
        });
        for (Map.Entry<String, Long> e : subtrees.entrySet()) {
            if (!retrieved.contains(e.getKey())) {
                subtreesOut.putIfAbsent(e.getKey(), e.getValue());
            }
        }
    }

    synchronized void uncarry(final PreservedMemoryMap out) {
        for (long[] c : carried) {
            out.unpreserve(c[0], (int) c[1]);
        }
        carried.clear();
    }
}
