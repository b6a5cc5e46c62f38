package org.iopersist.hw.pci;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The record a device workload writes into its IOVA window: a 48-byte header and a payload that
 * fills the record to its size (a power of two, 64..4096 bytes, so a record never crosses a page).
 * Little-endian, every field naturally aligned.
 *
 * <pre>
 *  0x00 +-----------------+-----------------+
 *       | magic   "IOPR"  | sid             |   sid: segment 31:16, source-id 15:0
 *  0x08 | size            | reserved (0)    |   size: record bytes
 *  0x10 | seq                               |   sequence number, from 0 at START
 *  0x18 | iova                              |   where the device wrote it
 *  0x20 | generation                        |   the BAR's GENERATION at START
 *  0x28 | checksum                          |   over every other word of the record
 *  0x30 | payload word 6 .. size/8 - 1      |   word k = mix(generation, seq, k)
 *       +-----------------------------------+
 * </pre>
 *
 * <p>Why each field: seq, sid and iova let a CPU-side checker tell a record that landed in the
 * wrong place, or a stale record from an earlier lap, from the right one; generation tells runs
 * apart (a VMM sets a new one after it restarts); the checksum and the seeded payload catch any
 * corrupted byte. The checksum mixes each word with its position, so swapped words are caught too.
 *
 * <p>All methods are static, allocate nothing and take {@code (segment, offset)}: the device uses
 * them on its scratch buffers, the checker directly on physical memory. The offset must be 8-byte
 * aligned relative to an 8-byte aligned segment.
 */
public final class DmaRecord {
    private DmaRecord() {
    }

    public static final StructLayout HEADER = MemoryLayout.structLayout(
            PhysicalMemory.U32.withName("magic"),
            PhysicalMemory.U32.withName("sid"),
            PhysicalMemory.U32.withName("size"),
            PhysicalMemory.U32.withName("reserved"),
            PhysicalMemory.U64.withName("seq"),
            PhysicalMemory.U64.withName("iova"),
            PhysicalMemory.U64.withName("generation"),
            PhysicalMemory.U64.withName("checksum")).withName("dma_record");

    public static final long MAGIC_OFFSET = offsetOf("magic");
    public static final long SID_OFFSET = offsetOf("sid");
    public static final long SIZE_OFFSET = offsetOf("size");
    public static final long RESERVED_OFFSET = offsetOf("reserved");
    public static final long SEQ_OFFSET = offsetOf("seq");
    public static final long IOVA_OFFSET = offsetOf("iova");
    public static final long GENERATION_OFFSET = offsetOf("generation");
    public static final long CHECKSUM_OFFSET = offsetOf("checksum");
    public static final long HEADER_SIZE = HEADER.byteSize();

    /** "IOPR" as it reads in memory. */
    public static final int MAGIC = 0x5250_4F49;
    public static final int MIN_SIZE = 64;
    public static final int MAX_SIZE = 4096;
    /** Returned by {@link #validSeq} for a record that is not valid. */
    public static final long INVALID = -1;

    private static long offsetOf(final String field) {
        return HEADER.byteOffset(MemoryLayout.PathElement.groupElement(field));
    }

    /** Writes the record {@code (sid, seq, iova, generation)} of {@code size} bytes at {@code offset}. */
    public static void encode(final MemorySegment buf, final long offset, final int sid, final int size,
                              final long seq, final long iova, final long generation) {
        buf.set(PhysicalMemory.U32, offset + MAGIC_OFFSET, MAGIC);
        buf.set(PhysicalMemory.U32, offset + SID_OFFSET, sid);
        buf.set(PhysicalMemory.U32, offset + SIZE_OFFSET, size);
        buf.set(PhysicalMemory.U32, offset + RESERVED_OFFSET, 0);
        buf.set(PhysicalMemory.U64, offset + SEQ_OFFSET, seq);
        buf.set(PhysicalMemory.U64, offset + IOVA_OFFSET, iova);
        buf.set(PhysicalMemory.U64, offset + GENERATION_OFFSET, generation);
        for (long p = HEADER_SIZE; p < size; p += 8) {
            buf.set(PhysicalMemory.U64, offset + p, payloadWord(generation, seq, p >>> 3));
        }
        buf.set(PhysicalMemory.U64, offset + CHECKSUM_OFFSET, checksum(buf, offset, size));
    }

    /** Payload word {@code k} (k counts 64-bit words from the start of the record). */
    public static long payloadWord(final long generation, final long seq, final long k) {
        return mix(generation * 0x9E37_79B9_7F4A_7C15L + seq * 0xD1B5_4A32_D192_ED03L + k);
    }

    /** The checksum of the {@code size}-byte record at {@code offset}, with its checksum word taken as 0. */
    public static long checksum(final MemorySegment buf, final long offset, final int size) {
        long h = 0x243F_6A88_85A3_08D3L ^ size;
        for (long p = 0; p < size; p += 8) {
            final long w = p == CHECKSUM_OFFSET ? 0 : buf.get(PhysicalMemory.U64, offset + p);
            // Multiply-xorshift per word: each word's contribution depends on its position.
            h = (h ^ w) * 0x9E37_79B9_7F4A_7C15L;
            h ^= h >>> 29;
        }
        return mix(h);
    }

    /**
     * The sequence number of the record at {@code offset} if it is a complete, intact record of
     * {@code size} bytes from device {@code sid}, written at {@code iova} in run {@code generation};
     * otherwise {@link #INVALID}. Checks every byte: header, checksum and payload pattern.
     */
    public static long validSeq(final MemorySegment buf, final long offset, final int sid, final int size,
                                final long iova, final long generation) {
        if (buf.get(PhysicalMemory.U32, offset + MAGIC_OFFSET) != MAGIC
                || buf.get(PhysicalMemory.U32, offset + SID_OFFSET) != sid
                || buf.get(PhysicalMemory.U32, offset + SIZE_OFFSET) != size
                || buf.get(PhysicalMemory.U32, offset + RESERVED_OFFSET) != 0
                || buf.get(PhysicalMemory.U64, offset + IOVA_OFFSET) != iova
                || buf.get(PhysicalMemory.U64, offset + GENERATION_OFFSET) != generation
                || buf.get(PhysicalMemory.U64, offset + CHECKSUM_OFFSET) != checksum(buf, offset, size)) {
            return INVALID;
        }
        final long seq = buf.get(PhysicalMemory.U64, offset + SEQ_OFFSET);
        if (seq < 0) {
            return INVALID;
        }
        for (long p = HEADER_SIZE; p < size; p += 8) {
            if (buf.get(PhysicalMemory.U64, offset + p) != payloadWord(generation, seq, p >>> 3)) {
                return INVALID;
            }
        }
        return seq;
    }

    /** True if the {@code size} bytes at {@code offset} are all zero (a slot never written). */
    public static boolean isZero(final MemorySegment buf, final long offset, final int size) {
        for (long p = 0; p < size; p += 8) {
            if (buf.get(PhysicalMemory.U64, offset + p) != 0) {
                return false;
            }
        }
        return true;
    }

    /** The splitmix64 finalizer: a bijective 64-bit mix. */
    static long mix(final long x) {
        long z = x;
        z = (z ^ (z >>> 30)) * 0xBF58_476D_1CE4_E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D0_49BB_1331_11EBL;
        return z ^ (z >>> 31);
    }
}
