package org.iopersist.kernel.liveupdate.kho;

import org.iopersist.kernel.mm.FrameSource;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.LongBinaryOperator;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The preserved-memory tracker: which frames, at which allocation order, the next kernel must not
 * touch. As in mainline KHO (6.16 with page-sized bitmaps), it is a set of bitmaps per order, each
 * bitmap one 4 KiB frame of 32768 bits, bit {@code i} of bitmap {@code b} at order {@code o}
 * standing for the block of {@code 2^o} frames at pfn {@code (b * 32768 + i) << o}.
 *
 * <p>The bitmaps live in physical memory from the first preservation on, so serializing is only
 * writing a short list of chunk frames that point at them:
 *
 * <pre>
 *  chunk (4 KiB, little-endian)
 *  0x00  u64 next        physical address of the next chunk, 0 at the end
 *  0x08  u32 magic       0x4d4f484b ("KHOM")
 *  0x0c  u16 order       allocation order of every bitmap in this chunk
 *  0x0e  u16 count       entries used, at most 255
 *  0x10  entries[255]:   u64 phys_start (first byte the bitmap covers), u64 bitmap (its frame)
 * </pre>
 *
 * Size: for each order {@code o}, every touched {@code 2^(15+o)}-frame range (128 MiB at order 0)
 * costs one 4 KiB bitmap and 16 bytes of chunk; a chunk holds 255 of them. Preserving a whole TiB
 * of 4 KiB frames costs 8192 bitmaps (32 MiB) and 33 chunks, never a record per frame.
 *
 * <p>The chunk and bitmap frames are not in the bitmaps: the next kernel reserves them as it walks
 * the list (see {@link #deserialize}).
 */
public final class PreservedMemoryMap {
    public static final int MAGIC = 0x4d4f484b;
    public static final int MAX_ORDER = 30;
    static final int BITS_PER_BITMAP = (int) PhysicalMemory.FRAME_SIZE * 8;
    static final int BITMAP_SHIFT = 15;
    static final int ENTRIES_PER_CHUNK = 255;
    static final long OFF_NEXT = 0;
    static final long OFF_MAGIC = 8;
    static final long OFF_ORDER = 12;
    static final long OFF_COUNT = 14;
    static final long OFF_ENTRIES = 16;

    private final PhysicalMemory memory;
    private final FrameSource frames;
    // order -> (bitmap index -> bitmap frame); guarded by "this"
    private final List<TreeMap<Long, Long>> bitmaps = new ArrayList<>();
    private final List<Long> chunks = new ArrayList<>();
    private long preservedFrames;

    public PreservedMemoryMap(final PhysicalMemory memory, final FrameSource frames) {
        this.memory = memory;
        this.frames = frames;
        for (int o = 0; o <= MAX_ORDER; o++) {
            bitmaps.add(new TreeMap<>());
        }
    }

    private static void checkBlock(final long phys, final int order) {
        if (order < 0 || order > MAX_ORDER) {
            throw new IllegalArgumentException("order " + order + " outside 0.." + MAX_ORDER);
        }
        if ((phys & ((PhysicalMemory.FRAME_SIZE << order) - 1)) != 0 || phys < 0) {
            throw new IllegalArgumentException(String.format("phys=0x%x is not aligned to order %d", phys, order));
        }
    }

    /** Marks the {@code 2^order}-frame block at {@code phys}; returns false if it already was. */
    public synchronized boolean preserve(final long phys, final int order) {
        checkBlock(phys, order);
        final long index = (phys >>> PhysicalMemory.FRAME_SHIFT) >>> order;
        final long bitmap = bitmaps.get(order).computeIfAbsent(index >>> BITMAP_SHIFT, k -> frames.allocZeroedFrame());
        final long word = bitmap + ((index & (BITS_PER_BITMAP - 1)) >>> 6) * 8;
        final long bit = 1L << (index & 63);
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
        final long index = (phys >>> PhysicalMemory.FRAME_SHIFT) >>> order;
        final Long bitmap = bitmaps.get(order).get(index >>> BITMAP_SHIFT);
        if (bitmap == null) {
            return false;
        }
        final long word = bitmap + ((index & (BITS_PER_BITMAP - 1)) >>> 6) * 8;
        final long bit = 1L << (index & 63);
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

    /** Frames the tracker itself occupies (bitmaps and chunks). */
    /** Bitmap frames: once a range and order are touched its bitmap stays, empty or not, as mainline's do. */
    public synchronized long bitmapFrames() {
        long n = 0;
        for (TreeMap<Long, Long> m : bitmaps) {
            n += m.size();
        }
        return n;
    }

    public synchronized long metadataFrames() {
        long n = chunks.size();
        for (TreeMap<Long, Long> m : bitmaps) {
            n += m.size();
        }
        return n;
    }

    /**
     * Writes the chunk list and returns the physical address of its first chunk (0 if nothing is
     * preserved). Replaces any list a previous call wrote.
     */
    public synchronized long serialize() {
        discardChunks();
        long first = 0;
        long current = 0;
        int count = 0;
        for (int order = 0; order <= MAX_ORDER; order++) {
            boolean chunkForOrder = false;
            for (Map.Entry<Long, Long> e : bitmaps.get(order).entrySet()) {
                if (!chunkForOrder || count == ENTRIES_PER_CHUNK) {
                    final long chunk = frames.allocZeroedFrame();
                    chunks.add(chunk);
                    memory.store32Release(chunk + OFF_MAGIC, MAGIC);
                    writeU16(chunk + OFF_ORDER, order);
                    if (current == 0) {
                        first = chunk;
                    } else {
                        memory.store64(current + OFF_NEXT, chunk);
                    }
                    current = chunk;
                    count = 0;
                    chunkForOrder = true;
                }
                final long entry = current + OFF_ENTRIES + count * 16L;
                memory.store64(entry, (e.getKey() << BITMAP_SHIFT << order) << PhysicalMemory.FRAME_SHIFT);
                memory.store64(entry + 8, e.getValue());
                writeU16(current + OFF_COUNT, ++count);
            }
        }
        return first;
    }

    /** Frees the chunk list written by {@link #serialize} (abort). The bitmaps stay. */
    public synchronized void discardChunks() {
        for (long c : chunks) {
            frames.freeFrame(c);
        }
        chunks.clear();
    }

    private void writeU16(final long phys, final int v) {
        final long word = phys & ~7L;
        final int shift = (int) (phys & 7) * 8;
        final long old = memory.load64(word);
        memory.store64(word, (old & ~(0xFFFFL << shift)) | ((long) (v & 0xFFFF) << shift));
    }

    private static int readU16(final PhysicalMemory memory, final long phys) {
        return (int) (memory.load64(phys & ~7L) >>> ((phys & 7) * 8)) & 0xFFFF;
    }

    /** One bitmap of an incoming tracker: its order, the first byte it covers, and its frame. */
    public record Bitmap(int order, long physStart, long bitmapPhys) {
    }

    /**
     * Validates the tracker at {@code first} (as {@link #deserialize}) and returns its chunks and
     * bitmaps, without reporting blocks.
     */
    public static List<Long> readLayout(final PhysicalMemory memory, final long first, final List<Bitmap> bitmapsOut)
            throws HandoverFormatException {
        walk(memory, first, null);
        final List<Long> chunkList = new ArrayList<>();
        for (long chunk = first; chunk != 0; chunk = memory.load64(chunk + OFF_NEXT)) {
            chunkList.add(chunk);
            final int order = readU16(memory, chunk + OFF_ORDER);
            final int count = readU16(memory, chunk + OFF_COUNT);
            for (int i = 0; i < count; i++) {
                final long entry = chunk + OFF_ENTRIES + i * 16L;
                bitmapsOut.add(new Bitmap(order, memory.load64(entry), memory.load64(entry + 8)));
            }
        }
        return chunkList;
    }

    /** What a walk of an incoming tracker reports. */
    public interface Visitor {
        /** A preserved block. */
        void block(long phys, int order);

        /** A frame of the tracker itself (a chunk or a bitmap). */
        void metadata(long phys);
    }

    /**
     * Walks a tracker a previous kernel serialized at {@code first}, validating everything before
     * use: magic, order, count, alignment, every address inside memory, no loops, blocks inside
     * memory. Nothing is reported unless the whole
     * tracker validates, so a bad one leaves nothing half-reserved.
     *
     * @throws HandoverFormatException if it does not validate
     */
    public static void deserialize(final PhysicalMemory memory, final long first, final Visitor visitor)
            throws HandoverFormatException {
        walk(memory, first, null);
        walk(memory, first, visitor);
    }

    private static void walk(final PhysicalMemory memory, final long first, final Visitor visitor)
            throws HandoverFormatException {
        long chunk = first;
        final java.util.Set<Long> seen = new java.util.HashSet<>();
        while (chunk != 0) {
            if ((chunk & PhysicalMemory.FRAME_MASK) != 0 || !memory.contains(chunk, PhysicalMemory.FRAME_SIZE)) {
                throw new HandoverFormatException(String.format("tracker chunk 0x%x is not a frame of memory", chunk));
            }
            if (!seen.add(chunk)) {
                throw new HandoverFormatException("tracker chunk list loops");
            }
            if (memory.load32(chunk + OFF_MAGIC) != MAGIC) {
                throw new HandoverFormatException(String.format("tracker chunk 0x%x has a bad magic", chunk));
            }
            final int order = readU16(memory, chunk + OFF_ORDER);
            final int count = readU16(memory, chunk + OFF_COUNT);
            if (order > MAX_ORDER || count > ENTRIES_PER_CHUNK) {
                throw new HandoverFormatException(String.format("tracker chunk 0x%x: order %d count %d out of range", chunk, order, count));
            }
            if (visitor != null) {
                visitor.metadata(chunk);
            }
            final long coverage = (long) BITS_PER_BITMAP << order << PhysicalMemory.FRAME_SHIFT;
            for (int i = 0; i < count; i++) {
                final long entry = chunk + OFF_ENTRIES + i * 16L;
                final long start = memory.load64(entry);
                final long bitmap = memory.load64(entry + 8);
                if (start < 0 || (start & (coverage - 1)) != 0 || (bitmap & PhysicalMemory.FRAME_MASK) != 0
                        || !memory.contains(bitmap, PhysicalMemory.FRAME_SIZE) || start >= memory.size()) {
                    throw new HandoverFormatException(String.format("tracker entry %d of chunk 0x%x is invalid", i, chunk));
                }
                if (visitor != null) {
                    visitor.metadata(bitmap);
                }
                for (int w = 0; w < BITS_PER_BITMAP / 64; w++) {
                    long bits = memory.load64(bitmap + w * 8L);
                    while (bits != 0) {
                        final int b = Long.numberOfTrailingZeros(bits);
                        bits &= bits - 1;
                        final long phys = start + (((long) w * 64 + b) << order << PhysicalMemory.FRAME_SHIFT);
                        if (!memory.contains(phys, PhysicalMemory.FRAME_SIZE << order)) {
                            throw new HandoverFormatException(String.format("tracker block 0x%x order %d lies outside memory", phys, order));
                        }
                        if (visitor != null) {
                            visitor.block(phys, order);
                        }
                    }
                }
            }
            chunk = memory.load64(chunk + OFF_NEXT);
        }
    }
}
