package org.iopersist.kernel.guestmemfs;

import static org.iopersist.kernel.guestmemfs.GmfsLayout.BLOCK_SHIFT;
import static org.iopersist.kernel.guestmemfs.GmfsLayout.BLOCK_SIZE;
import static org.iopersist.kernel.guestmemfs.GmfsLayout.GIB_BLOCKS;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.mm.PhysRange;
import org.iopersist.uapi.Errno;

/**
 * A filesystem for guest RAM over the carve-out {@code guestmemfs=} reserves: a flat directory of
 * files made of 2 MiB blocks. Its metadata lives in the carve-out itself ({@link GmfsLayout}), so
 * the next kernel can mount it from memory after a kexec; the Java objects here are caches of it.
 *
 * <p>A file is a list of extents, runs of blocks contiguous in the file and in memory, so the
 * kernel's memory per file follows its extents, not its size. A file grows in 1 GiB-aligned runs
 * of blocks wherever a whole GiB of the file fits and a free, 1 GiB-aligned GiB of the carve-out
 * is left, so the IOMMU can map it with 1 GiB leaves; smaller pieces go first into GiBs already
 * broken. New blocks are zeroed with the machine's zero range, which writes nothing.
 *
 * <p>A block that a persistent DMA mapping uses is pinned (a count per extent, kept in the extent
 * table; pinning part of an extent splits it, unpinning merges it back): unlink of its file, or a
 * truncate that would free it, is EBUSY. After KHO finalize the filesystem is frozen: create,
 * truncate and unlink are EBUSY until abort.
 *
 * <p>Lock: this object's monitor guards every change, in memory and in the caches; a freeze takes
 * it, so a handover never sees an operation half done.
 */
public final class Guestmemfs {
    /** What stat(2) needs. */
    public record Stat(long ino, long size, long blocks, int uid, int mode) {
    }

    /** What statfs(2) needs, in blocks of {@link GmfsLayout#BLOCK_SIZE}. */
    public record StatFs(long blocks, long freeBlocks, long files, long freeFiles) {
    }

    /** {@code length} bytes of a file from byte {@code offset} lie contiguously from {@code phys}. */
    public record Run(long offset, long phys, long length) {
    }

    /**
     * Where a file's bytes lie in physical memory: its runs in file order, each as long as memory
     * stays contiguous, the last ending at the file's size.
     */
    public record FileMap(long size, List<Run> runs) {
        public FileMap {
            runs = List.copyOf(runs);
        }

        private int indexOf(final long offset) {
            int lo = 0;
            int hi = runs.size() - 1;
            while (lo < hi) {
                final int mid = (lo + hi + 1) >>> 1;
                if (runs.get(mid).offset() <= offset) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            return lo;
        }

        /** Physical address of byte {@code offset}, or -1 outside the file. */
        public long phys(final long offset) {
            if (offset < 0 || offset >= size) {
                return -1;
            }
            final Run r = runs.get(indexOf(offset));
            return r.phys() + (offset - r.offset());
        }

        /** Bytes from {@code offset} to the end of its run (physically contiguous), 0 outside the file. */
        public long contiguous(final long offset) {
            if (offset < 0 || offset >= size) {
                return 0;
            }
            final Run r = runs.get(indexOf(offset));
            return r.offset() + r.length() - offset;
        }
    }

    /** The cache of one extent record, the one in slot {@code slot} of the extent table; guarded by the fs. */
    private static final class Extent {
        final int owner; // inode index
        long fileBlock;
        long block;
        long count;
        int pins;
        int slot;

        Extent(final int owner, final long fileBlock, final long block, final long count, final int pins) {
            this.owner = owner;
            this.fileBlock = fileBlock;
            this.block = block;
            this.count = count;
            this.pins = pins;
        }

        long fileEnd() {
            return fileBlock + count;
        }
    }

    private final PhysicalMemory memory;
    private final PhysRange region;
    private final long base;
    private final GmfsLayout.Geometry geo;
    private final long blocks;
    /** Block index, relative to the carve-out, of the carve-out's first 1 GiB boundary in memory. */
    private final long gibPhase;
    private final KernelLog log;
    // Caches of the metadata in memory, all guarded by this.
    private final Map<String, Integer> byName = new TreeMap<>();
    private final Map<Integer, List<Extent>> files = new HashMap<>(); // each in file order
    private final List<Extent> slots = new ArrayList<>(); // by extent-table slot
    private final Map<Integer, Integer> users = new HashMap<>(); // guarded by this; open files and mappings per inode
    private long freeBlocks; // guarded by this
    private boolean frozen; // guarded by this

    private Guestmemfs(final PhysicalMemory memory, final PhysRange region, final KernelLog log) {
        this.memory = memory;
        this.region = region;
        this.base = region.start();
        this.blocks = region.size() >>> BLOCK_SHIFT;
        this.geo = GmfsLayout.Geometry.of(blocks);
        this.gibPhase = -(base >>> BLOCK_SHIFT) & (GIB_BLOCKS - 1);
        this.log = log;
    }

