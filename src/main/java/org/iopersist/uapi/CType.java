package org.iopersist.uapi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The C member types of the uAPI headers, little-endian as on x86-64. The aligned forms build the
 * struct layouts, so a layout has padding exactly where the C compiler puts it
 * ({@code __aligned_u64} is 8-aligned). The accessors read and write unaligned: a struct copied
 * into a kernel or user buffer need not sit on its natural alignment.
 */
final class CType {
    static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt S32 = U32;
    static final ValueLayout.OfLong ALIGNED_U64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    private static final ValueLayout.OfShort U16_ACCESS = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32_ACCESS = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64_ACCESS = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private CType() {
    }

    static int u8(final MemorySegment s, final long offset) {
        return Byte.toUnsignedInt(s.get(U8, offset));
    }

    static int u16(final MemorySegment s, final long offset) {
        return Short.toUnsignedInt(s.get(U16_ACCESS, offset));
    }

    static void u16(final MemorySegment s, final long offset, final int v) {
        s.set(U16_ACCESS, offset, (short) v);
    }

    /** A u32 (or s32) as a Java int: callers widen with {@link Integer#toUnsignedLong} where it counts. */
    static int u32(final MemorySegment s, final long offset) {
        return s.get(U32_ACCESS, offset);
    }

    static void u32(final MemorySegment s, final long offset, final int v) {
        s.set(U32_ACCESS, offset, v);
    }

    static long u64(final MemorySegment s, final long offset) {
        return s.get(U64_ACCESS, offset);
    }

    static void u64(final MemorySegment s, final long offset, final long v) {
        s.set(U64_ACCESS, offset, v);
    }
}
