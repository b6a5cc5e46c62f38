package org.iopersist.hw.vtd;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.SequenceLayout;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * Second-level paging entry: 64 bits, 512 per 4 KiB table, 9 index bits per level (VT-d §9.8).
 *
 * <pre>
 *   63  62  61   52 51          HAW HAW-1              12 11  10  9  8  7   6  5:3  2  1  0
 *  +---+---+-------+---------------+--------------------+---+---+--+--+---+----+---+--+--+--+
 *  |ign|TM |  ign  |   reserved    |  ADDR (table/page) |SNP|ign|D |A |PS |IPAT|EMT|X |W |R |
 *  +---+---+-------+---------------+--------------------+---+---+--+--+---+----+---+--+--+--+
 * </pre>
 *
 * An entry is present iff R or W is set. PS marks a leaf at level 2 (2 MiB) or 3 (1 GiB) when SLLPS
 * allows it; it is reserved at levels 4 and 5; level 1 entries are always leaves. In a 2 MiB leaf
 * ADDR bits 20:12 are reserved, in a 1 GiB leaf bits 29:12. SNP (bit 11) and TM (bit 62) are reserved
 * here since the model reports neither ECAP.SC nor ECAP.DT. Non-leaf entries are written with R|W.
 *
 * <p>Access modes: the walker reads with acquire. Software installs a table entry with one 64-bit
 * release store after the table it points to is fully written. Leaves, and the zeroes that clear
 * them, are single 64-bit stores, each ordered after everything before it was decided: a release
 * store, or a run of plain stores behind one release fence (the driver's page-table walker).
 */
public final class SlPte {
    public static final SequenceLayout TABLE = MemoryLayout.sequenceLayout(512, PhysicalMemory.U64).withName("sl_table");
    public static final long SIZE = TABLE.elementLayout().byteSize();
    public static final int ENTRIES = (int) TABLE.elementCount();
    public static final int INDEX_BITS = Integer.numberOfTrailingZeros(ENTRIES);

    public static final long R = 1L;
    public static final long W = 1L << 1;
    public static final long X = 1L << 2;
    public static final long PS = 1L << 7;
    public static final long A = 1L << 8;
    public static final long D = 1L << 9;
    public static final long SNP = 1L << 11;
    public static final long TM = 1L << 62;
    public static final long ADDR_MASK_52 = 0x000F_FFFF_FFFF_F000L;

    private SlPte() {
    }

    /** Shift of the address bits one entry at {@code level} covers: 12, 21, 30, 39, 48. */
    public static int levelShift(final int level) {
        return 12 + INDEX_BITS * (level - 1);
    }

    /** Bytes one entry at {@code level} maps: 4 KiB, 2 MiB, 1 GiB, 512 GiB, 256 TiB. */
    public static long levelSize(final int level) {
        return 1L << levelShift(level);
    }

    public static int index(final long iova, final int level) {
        return (int) ((iova >>> levelShift(level)) & (ENTRIES - 1));
    }

    public static boolean present(final long pte) {
        return (pte & (R | W)) != 0;
    }

    public static boolean largeLeaf(final long pte) {
        return (pte & PS) != 0;
    }

    /** Address bits for a host address width of {@code haw} bits. */
    public static long addressMask(final int haw) {
        return ((1L << haw) - 1) & ~0xFFFL;
    }

    /**
     * Bits that must be zero in a present entry at {@code level} (1 = PTE) for host address width
     * {@code haw}, given whether it is a large leaf; independent of SLLPS (checked separately).
     */
    public static long reservedMask(final int level, final int haw, final boolean leaf) {
        long rsvd = (ADDR_MASK_52 & ~addressMask(haw)) | SNP | TM;
        if (level >= 4) {
            rsvd |= PS;
        }
        if (leaf && level >= 2) {
            rsvd |= (levelSize(level) - 1) & ~0xFFFL;
        }
        return rsvd;
    }

    /** A non-leaf entry pointing at {@code tablePhys}. */
    public static long encodeTable(final long tablePhys) {
        return (tablePhys & ADDR_MASK_52) | R | W;
    }

    /** A leaf at {@code level}: level 1 = 4 KiB, 2 = 2 MiB (PS), 3 = 1 GiB (PS). */
    public static long encodeLeaf(final long phys, final int level, final boolean read, final boolean write) {
        if ((phys & (levelSize(level) - 1)) != 0) {
            throw new IllegalArgumentException("phys 0x" + Long.toHexString(phys) + " not aligned for level " + level);
        }
        return (phys & ADDR_MASK_52) | (read ? R : 0) | (write ? W : 0) | (level > 1 ? PS : 0);
    }

    public static long address(final long pte) {
        return pte & ADDR_MASK_52;
    }
}