    /** A fresh, empty filesystem over {@code region} (a cold boot). */
    public static Guestmemfs format(final PhysicalMemory memory, final PhysRange region, final KernelLog log) {
        if (region.size() < 2 * BLOCK_SIZE || (region.start() & (BLOCK_SIZE - 1)) != 0) {
            throw new KernelException(Errno.EINVAL, "guestmemfs needs a 2 MiB-aligned carve-out of at least 4 MiB, not " + region);
        }
        final Guestmemfs fs = new Guestmemfs(memory, region, log);
        final GmfsLayout.Geometry g = fs.geo;
        memory.zeroRange(fs.base, g.metaBlocks() << BLOCK_SHIFT);
        fs.sb32(GmfsLayout.SB_MAGIC, GmfsLayout.MAGIC);
        fs.sb32(GmfsLayout.SB_VERSION, GmfsLayout.VERSION);
        fs.sb64(GmfsLayout.SB_BLOCK_SIZE, BLOCK_SIZE);
        fs.sb64(GmfsLayout.SB_BLOCKS, fs.blocks);
        fs.sb32(GmfsLayout.SB_MAX_INODES, GmfsLayout.MAX_INODES);
        fs.sb32(GmfsLayout.SB_INODE_SIZE, (int) GmfsLayout.INODE.byteSize());
        fs.sb64(GmfsLayout.SB_BITMAP, GmfsLayout.BITMAP_OFFSET);
        fs.sb64(GmfsLayout.SB_INODES, GmfsLayout.INODE_OFFSET);
        fs.sb64(GmfsLayout.SB_EXTENT_TABLE, g.extentTableOffset());
        fs.sb64(GmfsLayout.SB_NEXT_INO, 1);
        fs.sb64(GmfsLayout.SB_META_BLOCKS, g.metaBlocks());
        fs.sb64(GmfsLayout.SB_EXTENT_CAPACITY, g.extentCapacity());
        fs.sb64(GmfsLayout.SB_EXTENTS, 0);
        fs.sb32(GmfsLayout.SB_EXTENT_SIZE, (int) GmfsLayout.EXTENT.byteSize());
        fs.bitmapSet(0, g.metaBlocks(), true);
        fs.freeBlocks = g.dataBlocks();
        log.info("guestmemfs: formatted %s: %d blocks of 2 MiB (%d of metadata), %d inodes", region, fs.blocks,
                g.metaBlocks(), GmfsLayout.MAX_INODES);
        return fs;
    }

