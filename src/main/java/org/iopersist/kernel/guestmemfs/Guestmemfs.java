package org.iopersist.kernel.guestmemfs;

import static org.iopersist.kernel.guestmemfs.GmfsLayout.BLOCK_SHIFT;
import static org.iopersist.kernel.guestmemfs.GmfsLayout.BLOCK_SIZE;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
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
 * the next kernel can mount it from memory after a kexec; the Java maps here are caches of it.
 *
 * <p>A block that a persistent DMA mapping uses is pinned (a count per block, kept in the block
 * table): unlink of its file, or a truncate that would free it, is EBUSY. After KHO finalize the
 * filesystem is frozen: create, truncate and unlink are EBUSY until abort.
 *
 * <p>Lock: this object's monitor guards every change, in memory and in the caches.
 */
public final class Guestmemfs {
    /** What stat(2) needs. */
    public record Stat(long ino, long size, long blocks, int uid, int mode) {
    }

    /** What statfs(2) needs, in blocks of {@link GmfsLayout#BLOCK_SIZE}. */
    public record StatFs(long blocks, long freeBlocks, long files, long freeFiles) {
    }

    private final PhysicalMemory memory;
    private final PhysRange region;
    private final long base;
    private final int blocks;
    private final KernelLog log;
    // Caches of the metadata in memory.
    private final Map<String, Integer> byName = new TreeMap<>();
    private final Map<Integer, List<Integer>> blockMaps = new HashMap<>();
    private final Map<Integer, Integer> users = new HashMap<>(); // open files and mappings per inode
    private int freeBlocks;
    private boolean frozen;

    private Guestmemfs(final PhysicalMemory memory, final PhysRange region, final KernelLog log) {
        this.memory = memory;
        this.region = region;
        this.base = region.start();
        this.blocks = (int) Math.min(region.size() >>> BLOCK_SHIFT, GmfsLayout.MAX_BLOCKS);
        this.log = log;
    }

    /** A fresh, empty filesystem over {@code region} (a cold boot). */
    public static Guestmemfs format(final PhysicalMemory memory, final PhysRange region, final KernelLog log) {
        if (region.size() < 2 * BLOCK_SIZE || (region.start() & (BLOCK_SIZE - 1)) != 0) {
            throw new KernelException(Errno.EINVAL, "guestmemfs needs a 2 MiB-aligned carve-out of at least 4 MiB, not " + region);
        }
        final Guestmemfs fs = new Guestmemfs(memory, region, log);
        memory.fill(fs.base, GmfsLayout.BLOCK_TABLE_OFFSET + (long) fs.blocks * GmfsLayout.BLOCK.byteSize(), (byte) 0);
        fs.sb32(GmfsLayout.SB_MAGIC, GmfsLayout.MAGIC);
        fs.sb32(GmfsLayout.SB_VERSION, GmfsLayout.VERSION);
        memory.store64(fs.base + GmfsLayout.SB_BLOCK_SIZE, BLOCK_SIZE);
        memory.store64(fs.base + GmfsLayout.SB_BLOCKS, fs.blocks);
        fs.sb32(GmfsLayout.SB_MAX_INODES, GmfsLayout.MAX_INODES);
        fs.sb32(GmfsLayout.SB_INODE_SIZE, (int) GmfsLayout.INODE.byteSize());
        memory.store64(fs.base + GmfsLayout.SB_BITMAP, GmfsLayout.BITMAP_OFFSET);
        memory.store64(fs.base + GmfsLayout.SB_INODES, GmfsLayout.INODE_OFFSET);
        memory.store64(fs.base + GmfsLayout.SB_BLOCK_TABLE, GmfsLayout.BLOCK_TABLE_OFFSET);
        memory.store64(fs.base + GmfsLayout.SB_NEXT_INO, 1);
        fs.setBlock(0, GmfsLayout.OWNER_METADATA, 0);
        fs.freeBlocks = fs.blocks - 1;
        log.info("guestmemfs: formatted %s: %d blocks of 2 MiB, %d inodes", region, fs.blocks, GmfsLayout.MAX_INODES);
        return fs;
    }

