package org.iopersist.kernel.liveupdate.kho;

import org.iopersist.kernel.mm.FrameSource;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * Kexec HandOver, the outgoing side: subsystems register, preserve memory and, at finalize, hand
 * over one blob each; finalize writes the KHO tree into the scratch region and returns the
 * {@link SetupData} the next boot gets. Abort undoes finalize. The incoming side is
 * {@link KhoIncoming}.
 *
 * <p>States: OPEN (preservations allowed) and FINALIZED (everything frozen; every change to
 * preserved state answers EBUSY). {@code finalize} and {@code abort} move between them.
 *
 * <p>Lock: this object's monitor guards the state, the tracker and the subsystem list; subsystems'
 * serialize and abort run under it, so they must not call back into other subsystems.
 */
public final class Kho {
    /**
     * v2: the tracker is one radix tree over all orders (mainline's radix_tree.h), not v1's
     * per-order bitmaps behind a "KHOM" chunk list; a v1 kernel must not read it, nor v2 a v1 tree.
     */
    public static final String COMPATIBLE = "kho-v2";
    public static final String PROP_MEMORY_MAP = "preserved-memory-map";
    public static final String PROP_FDT = "fdt";
    /**
     * CRC-32C of a subsystem blob's {@code totalsize} bytes (in its node), and of the KHO tree's own
     * (at its root, computed with this property's four value bytes as zeros): a flipped bit anywhere
     * in the handover's metadata means a cold boot.
     */
    public static final String PROP_CRC = "crc32c";

    private final PhysicalMemory memory;
    private final FrameSource frames;
    private final long scratchPhys;
    private final long scratchSize;
    private final Consumer<String> log;
    private final PreservedMemoryMap tracker;
    private final Map<String, KhoSubsystem> subsystems = new LinkedHashMap<>();
    private final List<long[]> blobs = new ArrayList<>(); // {phys, order} of finalize's blob runs
    private KhoIncoming carriedOver;
    private java.util.function.Consumer<String> step = name -> { };
    private boolean finalized;
    private byte[] tree;

    /**
     * @param scratchPhys where finalize writes the KHO tree; nothing preserved may live there
     */
    public Kho(final PhysicalMemory memory, final FrameSource frames, final long scratchPhys, final long scratchSize,
               final Consumer<String> log) {
        this.memory = memory;
        this.frames = frames;
        this.scratchPhys = scratchPhys;
        this.scratchSize = scratchSize;
        this.log = log;
        this.tracker = new PreservedMemoryMap(memory, frames);
    }

    public PhysicalMemory memory() {
        return memory;
    }

    public long scratchPhys() {
        return scratchPhys;
    }

    public long scratchSize() {
        return scratchSize;
    }

    /** Hands an incoming handover's unclaimed blocks and subtrees to the next finalize, so nothing is lost. */
    public synchronized void carryOver(final KhoIncoming incoming) {
        this.carriedOver = incoming;
    }

    /** Called with {@code finalize:<subsystem>} as each subsystem has serialized (the boot's breakpoint). */
    public synchronized void onStep(final java.util.function.Consumer<String> hook) {
        this.step = hook;
    }

    public synchronized void register(final KhoSubsystem subsystem) {
        if (!FdtWriter.validNodeName(subsystem.name())) {
            throw new IllegalArgumentException("invalid subsystem name '" + subsystem.name() + "'");
        }
        if (subsystems.putIfAbsent(subsystem.name(), subsystem) != null) {
            throw new KernelException(Errno.EEXIST, "KHO subsystem " + subsystem.name() + " already registered");
        }
    }

    public synchronized void unregister(final KhoSubsystem subsystem) {
        subsystems.remove(subsystem.name(), subsystem);
    }

    public synchronized boolean finalized() {
        return finalized;
    }

    private void checkOpen(final String what) {
        if (finalized) {
            throw new KernelException(Errno.EBUSY, what + " after KHO finalize");
        }
    }

    /** Preserves a naturally aligned block of {@code 2^order} frames. @throws KernelException EBUSY when finalized */
    public synchronized boolean preserve(final long phys, final int order) {
        checkOpen("preserve");
        return tracker.preserve(phys, order);
    }

    public synchronized void preserveRange(final long phys, final long length) {
        checkOpen("preserve");
        tracker.preserveRange(phys, length);
    }

    public synchronized boolean unpreserve(final long phys, final int order) {
        checkOpen("unpreserve");
        return tracker.unpreserve(phys, order);
    }

    public synchronized void unpreserveRange(final long phys, final long length) {
        checkOpen("unpreserve");
        tracker.unpreserveRange(phys, length);
    }

    /** The tracker's own frames, its radix tree's nodes (kept once made; see {@link PreservedMemoryMap#metadataFrames}). */
    public synchronized long trackerFrames() {
        return tracker.metadataFrames();
    }

    /** Frames currently preserved (blocks, not the tracker's own metadata). */
    public synchronized long preservedFrames() {
        return tracker.preservedFrames();
    }

    /** CRC-32C of the FDT blob at {@code phys}, over its header's {@code totalsize} bytes. */
    public static int blobCrc(final PhysicalMemory memory, final long phys) {
        final long total = Integer.toUnsignedLong(Integer.reverseBytes(memory.load32(phys + Fdt.OFF_TOTALSIZE)));
        final java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        crc.update(memory.slice(phys, total).asByteBuffer());
        return (int) crc.getValue();
    }