    /**
     * Mounts the filesystem already in {@code region} (after a kexec): checks the superblock, the
     * inodes, the extents and the bitmap against each other and rebuilds the caches, in time that
     * follows the extents in use. Nothing is written until every check passed; then files unlinked
     * while open in the old kernel are freed.
     */
    public static Guestmemfs mount(final PhysicalMemory memory, final PhysRange region, final KernelLog log)
            throws HandoverFormatException {
        final Guestmemfs fs = new Guestmemfs(memory, region, log);
        final GmfsLayout.Geometry g = fs.geo;
        if (memory.load32(fs.base + GmfsLayout.SB_MAGIC) != GmfsLayout.MAGIC) {
            throw new HandoverFormatException("guestmemfs: no superblock in " + region);
        }
        final int version = memory.load32(fs.base + GmfsLayout.SB_VERSION);
        if (version != GmfsLayout.VERSION) {
            throw new HandoverFormatException(String.format("guestmemfs: the carve-out holds format version %d, this kernel reads only %d",
                    version, GmfsLayout.VERSION));
        }
        if (fs.sb64(GmfsLayout.SB_BLOCK_SIZE) != BLOCK_SIZE || fs.sb64(GmfsLayout.SB_BLOCKS) != fs.blocks
                || memory.load32(fs.base + GmfsLayout.SB_MAX_INODES) != GmfsLayout.MAX_INODES
                || memory.load32(fs.base + GmfsLayout.SB_INODE_SIZE) != GmfsLayout.INODE.byteSize()
                || fs.sb64(GmfsLayout.SB_BITMAP) != GmfsLayout.BITMAP_OFFSET
                || fs.sb64(GmfsLayout.SB_INODES) != GmfsLayout.INODE_OFFSET
                || fs.sb64(GmfsLayout.SB_EXTENT_TABLE) != g.extentTableOffset()
                || fs.sb64(GmfsLayout.SB_META_BLOCKS) != g.metaBlocks()
                || fs.sb64(GmfsLayout.SB_EXTENT_CAPACITY) != g.extentCapacity()
                || memory.load32(fs.base + GmfsLayout.SB_EXTENT_SIZE) != GmfsLayout.EXTENT.byteSize()) {
            throw new HandoverFormatException("guestmemfs: the superblock's geometry is not that of " + region);
        }
        final long extents = fs.sb64(GmfsLayout.SB_EXTENTS);
        if (extents < 0 || extents > g.extentCapacity()) {
            throw new HandoverFormatException("guestmemfs: " + extents + " extents in a table of " + g.extentCapacity());
        }
        final List<Integer> orphans = new ArrayList<>();
        final long[] nblocks = new long[GmfsLayout.MAX_INODES];
        for (int i = 0; i < GmfsLayout.MAX_INODES; i++) {
            final long in = fs.inode(i);
            if ((memory.load32(in + GmfsLayout.IN_FLAGS) & GmfsLayout.INODE_FLAG_USED) == 0) {
                continue;
            }
            final String name = fs.nameOf(i);
            if (name == null) {
                orphans.add(i); // unlinked while still open when the old kernel went: free it below
            } else if (fs.byName.putIfAbsent(name, i) != null) {
                throw new HandoverFormatException("guestmemfs: inode " + i + " has a duplicate name");
            }
            nblocks[i] = Integer.toUnsignedLong(memory.load32(in + GmfsLayout.IN_NBLOCKS));
            final long size = memory.load64(in + GmfsLayout.IN_SIZE);
            if (nblocks[i] > g.dataBlocks() || size < 0 || ((size + BLOCK_SIZE - 1) >>> BLOCK_SHIFT) != nblocks[i]) {
                throw new HandoverFormatException("guestmemfs: inode " + i + " size " + size + " does not match " + nblocks[i] + " blocks");
            }
            fs.files.put(i, new ArrayList<>());
        }
        for (int s = 0; s < extents; s++) {
            final long rec = fs.extentRecord(s);
            final int owner = memory.load32(rec + GmfsLayout.EX_OWNER) - 1;
            final Extent e = new Extent(owner, memory.load64(rec + GmfsLayout.EX_FILE_BLOCK), memory.load64(rec + GmfsLayout.EX_BLOCK),
                    memory.load64(rec + GmfsLayout.EX_COUNT), memory.load32(rec + GmfsLayout.EX_PINS));
            final List<Extent> map = owner >= 0 && owner < GmfsLayout.MAX_INODES ? fs.files.get(owner) : null;
            if (map == null || e.pins < 0 || e.count < 1 || e.block < g.metaBlocks() || e.block > fs.blocks - e.count
                    || e.fileBlock < 0 || e.fileBlock > nblocks[owner] - e.count) {
                throw new HandoverFormatException(String.format(
                        "guestmemfs: extent %d (inode %d, file block %d, block %d, %d blocks) lies outside its file or the carve-out",
                        s, owner, e.fileBlock, e.block, e.count));
            }
            e.slot = s;
            fs.slots.add(e);
            map.add(e);
        }
        long used = 0;
        for (Map.Entry<Integer, List<Extent>> f : fs.files.entrySet()) {
            final List<Extent> map = f.getValue();
            map.sort(Comparator.comparingLong(e -> e.fileBlock));
            long next = 0;
            for (Extent e : map) {
                next = e.fileBlock == next ? e.fileEnd() : -1;
            }
            if (next != nblocks[f.getKey()]) {
                throw new HandoverFormatException("guestmemfs: the extents of inode " + f.getKey()
                        + " do not cover its " + nblocks[f.getKey()] + " blocks once each");
            }
            used += next;
        }
        final List<Extent> byBlock = new ArrayList<>(fs.slots);
        byBlock.sort(Comparator.comparingLong(e -> e.block));
        long end = g.metaBlocks();
        for (Extent e : byBlock) {
            if (e.block < end || !fs.bitmapAllSet(e.block, e.count)) {
                throw new HandoverFormatException("guestmemfs: block " + e.block + " is in two extents or not marked in use");
            }
            end = e.block + e.count;
        }
        if (!fs.bitmapAllSet(0, g.metaBlocks()) || fs.bitmapCount() != g.metaBlocks() + used) {
            throw new HandoverFormatException("guestmemfs: the bitmap marks blocks no extent holds");
        }
        fs.freeBlocks = g.dataBlocks() - used;
        for (int i : orphans) {
            fs.release(i);
        }
        log.info("guestmemfs: mounted %s from memory: %d files, %d blocks used in %d extents", region, fs.byName.size(),
                used, fs.slots.size());
        return fs;
    }

    public PhysRange region() {
        return region;
    }

    // ------------------------------------------------------------------ raw metadata

    private void sb32(final long off, final int v) {
        memory.store32Release(base + off, v);
    }

    private void sb64(final long off, final long v) {
        memory.store64Release(base + off, v);
    }

    private long sb64(final long off) {
        return memory.load64(base + off);
    }

    private long inode(final int i) {
        return base + GmfsLayout.INODE_OFFSET + i * GmfsLayout.INODE.byteSize();
    }

    private long extentRecord(final int slot) {
        return base + geo.extentTableOffset() + slot * GmfsLayout.EXTENT.byteSize();
    }

