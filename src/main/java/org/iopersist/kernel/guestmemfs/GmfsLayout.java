package org.iopersist.kernel.guestmemfs;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * guestmemfs's on-memory format, version 2: all metadata at the start of the carve-out,
 * little-endian, sized by the carve-out ({@link Geometry}):
 *
 * <pre>
 * carve-out + 0x00000  superblock        (SUPERBLOCK, 4 KiB)
 *           + 0x01000  inode table       (MAX_INODES x INODE, 128 bytes each)
 *           + 0x09000  allocator bitmap  (bit b set: block b in use; the metadata blocks are set;
 *                                         one bit per block, whole 4 KiB pages)
 *           + extent_table_offset        (extent_capacity x EXTENT, 32 bytes each; slots
 *                                         [0, extents) are in use, in no particular order)
 * carve-out + meta_blocks x 2 MiB        data blocks
 * </pre>
 *
 * A file is a list of extents: runs of blocks contiguous both in the file and in memory. Each
 * extent record names its owner and its place in the file, so a file's block map, the allocator
 * and every pin are rebuilt from memory alone, in time that follows the number of extents, not
 * the file's size. The table has a slot per block, the most extents the carve-out can ever hold.
 * Pins are kept per extent; pinning part of one splits it at block boundaries.
 *
 * <p>Version 1 (one 16-byte record per block in the first block, at most 32768 blocks) is not read:
 * its handover ({@code guestmemfs-v1}) makes the next kernel cold-boot.
 */
public final class GmfsLayout {
    public static final int MAGIC = 0x53464d47; // "GMFS"
    public static final int VERSION = 2;
    public static final long BLOCK_SIZE = 2L << 20;
    public static final int BLOCK_SHIFT = 21;
    public static final long PAGES_PER_BLOCK = BLOCK_SIZE / PhysicalMemory.FRAME_SIZE;
    /** 2 MiB blocks per 1 GiB: files get 1 GiB-aligned runs of this many when their size allows. */
    public static final int GIB_BLOCKS = 512;
    public static final int MAX_INODES = 256;
    public static final int NAME_MAX = 63;
    public static final long INODE_OFFSET = 0x1000;
    public static final long BITMAP_OFFSET = 0x9000;

    private static final ValueLayout.OfInt U32 = PhysicalMemory.U32;
    private static final ValueLayout.OfLong U64 = PhysicalMemory.U64;
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;

    /** The superblock; v1's first ten fields, then v2's. */
    public static final StructLayout SUPERBLOCK = MemoryLayout.structLayout(
            U32.withName("magic"), U32.withName("version"), U64.withName("block_size"), U64.withName("blocks"),
            U32.withName("max_inodes"), U32.withName("inode_size"), U64.withName("bitmap_offset"),
            U64.withName("inode_offset"), U64.withName("extent_table_offset"), U64.withName("next_ino"),
            U64.withName("meta_blocks"), U64.withName("extent_capacity"), U64.withName("extents"),
            U32.withName("extent_size"), U32.withName("reserved"))
            .withName("gmfs_superblock");

    /**
     * An inode.
     *
     * <pre>
     * 0x00 u32 flags (1: in use)   0x04 u32 uid    0x08 u64 ino    0x10 u64 size
     * 0x18 u32 mode                0x1c u32 nblocks                0x20..0x3f reserved
     * 0x40 char name[64], NUL-terminated
     * </pre>
     */
    public static final StructLayout INODE = MemoryLayout.structLayout(
            U32.withName("flags"), U32.withName("uid"), U64.withName("ino"), U64.withName("size"),
            U32.withName("mode"), U32.withName("nblocks"), MemoryLayout.paddingLayout(32),
            MemoryLayout.sequenceLayout(64, ValueLayout.JAVA_BYTE).withName("name")).withName("gmfs_inode");