    /**
     * Mounts the filesystem already in {@code region} (after a kexec): checks the superblock, the
     * inodes and the block table against each other and rebuilds the caches. Nothing is written
     * until every check passed; then files unlinked while open in the old kernel are freed.
     */
    public static Guestmemfs mount(final PhysicalMemory memory, final PhysRange region, final KernelLog log)
            throws HandoverFormatException {
        final Guestmemfs fs = new Guestmemfs(memory, region, log);
        if (memory.load32(fs.base + GmfsLayout.SB_MAGIC) != GmfsLayout.MAGIC
                || memory.load32(fs.base + GmfsLayout.SB_VERSION) != GmfsLayout.VERSION
                || memory.load64(fs.base + GmfsLayout.SB_BLOCK_SIZE) != BLOCK_SIZE
                || memory.load64(fs.base + GmfsLayout.SB_BLOCKS) != fs.blocks
                || memory.load32(fs.base + GmfsLayout.SB_MAX_INODES) != GmfsLayout.MAX_INODES) {
            throw new HandoverFormatException("guestmemfs: no valid superblock in " + region);
        }
        final List<Integer> orphans = new ArrayList<>();
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
            final int nblocks = memory.load32(in + GmfsLayout.IN_NBLOCKS);
            final long size = memory.load64(in + GmfsLayout.IN_SIZE);
            if (nblocks < 0 || nblocks > fs.blocks || size < 0 || ((size + BLOCK_SIZE - 1) >>> BLOCK_SHIFT) != nblocks) {
                throw new HandoverFormatException("guestmemfs: inode " + i + " size " + size + " does not match " + nblocks + " blocks");
            }
            final List<Integer> map = new ArrayList<>();
            for (int k = 0; k < nblocks; k++) {
                map.add(-1);
            }
            fs.blockMaps.put(i, map);
        }
        int used = 0;
        for (int b = 0; b < fs.blocks; b++) {
            final int owner = memory.load32(fs.blockRecord(b) + GmfsLayout.BL_OWNER);
            final boolean bit = fs.bitmapGet(b);
            if (b == 0) {
                if (owner != GmfsLayout.OWNER_METADATA || !bit) {
                    throw new HandoverFormatException("guestmemfs: block 0 is not the metadata block");
                }
                continue;
            }
            if (owner == 0) {
                if (bit || memory.load32(fs.blockRecord(b) + GmfsLayout.BL_PINS) != 0) {
                    throw new HandoverFormatException("guestmemfs: free block " + b + " is marked used or pinned");
                }
                continue;
            }
            final List<Integer> map = fs.blockMaps.get(owner - 1);
            final int index = memory.load32(fs.blockRecord(b) + GmfsLayout.BL_FILE_BLOCK);
            if (!bit || map == null || index < 0 || index >= map.size() || map.get(index) != -1) {
                throw new HandoverFormatException("guestmemfs: block " + b + " claims inode " + (owner - 1) + " block " + index);
            }
            map.set(index, b);
            used++;
        }
        for (Map.Entry<Integer, List<Integer>> e : fs.blockMaps.entrySet()) {
            if (e.getValue().contains(-1)) {
                throw new HandoverFormatException("guestmemfs: inode " + e.getKey() + " misses blocks");
            }
        }
        fs.freeBlocks = fs.blocks - 1 - used;
        for (int i : orphans) {
            fs.release(i);
        }
        log.info("guestmemfs: mounted %s from memory: %d files, %d blocks used", region, fs.byName.size(), used);
        return fs;
    }

    public PhysRange region() {
        return region;
    }

    // ------------------------------------------------------------------ raw metadata

    private void sb32(final long off, final int v) {
        memory.store32Release(base + off, v);
    }

    private long inode(final int i) {
        return base + GmfsLayout.INODE_OFFSET + i * GmfsLayout.INODE.byteSize();
    }

    private long blockRecord(final int b) {
        return base + GmfsLayout.BLOCK_TABLE_OFFSET + b * GmfsLayout.BLOCK.byteSize();
    }

    private boolean bitmapGet(final int b) {
        return (memory.load64(base + GmfsLayout.BITMAP_OFFSET + (b >>> 6) * 8L) & (1L << b)) != 0;
    }

    private void bitmapSet(final int b, final boolean used) {
        final long word = base + GmfsLayout.BITMAP_OFFSET + (b >>> 6) * 8L;
        final long v = memory.load64(word);
        memory.store64(word, used ? v | (1L << b) : v & ~(1L << b));
    }

    private void setBlock(final int b, final int owner, final int fileBlock) {
        memory.store32Release(blockRecord(b) + GmfsLayout.BL_OWNER, owner);
        memory.store32Release(blockRecord(b) + GmfsLayout.BL_FILE_BLOCK, fileBlock);
        memory.store32Release(blockRecord(b) + GmfsLayout.BL_PINS, 0);
        bitmapSet(b, owner != 0);
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

    /** Physical address of data block {@code b}. */
    long blockPhys(final int b) {
        return base + ((long) b << BLOCK_SHIFT);
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
                final long ino = memory.load64(base + GmfsLayout.SB_NEXT_INO);
                memory.store64(base + GmfsLayout.SB_NEXT_INO, ino + 1);
                memory.store64(in + GmfsLayout.IN_INO, ino);
                memory.store32Release(in + GmfsLayout.IN_UID, uid);
                memory.store32Release(in + GmfsLayout.IN_MODE, 0100600);
                memory.store32Release(in + GmfsLayout.IN_FLAGS, GmfsLayout.INODE_FLAG_USED);
                byName.put(name, i);
                blockMaps.put(i, new ArrayList<>());
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
        for (int b : blockMaps.get(i)) {
            if (pins(b) != 0) {
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
        for (int b : blockMaps.remove(i)) {
            setBlock(b, 0, 0);
            freeBlocks++;
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
                blockMaps.get(i).size(), memory.load32(in + GmfsLayout.IN_UID), memory.load32(in + GmfsLayout.IN_MODE));
    }

    public synchronized StatFs statfs() {
        return new StatFs(blocks - 1, freeBlocks, GmfsLayout.MAX_INODES, GmfsLayout.MAX_INODES - inodesInUse());
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
        checkName(name);
        final Integer i = byName.get(name);
        if (i == null) {
            throw new KernelException(Errno.ENOENT, "guestmemfs: no file " + name);
        }
        return physOf(i, offset);
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

    /**
     * Physical address of each 2 MiB block of the file with inode number {@code ino}, in file
     * order, and its size in the last slot; null if there is no such file.
     */
    public synchronized long[] blocksOfInode(final long ino) {
        final Map.Entry<String, Integer> f = fileOfIno(ino);
        if (f == null) {
            return null;
        }
        final List<Integer> map = blockMaps.get(f.getValue());
        final long[] out = new long[map.size() + 1];
        for (int k = 0; k < map.size(); k++) {
            out[k] = blockPhys(map.get(k));
        }
        out[map.size()] = size(f.getValue());
        return out;
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
        if (length < 0 || length > (long) (blocks - 1) << BLOCK_SHIFT) {
            throw new KernelException(length < 0 ? Errno.EINVAL : Errno.EFBIG, "guestmemfs: length " + length);
        }
        checkMutable("truncate");
        final List<Integer> map = blockMaps.get(i);
        final int want = (int) ((length + BLOCK_SIZE - 1) >>> BLOCK_SHIFT);
        if (want > map.size()) {
            if (want - map.size() > freeBlocks) {
                throw new KernelException(Errno.ENOSPC, String.format("guestmemfs: %d more blocks wanted, %d free",
                        want - map.size(), freeBlocks));
            }
            for (int b = 1; b < blocks && map.size() < want; b++) {
                if (!bitmapGet(b)) {
                    memory.fill(blockPhys(b), BLOCK_SIZE, (byte) 0);
                    setBlock(b, i + 1, map.size());
                    map.add(b);
                    freeBlocks--;
                }
            }
        } else if (want < map.size()) {
            for (int k = want; k < map.size(); k++) {
                if (pins(map.get(k)) != 0) {
                    throw new KernelException(Errno.EBUSY, "guestmemfs: truncate would free pinned block " + map.get(k));
                }
            }
            while (map.size() > want) {
                setBlock(map.removeLast(), 0, 0);
                freeBlocks++;
            }
        }
        memory.store32Release(inode(i) + GmfsLayout.IN_NBLOCKS, map.size());
        memory.store64(inode(i) + GmfsLayout.IN_SIZE, length);
    }

    /** Physical address of byte {@code offset} of file {@code i}; EINVAL past the end. */
    synchronized long physOf(final int i, final long offset) {
        final List<Integer> map = blockMaps.get(i);
        if (offset < 0 || offset >= size(i)) {
            throw new KernelException(Errno.EINVAL, "guestmemfs: offset " + offset + " beyond the file's " + size(i) + " bytes");
        }
        return blockPhys(map.get((int) (offset >>> BLOCK_SHIFT))) + (offset & (BLOCK_SIZE - 1));
    }

    private int pins(final int b) {
        return memory.load32(blockRecord(b) + GmfsLayout.BL_PINS);
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
        final List<Integer> map = blockMaps.get(i);
        for (long k = offset >>> BLOCK_SHIFT; k <= (offset + length - 1) >>> BLOCK_SHIFT; k++) {
            final int b = map.get((int) k);
            final int now = pins(b) + delta;
            if (now < 0) {
                throw new IllegalStateException("guestmemfs: unbalanced unpin of block " + b);
            }
            memory.store32Release(blockRecord(b) + GmfsLayout.BL_PINS, now);
        }
    }

    /** Pins of the block holding byte {@code offset} (for tests and sysfs). */
    public synchronized int pinsAt(final String name, final long offset) {
        return pins(blockMaps.get(byName.get(name)).get((int) (offset >>> BLOCK_SHIFT)));
    }

    /** Open files and mapped pages keep an inode alive; {@code n} of them come. */
    synchronized void addUsers(final int i, final int n) {
        users.merge(i, n, Integer::sum);
    }

    synchronized void dropUsers(final int i, final int n) {
        final int left = users.merge(i, -n, Integer::sum);
        if (left == 0) {
            users.remove(i);
            if (!byName.containsValue(i) && blockMaps.containsKey(i)) {
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