    private long bitmapWord(final long b) {
        return base + GmfsLayout.BITMAP_OFFSET + (b >>> 6) * 8L;
    }

    /** The bits of word {@code w} that {@code [b, b + count)} covers. */
    private static long mask(final long w, final long b, final long count) {
        final long lo = Math.max(b, w << 6) - (w << 6);
        final long hi = Math.min(b + count, (w + 1) << 6) - (w << 6); // exclusive, 1..64
        return (hi == 64 ? -1L : (1L << hi) - 1) & (-1L << lo);
    }

    private boolean bitmapGet(final long b) {
        return (memory.load64(bitmapWord(b)) & (1L << b)) != 0;
    }

    private void bitmapSet(final long b, final long count, final boolean used) {
        for (long w = b >>> 6; w <= (b + count - 1) >>> 6; w++) {
            final long m = mask(w, b, count);
            final long v = memory.load64(bitmapWord(w << 6));
            memory.store64(bitmapWord(w << 6), used ? v | m : v & ~m);
        }
    }

    private boolean bitmapAllFree(final long b, final long count) {
        for (long w = b >>> 6; w <= (b + count - 1) >>> 6; w++) {
            if ((memory.load64(bitmapWord(w << 6)) & mask(w, b, count)) != 0) {
                return false;
            }
        }
        return true;
    }

    private boolean bitmapAllSet(final long b, final long count) {
        final long first = b >>> 6;
        final long last = (b + count - 1) >>> 6;
        if ((memory.load64(bitmapWord(b)) & mask(first, b, count)) != mask(first, b, count)
                || (memory.load64(bitmapWord(last << 6)) & mask(last, b, count)) != mask(last, b, count)) {
            return false;
        }
        // The words between are whole: a TiB file's extent spans thousands, read in bulk.
        final long[] words = bitmapWords();
        for (long w = first + 1; w < last; w += words.length) {
            final int n = (int) Math.min(words.length, last - w);
            MemorySegment.copy(memory.segment(), PhysicalMemory.U64, bitmapWord(w << 6), words, 0, n);
            for (int i = 0; i < n; i++) {
                if (words[i] != -1L) {
                    return false;
                }
            }
        }
        return true;
    }

    /** Set bits in the whole bitmap, padding included (which must be clear). */
    private long bitmapCount() {
        final long[] words = bitmapWords();
        final long total = geo.bitmapBytes() / 8;
        long n = 0;
        for (long w = 0; w < total; w += words.length) {
            final int k = (int) Math.min(words.length, total - w);
            MemorySegment.copy(memory.segment(), PhysicalMemory.U64, base + GmfsLayout.BITMAP_OFFSET + w * 8, words, 0, k);
            for (int i = 0; i < k; i++) {
                n += Long.bitCount(words[i]);
            }
        }
        return n;
    }

    /** A buffer for reading the bitmap in bulk at mount: a page's worth of words. */
    private static long[] bitmapWords() {
        return new long[512];
    }

    /** The first free block in {@code [from, to)}, or -1. */
    private long firstFree(final long from, final long to) {
        if (from >= to) {
            return -1;
        }
        for (long w = from >>> 6; w <= (to - 1) >>> 6; w++) {
            final long free = ~memory.load64(bitmapWord(w << 6)) & mask(w, from, to - from);
            if (free != 0) {
                return (w << 6) + Long.numberOfTrailingZeros(free);
            }
        }
        return -1;
    }

    /** Free blocks from {@code b} on, at most {@code max}. */
    private long freeRunLength(final long b, final long max) {
        final long limit = Math.min(max, blocks - b);
        long n = 0;
        while (n < limit && !bitmapGet(b + n)) {
            n++;
        }
        return n;
    }

    private void writeExtent(final Extent e) {
        final long rec = extentRecord(e.slot);
        memory.store64(rec + GmfsLayout.EX_FILE_BLOCK, e.fileBlock);
        memory.store64(rec + GmfsLayout.EX_BLOCK, e.block);
        memory.store64(rec + GmfsLayout.EX_COUNT, e.count);
        memory.store32Release(rec + GmfsLayout.EX_PINS, e.pins);
        memory.store32Release(rec + GmfsLayout.EX_OWNER, e.owner + 1);
    }

    /** Writes {@code e} into the next free slot, then counts it in. */
    private void addExtent(final Extent e) {
        e.slot = slots.size();
        writeExtent(e);
        slots.add(e);
        sb64(GmfsLayout.SB_EXTENTS, slots.size());
    }

    /** Moves the last slot's extent into {@code e}'s slot, then counts one slot out. */
    private void dropExtent(final Extent e) {
        final Extent last = slots.removeLast();
        if (last != e) {
            last.slot = e.slot;
            slots.set(e.slot, last);
            writeExtent(last);
        }
        sb64(GmfsLayout.SB_EXTENTS, slots.size());
    }