    /**
     * An extent: {@code count} blocks from carve-out block {@code block}, which are blocks
     * {@code file_block ..} of the file of inode index {@code owner - 1}, each pinned {@code pins} times.
     *
     * <pre>
     * 0x00 u32 owner   0x04 u32 pins   0x08 u64 file_block   0x10 u64 block   0x18 u64 count
     * </pre>
     */
    public static final StructLayout EXTENT = MemoryLayout.structLayout(
            U32.withName("owner"), U32.withName("pins"), U64.withName("file_block"), U64.withName("block"),
            U64.withName("count")).withName("gmfs_extent");

    public static final int INODE_FLAG_USED = 1;

    public static long offsetOf(final StructLayout l, final String field) {
        return l.byteOffset(MemoryLayout.PathElement.groupElement(field));
    }

    static final long SB_MAGIC = offsetOf(SUPERBLOCK, "magic");
    static final long SB_VERSION = offsetOf(SUPERBLOCK, "version");
    static final long SB_BLOCK_SIZE = offsetOf(SUPERBLOCK, "block_size");
    static final long SB_BLOCKS = offsetOf(SUPERBLOCK, "blocks");
    static final long SB_MAX_INODES = offsetOf(SUPERBLOCK, "max_inodes");
    static final long SB_INODE_SIZE = offsetOf(SUPERBLOCK, "inode_size");
    static final long SB_BITMAP = offsetOf(SUPERBLOCK, "bitmap_offset");
    static final long SB_INODES = offsetOf(SUPERBLOCK, "inode_offset");
    static final long SB_EXTENT_TABLE = offsetOf(SUPERBLOCK, "extent_table_offset");
    static final long SB_NEXT_INO = offsetOf(SUPERBLOCK, "next_ino");
    static final long SB_META_BLOCKS = offsetOf(SUPERBLOCK, "meta_blocks");
    static final long SB_EXTENT_CAPACITY = offsetOf(SUPERBLOCK, "extent_capacity");
    static final long SB_EXTENTS = offsetOf(SUPERBLOCK, "extents");
    static final long SB_EXTENT_SIZE = offsetOf(SUPERBLOCK, "extent_size");

    static final long IN_FLAGS = offsetOf(INODE, "flags");
    static final long IN_UID = offsetOf(INODE, "uid");
    static final long IN_INO = offsetOf(INODE, "ino");
    static final long IN_SIZE = offsetOf(INODE, "size");
    static final long IN_MODE = offsetOf(INODE, "mode");
    static final long IN_NBLOCKS = offsetOf(INODE, "nblocks");
    static final long IN_NAME = offsetOf(INODE, "name");

    static final long EX_OWNER = offsetOf(EXTENT, "owner");
    static final long EX_PINS = offsetOf(EXTENT, "pins");
    static final long EX_FILE_BLOCK = offsetOf(EXTENT, "file_block");
    static final long EX_BLOCK = offsetOf(EXTENT, "block");
    static final long EX_COUNT = offsetOf(EXTENT, "count");

    /**
     * Where the metadata of a carve-out of {@code blocks} 2 MiB blocks lies, in bytes from its start.
     * The superblock records every field, and a mount checks them against this.
     */
    public record Geometry(long blocks, long bitmapBytes, long extentTableOffset, long extentCapacity, long metaBlocks) {
        public static Geometry of(final long blocks) {
            final long bitmapBytes = (((blocks + 63) >>> 6) * 8 + PAGE - 1) & -PAGE;
            final long extents = BITMAP_OFFSET + bitmapBytes;
            final long metaBytes = extents + blocks * EXTENT.byteSize();
            return new Geometry(blocks, bitmapBytes, extents, blocks, (metaBytes + BLOCK_SIZE - 1) >>> BLOCK_SHIFT);
        }

        /** Blocks files can use. */
        public long dataBlocks() {
            return blocks - metaBlocks;
        }
    }

    private GmfsLayout() {
    }
}
