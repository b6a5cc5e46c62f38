package org.iopersist.kernel.guestmemfs;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * guestmemfs's metadata, all of it in the first 2 MiB block of the carve-out, little-endian:
 *
 * <pre>
 * carve-out + 0x00000  superblock        (SUPERBLOCK, 64 bytes used of 4 KiB)
 *           + 0x01000  allocator bitmap  (bit b set: block b in use; block 0 is the metadata)
 *           + 0x02000  inode table       (MAX_INODES x INODE, 128 bytes each)
 *           + 0x0A000  block table       (one BLOCK record of 16 bytes per block: the block map,
 *                                         kept per block as owner inode + index in the file, and
 *                                         the block's pin count)
 * carve-out + 2 MiB    data blocks 1..n-1
 * </pre>
 *
 * A carve-out holds at most {@link #MAX_BLOCKS} blocks (64 GiB) and {@link #MAX_INODES} files.
 * Because the block table names each block's owner and position, a file's block map, the
 * allocator and every pin can be rebuilt from memory alone.
 */
public final class GmfsLayout {
    public static final int MAGIC = 0x53464d47; // "GMFS"
    public static final int VERSION = 1;
    public static final long BLOCK_SIZE = 2L << 20;
    public static final int BLOCK_SHIFT = 21;
    public static final long PAGES_PER_BLOCK = BLOCK_SIZE / PhysicalMemory.FRAME_SIZE;
    public static final int MAX_INODES = 256;
    public static final int MAX_BLOCKS = 32768;
    public static final int NAME_MAX = 63;
    public static final long BITMAP_OFFSET = 0x1000;
    public static final long INODE_OFFSET = 0x2000;
    public static final long BLOCK_TABLE_OFFSET = 0xA000;
    /** Block-table owner value of the metadata block. */
    public static final int OWNER_METADATA = -1;

    private static final ValueLayout.OfInt U32 = PhysicalMemory.U32;
    private static final ValueLayout.OfLong U64 = PhysicalMemory.U64;

    /** The superblock. */
    public static final StructLayout SUPERBLOCK = MemoryLayout.structLayout(
            U32.withName("magic"), U32.withName("version"), U64.withName("block_size"), U64.withName("blocks"),
            U32.withName("max_inodes"), U32.withName("inode_size"), U64.withName("bitmap_offset"),
            U64.withName("inode_offset"), U64.withName("block_table_offset"), U64.withName("next_ino"))
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

    /** A block record: {@code owner} is inode index + 1 (0 free, -1 metadata). */
    public static final StructLayout BLOCK = MemoryLayout.structLayout(
            U32.withName("owner"), U32.withName("file_block"), U32.withName("pins"), U32.withName("reserved"))
            .withName("gmfs_block");

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
    static final long SB_BLOCK_TABLE = offsetOf(SUPERBLOCK, "block_table_offset");
    static final long SB_NEXT_INO = offsetOf(SUPERBLOCK, "next_ino");

    static final long IN_FLAGS = offsetOf(INODE, "flags");
    static final long IN_UID = offsetOf(INODE, "uid");
    static final long IN_INO = offsetOf(INODE, "ino");
    static final long IN_SIZE = offsetOf(INODE, "size");
    static final long IN_MODE = offsetOf(INODE, "mode");
    static final long IN_NBLOCKS = offsetOf(INODE, "nblocks");
    static final long IN_NAME = offsetOf(INODE, "name");

    static final long BL_OWNER = offsetOf(BLOCK, "owner");
    static final long BL_FILE_BLOCK = offsetOf(BLOCK, "file_block");
    static final long BL_PINS = offsetOf(BLOCK, "pins");

    private GmfsLayout() {
    }
}