    private String nameOf(final int i) {
        final byte[] raw = new byte[64];
        memory.read(inode(i) + GmfsLayout.IN_NAME, raw, 0, 64);
        int n = 0;
        while (n < 64 && raw[n] != 0) {
            n++;
        }
        return n == 0 || n == 64 ? null : new String(raw, 0, n, StandardCharsets.UTF_8);
    }

    /** Physical address of block {@code b}. */
    long blockPhys(final long b) {
        return base + (b << BLOCK_SHIFT);
    }

    // ------------------------------------------------------------------ block allocation

    /** First block of the 1 GiB window (in memory) that holds block {@code b}; may lie before the carve-out. */
    private long windowStart(final long b) {
        return b - ((b - gibPhase) & (GIB_BLOCKS - 1));
    }

    /** A window is a whole GiB of the carve-out's data blocks. */
    private boolean wholeWindow(final long start) {
        return start >= geo.metaBlocks() && start + GIB_BLOCKS <= blocks;
    }

    /** The first block of a free, 1 GiB-aligned GiB, or -1. */
    private long findFreeGib() {
        for (long w = windowStart(geo.metaBlocks()); w < blocks; w += GIB_BLOCKS) {
            if (wholeWindow(w) && bitmapAllFree(w, GIB_BLOCKS)) {
                return w;
            }
        }
        return -1;
    }

    /**
     * A free block to start a run at: {@code hint} (right after the file's last block) or the first
     * free block, in a GiB that is not whole and free if there is one, so free GiBs stay whole.
     */
    private long pickStart(final long hint) {
        final boolean hintFree = hint < blocks && !bitmapGet(hint);
        if (hintFree && !(wholeWindow(windowStart(hint)) && bitmapAllFree(windowStart(hint), GIB_BLOCKS))) {
            return hint;
        }
        for (long w = windowStart(geo.metaBlocks()); w < blocks; w += GIB_BLOCKS) {
            if (!(wholeWindow(w) && bitmapAllFree(w, GIB_BLOCKS))) {
                final long b = firstFree(Math.max(w, geo.metaBlocks()), Math.min(w + GIB_BLOCKS, blocks));
                if (b >= 0) {
                    return b;
                }
            }
        }
        return hintFree ? hint : firstFree(geo.metaBlocks(), blocks);
    }

    /**
     * Gives file {@code i} blocks {@code [have, want)}, zeroed. The caller checked that enough are
     * free. A whole GiB of the file, 1 GiB-aligned in the file, gets a 1 GiB-aligned GiB of memory
     * when one is free; the rest goes in runs that cross no GiB boundary, in the file or in memory.
     */
    private void grow(final int i, final List<Extent> map, final long have, final long want) {
        long f = have;
        while (f < want) {
            final long inWindow = GIB_BLOCKS - (f & (GIB_BLOCKS - 1));
            long b = inWindow == GIB_BLOCKS && want - f >= GIB_BLOCKS ? findFreeGib() : -1;
            final long n;
            if (b >= 0) {
                n = GIB_BLOCKS;
            } else {
                b = pickStart(map.isEmpty() ? blocks : map.getLast().block + map.getLast().count);
                // Within b's GiB of memory too, so a run never breaks into the next one.
                n = freeRunLength(b, Math.min(Math.min(want - f, inWindow), windowStart(b) + GIB_BLOCKS - b));
            }
            memory.zeroRange(blockPhys(b), n << BLOCK_SHIFT);
            bitmapSet(b, n, true);
            final Extent last = map.isEmpty() ? null : map.getLast();
            if (last != null && last.pins == 0 && last.block + last.count == b && last.fileEnd() == f) {
                last.count += n;
                writeExtent(last);
            } else {
                final Extent e = new Extent(i, f, b, n, 0);
                addExtent(e);
                map.add(e);
            }
            freeBlocks -= n;
            f += n;
        }
    }