    /**
     * The KHO tree's own CRC-32C: over its {@code totalsize} bytes, the root's {@code crc32c} value
     * counted as zeros (so it can be written into the tree it covers).
     *
     * @throws HandoverFormatException if the root has no {@code crc32c}
     */
    public static int treeCrc(final FdtReader tree) throws HandoverFormatException {
        final int prop = tree.property(tree.root(), PROP_CRC);
        if (prop < 0 || tree.value(prop).byteSize() != 4) {
            throw new HandoverFormatException("the KHO tree has no crc32c of its own");
        }
        final long at = tree.valueOffset(prop);
        final java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        final MemorySegment seg = tree.segment().asSlice(0, tree.totalSize());
        crc.update(seg.asSlice(0, at).asByteBuffer());
        crc.update(new byte[4]);
        crc.update(seg.asSlice(at + 4).asByteBuffer());
        return (int) crc.getValue();
    }

    /**
     * Serializes every subsystem, freezes, and writes the KHO tree into the scratch region.
     *
     * @return the boot parameters that carry the handover
     * @throws KernelException EBUSY if already finalized; E2BIG if the tree does not fit the scratch
     *                         region; whatever a subsystem throws (all of it undone)
     */
    public synchronized SetupData finalizeHandover() {
        checkOpen("finalize");
        final List<KhoSubsystem> done = new ArrayList<>();
        final FdtWriter root = new FdtWriter().beginNode("");
        root.propertyString("compatible", COMPATIBLE);
        root.propertyU32(PROP_CRC, 0); // filled in once the tree is whole
        try {
            final Map<String, Long> subtreePhys = new LinkedHashMap<>();
            for (KhoSubsystem s : subsystems.values()) {
                final byte[] blob = s.serialize(this);
                done.add(s);
                if (blob != null) { // null: nothing to hand over this time
                    subtreePhys.put(s.name(), storeBlob(blob));
                }
                step.accept("finalize:" + s.name());
            }
            if (carriedOver != null) {
                carriedOver.carryInto(tracker, subtreePhys);
            }
            root.propertyU64(PROP_MEMORY_MAP, tracker.rootPhys()); // the tree is already current
            for (Map.Entry<String, Long> e : subtreePhys.entrySet()) {
                root.beginNode(e.getKey()).propertyU64(PROP_FDT, e.getValue())
                        .propertyU32(PROP_CRC, blobCrc(memory, e.getValue())).endNode();
            }
            final byte[] fdt = root.endNode().finish();
            sealTree(fdt);
            if (fdt.length > scratchSize) {
                throw new KernelException(Errno.E2BIG, "KHO tree of " + fdt.length + " bytes exceeds scratch of " + scratchSize);
            }
            memory.write(scratchPhys, fdt, 0, fdt.length);
            tree = fdt;
            finalized = true;
            log.accept(String.format("KHO: finalized: %d subsystems, %d preserved frames, tracker %d frames, tree %d bytes",
                    subsystems.size(), tracker.preservedFrames(), tracker.metadataFrames(), fdt.length));
            return new SetupData(scratchPhys, fdt.length, scratchPhys, scratchSize);
        } catch (RuntimeException e) {
            undo(done);
            log.accept("KHO: finalize failed: " + e.getMessage());
            throw e;
        }
    }

    /** Writes the tree's own CRC-32C into its root {@code crc32c}. */
    private static void sealTree(final byte[] fdt) {
        try {
            final FdtReader tree = FdtReader.open(fdt);
            final int prop = tree.property(tree.root(), PROP_CRC);
            MemorySegment.ofArray(fdt).set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN),
                    tree.valueOffset(prop), treeCrc(tree));
        } catch (HandoverFormatException e) {
            throw new IllegalStateException("the KHO tree just written does not read back", e);
        }
    }

    private long storeBlob(final byte[] blob) {
        int order = 0;
        while ((PhysicalMemory.FRAME_SIZE << order) < blob.length) {
            order++;
        }
        final long phys = frames.allocZeroedRun(order);
        memory.write(phys, blob, 0, blob.length);
        blobs.add(new long[] {phys, order});
        tracker.preserve(phys, order);
        return phys;
    }

    private void undo(final List<KhoSubsystem> done) {
        for (long[] b : blobs) {
            tracker.unpreserve(b[0], (int) b[1]);
            frames.freeRun(b[0], (int) b[1]);
        }
        blobs.clear();
        if (carriedOver != null) {
            carriedOver.uncarry(tracker);
        }
        for (KhoSubsystem s : done) {
            s.abort();
        }
    }

    /**
     * Undoes finalize: frees the blobs, unfreezes every subsystem.
     *
     * @throws KernelException ENOENT if not finalized
     */
    public synchronized void abort() {
        if (!finalized) {
            throw new KernelException(Errno.ENOENT, "KHO is not finalized");
        }
        finalized = false; // subsystems unpreserve what they preserved while undoing
        undo(new ArrayList<>(subsystems.values()));
        tree = null;
        log.accept("KHO: finalize aborted");
    }

    /** The KHO tree of the current finalize. @throws KernelException ENOENT if not finalized */
    public synchronized byte[] tree() {
        if (tree == null) {
            throw new KernelException(Errno.ENOENT, "KHO is not finalized");
        }
        return tree.clone();
    }

    /** A view of the tree in memory (for tools that read it where the next kernel will). */
    public synchronized MemorySegment treeInMemory() {
        return memory.slice(scratchPhys, tree().length);
    }
}