    /** Index in {@code map} of the extent holding file block {@code fileBlock} (or the last before it). */
    private static int indexOf(final List<Extent> map, final long fileBlock) {
        int lo = 0;
        int hi = map.size() - 1;
        while (lo < hi) {
            final int mid = (lo + hi + 1) >>> 1;
            if (map.get(mid).fileBlock <= fileBlock) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return lo;
    }

    /** Splits the extent that holds file block {@code fileBlock} so that an extent starts there. */
    private void splitAt(final List<Extent> map, final long fileBlock) {
        if (map.isEmpty()) {
            return;
        }
        final int k = indexOf(map, fileBlock);
        final Extent e = map.get(k);
        if (e.fileBlock >= fileBlock || e.fileEnd() <= fileBlock) {
            return;
        }
        final long head = fileBlock - e.fileBlock;
        final Extent tail = new Extent(e.owner, fileBlock, e.block + head, e.count - head, e.pins);
        e.count = head;
        writeExtent(e);
        addExtent(tail);
        map.add(k + 1, tail);
    }

    /** Merges neighbours in {@code map[from..to]} that are contiguous in file and memory and pinned alike. */
    private void merge(final List<Extent> map, final int from, final int to) {
        int k = Math.max(0, from);
        int last = Math.min(to, map.size() - 1);
        while (k < last) {
            final Extent a = map.get(k);
            final Extent b = map.get(k + 1);
            if (a.pins == b.pins && a.fileEnd() == b.fileBlock && a.block + a.count == b.block) {
                a.count += b.count;
                writeExtent(a);
                map.remove(k + 1);
                dropExtent(b);
                last--;
            } else {
                k++;
            }
        }
    }

    private void freeBlocks(final long b, final long count) {
        bitmapSet(b, count, false);
        freeBlocks += count;
    }

    // ------------------------------------------------------------------ namespace

    private static void checkName(final String name) {
        if (name.isEmpty() || name.contains("/") || name.equals(".") || name.equals("..")) {
            throw new KernelException(Errno.ENOENT, "guestmemfs: bad name '" + name + "' (flat directory)");
        }
        if (name.getBytes(StandardCharsets.UTF_8).length > GmfsLayout.NAME_MAX) {
            throw new KernelException(Errno.ENAMETOOLONG, "guestmemfs: name longer than " + GmfsLayout.NAME_MAX + " bytes");
        }
    }

    private void checkMutable(final String what) {
        if (frozen) {
            throw new KernelException(Errno.EBUSY, "guestmemfs: " + what + " while frozen for live update");
        }
    }

    /** The inode of {@code name}, creating it if {@code create}; EEXIST with {@code exclusive}. */
    public synchronized int lookup(final String name, final boolean create, final boolean exclusive, final int uid) {
        checkName(name);
        final Integer existing = byName.get(name);
        if (existing != null) {
            if (create && exclusive) {
                throw new KernelException(Errno.EEXIST, "guestmemfs: " + name + " exists");
            }
            return existing;
        }
        if (!create) {
            throw new KernelException(Errno.ENOENT, "guestmemfs: no file " + name);
        }
        checkMutable("create");
        for (int i = 0; i < GmfsLayout.MAX_INODES; i++) {
            final long in = inode(i);
            if ((memory.load32(in + GmfsLayout.IN_FLAGS) & GmfsLayout.INODE_FLAG_USED) == 0) {
                memory.fill(in, GmfsLayout.INODE.byteSize(), (byte) 0);
                final byte[] n = name.getBytes(StandardCharsets.UTF_8);
                memory.write(in + GmfsLayout.IN_NAME, n, 0, n.length);
                final long ino = sb64(GmfsLayout.SB_NEXT_INO);
                sb64(GmfsLayout.SB_NEXT_INO, ino + 1);
                memory.store64(in + GmfsLayout.IN_INO, ino);
                memory.store32Release(in + GmfsLayout.IN_UID, uid);
                memory.store32Release(in + GmfsLayout.IN_MODE, 0100600);
                memory.store32Release(in + GmfsLayout.IN_FLAGS, GmfsLayout.INODE_FLAG_USED);
                byName.put(name, i);
                files.put(i, new ArrayList<>());
                return i;
            }
        }
        throw new KernelException(Errno.ENOSPC, "guestmemfs: all " + GmfsLayout.MAX_INODES + " inodes in use");
    }

    /** unlink(2): EBUSY if any block is pinned; the data goes when the last user (open file, mapping) does. */
    public synchronized void unlink(final String name) {
        checkName(name);
        final Integer i = byName.get(name);
        if (i == null) {
            throw new KernelException(Errno.ENOENT, "guestmemfs: no file " + name);
        }
        checkMutable("unlink");
        for (Extent e : files.get(i)) {
            if (e.pins != 0) {
                throw new KernelException(Errno.EBUSY, "guestmemfs: " + name + " has pinned blocks");
            }
        }
        byName.remove(name);
        memory.store32Release(inode(i) + GmfsLayout.IN_NAME, 0); // nameless: reachable only by its users
        if (users.getOrDefault(i, 0) == 0) {
            release(i);
        }
    }

    private void release(final int i) {
        for (Extent e : files.remove(i)) {
            freeBlocks(e.block, e.count);
            dropExtent(e);
        }
        memory.store32Release(inode(i) + GmfsLayout.IN_FLAGS, 0);
    }

    public synchronized Stat stat(final String name) {
        checkName(name);
        final Integer i = byName.get(name);
        if (i == null) {
            throw new KernelException(Errno.ENOENT, "guestmemfs: no file " + name);
        }
        return statOf(i);
    }

    synchronized Stat statOf(final int i) {
        final long in = inode(i);
        return new Stat(memory.load64(in + GmfsLayout.IN_INO), memory.load64(in + GmfsLayout.IN_SIZE),
                nblocks(i), memory.load32(in + GmfsLayout.IN_UID), memory.load32(in + GmfsLayout.IN_MODE));
    }

    private long nblocks(final int i) {
        final List<Extent> map = files.get(i);
        return map.isEmpty() ? 0 : map.getLast().fileEnd();
    }

    public synchronized StatFs statfs() {
        return new StatFs(geo.dataBlocks(), freeBlocks, GmfsLayout.MAX_INODES, GmfsLayout.MAX_INODES - inodesInUse());
    }

    private int inodesInUse() {
        int n = 0;
        for (int i = 0; i < GmfsLayout.MAX_INODES; i++) {
            n += (memory.load32(inode(i) + GmfsLayout.IN_FLAGS) & GmfsLayout.INODE_FLAG_USED) != 0 ? 1 : 0;
        }
        return n;
    }

    /** The names in the directory, sorted. */
    public synchronized List<String> list() {
        return List.copyOf(byName.keySet());
    }

    /** In-kernel create + ftruncate (what a VMM does with open(O_CREAT) and ftruncate). */
    public synchronized void createFile(final String name, final long size, final int uid) {
        final int inode = lookup(name, true, true, uid);
        try {
            truncate(inode, size);
        } catch (KernelException e) {
            unlink(name);
            throw e;
        }
    }

    /** Physical address of byte {@code offset} of file {@code name}. */
    public synchronized long phys(final String name, final long offset) {
        return physOf(inodeOf(name), offset);
    }

    /** Where the bytes of file {@code name} lie. */
    public synchronized FileMap map(final String name) {
        return mapOf(inodeOf(name));
    }

    private int inodeOf(final String name) {
        checkName(name);
        final Integer i = byName.get(name);
        if (i == null) {
            throw new KernelException(Errno.ENOENT, "guestmemfs: no file " + name);
        }
        return i;
    }

    private FileMap mapOf(final int i) {
        final long size = size(i);
        final List<Run> runs = new ArrayList<>();
        long offset = 0;
        long phys = -1;
        long length = 0;
        for (Extent e : files.get(i)) {
            if (blockPhys(e.block) != phys + length) {
                if (length > 0) {
                    runs.add(new Run(offset, phys, length));
                }
                offset = e.fileBlock << BLOCK_SHIFT;
                phys = blockPhys(e.block);
                length = 0;
            }
            length += Math.min(e.count << BLOCK_SHIFT, size - (e.fileBlock << BLOCK_SHIFT));
        }
        if (length > 0) {
            runs.add(new Run(offset, phys, length));
        }
        return new FileMap(size, runs);
    }

    /** The file with inode number {@code ino}, as its name and inode index, or null. */
    private Map.Entry<String, Integer> fileOfIno(final long ino) {
        for (Map.Entry<String, Integer> e : byName.entrySet()) {
            if (memory.load64(inode(e.getValue()) + GmfsLayout.IN_INO) == ino) {
                return e;
            }
        }
        return null;
    }

    /** stat of the file with inode number {@code ino}, or null if there is none. */
    public synchronized Stat statInode(final long ino) {
        final Map.Entry<String, Integer> f = fileOfIno(ino);
        return f == null ? null : statOf(f.getValue());
    }

    /** Where the bytes of the file with inode number {@code ino} lie; null if there is no such file. */
    public synchronized FileMap mapOfInode(final long ino) {
        final Map.Entry<String, Integer> f = fileOfIno(ino);
        return f == null ? null : mapOf(f.getValue());
    }

    /** An in-kernel open of the file with inode number {@code ino} (ENOENT if none). */
    public synchronized GuestmemFile openInode(final long ino) {
        final Map.Entry<String, Integer> f = fileOfIno(ino);
        if (f == null) {
            throw new KernelException(Errno.ENOENT, "guestmemfs: no inode " + ino);
        }
        return new GuestmemFile(this, f.getValue(), f.getKey(), memory);
    }

    // ------------------------------------------------------------------ file contents

    synchronized long size(final int i) {
        return memory.load64(inode(i) + GmfsLayout.IN_SIZE);
    }

    /**
     * ftruncate(2): grows with zeroed blocks (ENOSPC if the carve-out is full, nothing changed then),
     * shrinks by freeing whole blocks past the end (EBUSY if one is pinned).
     */
    synchronized void truncate(final int i, final long length) {
        if (length < 0 || length > geo.dataBlocks() << BLOCK_SHIFT) {
            throw new KernelException(length < 0 ? Errno.EINVAL : Errno.EFBIG, "guestmemfs: length " + length);
        }
        checkMutable("truncate");
        final List<Extent> map = files.get(i);
        final long have = nblocks(i);
        final long want = (length + BLOCK_SIZE - 1) >>> BLOCK_SHIFT;
        if (want > have) {
            if (want - have > freeBlocks) {
                throw new KernelException(Errno.ENOSPC, String.format("guestmemfs: %d more blocks wanted, %d free",
                        want - have, freeBlocks));
            }
            grow(i, map, have, want);
        } else if (want < have) {
            for (int k = indexOf(map, want); k < map.size(); k++) {
                final Extent e = map.get(k);
                if (e.fileEnd() > want && e.pins != 0) {
                    throw new KernelException(Errno.EBUSY, "guestmemfs: truncate would free pinned block "
                            + (e.block + Math.max(0, want - e.fileBlock)));
                }
            }
            while (!map.isEmpty() && map.getLast().fileEnd() > want) {
                final Extent e = map.getLast();
                if (e.fileBlock >= want) {
                    freeBlocks(e.block, e.count);
                    map.removeLast();
                    dropExtent(e);
                } else {
                    final long keep = want - e.fileBlock;
                    freeBlocks(e.block + keep, e.count - keep);
                    e.count = keep;
                    writeExtent(e);
                }
            }
        }
        memory.store32Release(inode(i) + GmfsLayout.IN_NBLOCKS, (int) want);
        memory.store64(inode(i) + GmfsLayout.IN_SIZE, length);
    }

    /** Physical address of byte {@code offset} of file {@code i}; EINVAL past the end. */
    synchronized long physOf(final int i, final long offset) {
        final Extent e = extentAt(i, offset);
        return blockPhys(e.block) + (offset - (e.fileBlock << BLOCK_SHIFT));
    }

    /** The extent of file {@code i} holding byte {@code offset}; EINVAL past the end. */
    private Extent extentAt(final int i, final long offset) {
        if (offset < 0 || offset >= size(i)) {
            throw new KernelException(Errno.EINVAL, "guestmemfs: offset " + offset + " beyond the file's " + size(i) + " bytes");
        }
        final List<Extent> map = files.get(i);
        return map.get(indexOf(map, offset >>> BLOCK_SHIFT));
    }

    /** The contiguous run of file {@code i} holding byte {@code offset}: to its extent's end or the file's. */
    synchronized Run runAt(final int i, final long offset) {
        final Extent e = extentAt(i, offset);
        return new Run(offset, blockPhys(e.block) + (offset - (e.fileBlock << BLOCK_SHIFT)),
                Math.min(e.fileEnd() << BLOCK_SHIFT, size(i)) - offset);
    }

    /** Pins every block {@code [offset, offset + length)} touches (EINVAL past the end). */
    synchronized void pin(final int i, final long offset, final long length) {
        adjustPins(i, offset, length, 1);
    }

    synchronized void unpin(final int i, final long offset, final long length) {
        adjustPins(i, offset, length, -1);
    }

    private void adjustPins(final int i, final long offset, final long length, final int delta) {
        if (length <= 0 || offset < 0 || offset + length > size(i)) {
            throw new KernelException(Errno.EINVAL, String.format("guestmemfs: pin range 0x%x+0x%x outside the file", offset, length));
        }
        final List<Extent> map = files.get(i);
        final long first = offset >>> BLOCK_SHIFT;
        final long end = ((offset + length - 1) >>> BLOCK_SHIFT) + 1;
        for (int k = indexOf(map, first); k < map.size() && map.get(k).fileBlock < end; k++) {
            if (map.get(k).pins + delta < 0) {
                throw new IllegalStateException("guestmemfs: unbalanced unpin of block " + map.get(k).block);
            }
        }
        splitAt(map, first);
        splitAt(map, end);
        final int from = indexOf(map, first);
        int to = from;
        for (int k = from; k < map.size() && map.get(k).fileBlock < end; k++) {
            final Extent e = map.get(k);
            e.pins += delta;
            writeExtent(e);
            to = k;
        }
        merge(map, from - 1, to + 1);
    }

    /** Pins of the block holding byte {@code offset} (for tests and sysfs). */
    public synchronized int pinsAt(final String name, final long offset) {
        final List<Extent> map = files.get(inodeOf(name));
        return map.get(indexOf(map, offset >>> BLOCK_SHIFT)).pins;
    }

    /** Pins summed over every block of every file: 0 once nothing maps guest memory for DMA. */
    public synchronized long pinnedBlocks() {
        long n = 0;
        for (List<Extent> map : files.values()) {
            for (Extent e : map) {
                n += (long) e.pins * e.count;
            }
        }
        return n;
    }

    /** Extents in use, all files together (for tests and sysfs). */
    public synchronized int extents() {
        return slots.size();
    }

    /** Open files and mapped pages keep an inode alive; {@code n} of them come. */
    synchronized void addUsers(final int i, final int n) {
        users.merge(i, n, Integer::sum);
    }

    synchronized void dropUsers(final int i, final int n) {
        final int left = users.merge(i, -n, Integer::sum);
        if (left == 0) {
            users.remove(i);
            if (!byName.containsValue(i) && files.containsKey(i)) {
                release(i); // unlinked while open: the last user frees it
            }
        }
    }

    public synchronized void freeze() {
        frozen = true;
    }

    public synchronized void thaw() {
        frozen = false;
    }

    public synchronized boolean frozen() {
        return frozen;
    }

    KernelLog log() {
        return log;
    }
}
