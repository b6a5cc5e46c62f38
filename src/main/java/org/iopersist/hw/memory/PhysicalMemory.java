package org.iopersist.hw.memory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * The machine's physical memory: one sparse file mapped whole, where a physical address is the file
 * offset. Frames are 4 KiB.
 *
 * <p>Everything the hardware reads (root, context and page tables, invalidation descriptors) is
 * little-endian, as on x86, so the 64-bit accessors here are little-endian. Every access is bounds
 * checked against the memory size and, for the atomic widths, alignment checked; a bad address is a
 * {@link PhysicalAccessException} with the address in it, never a JVM crash.
 *
 * <p>Access modes, in VarHandle vocabulary: plain, acquire, release, and compare-and-set. The
 * table-walking hardware reads entries with {@link #load64Acquire}; software that publishes an entry
 * writes it with {@link #store64Release}. These pair up.
 *
 * <p>{@link #zeroRange} is the machine's "zero range" operation, what a memory controller's zeroing
 * engine gives a real machine: the range reads back as zeros at once, without the CPU writing it.
 * Here it is a hole punched in the memory file, so zeroed memory costs no disk either.
 */
public final class PhysicalMemory implements AutoCloseable {
    public static final int FRAME_SHIFT = 12;
    public static final long FRAME_SIZE = 1L << FRAME_SHIFT;
    public static final long FRAME_MASK = FRAME_SIZE - 1;

    /** Aligned little-endian u64: acquire/release and CAS need natural alignment. */
    public static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Aligned little-endian u32. */
    public static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U64_HANDLE = U64.varHandle();
    private static final VarHandle U32_HANDLE = U32.varHandle();

    private final MappedFile file;
    private final MemorySegment segment;
    private final long size;

    private PhysicalMemory(final MappedFile file) {
        this.file = file;
        this.segment = file.segment();
        this.size = segment.byteSize();
        if ((size & FRAME_MASK) != 0) {
            file.close();
            throw new IllegalArgumentException("memory size=0x" + Long.toHexString(size) + " is not frame aligned");
        }
    }

    /** Creates a fresh, zeroed, sparse memory file of {@code size} bytes (a multiple of 4 KiB). */
    public static PhysicalMemory create(final Path path, final long size) {
        if (size <= 0 || (size & FRAME_MASK) != 0) {
            throw new IllegalArgumentException("memory size=0x" + Long.toHexString(size) + " must be a positive multiple of 4 KiB");
        }
        return new PhysicalMemory(MappedFile.create(path, size));
    }

    /** Maps an existing memory file; its contents are what they were. */
    public static PhysicalMemory open(final Path path) {
        return new PhysicalMemory(MappedFile.open(path));
    }

    /** Maps an existing memory file for reading only: every store throws IllegalArgumentException. */
    public static PhysicalMemory openReadOnly(final Path path) {
        return new PhysicalMemory(MappedFile.openReadOnly(path));
    }

    public long size() {
        return size;
    }

    public long frames() {
        return size >>> FRAME_SHIFT;
    }

    public Path path() {
        return file.path();
    }

    /** Bytes of the file actually backed by storage: what the machine costs. */
    public long allocatedBytes() {
        return file.allocatedBytes();
    }

    /** True if {@code [phys, phys + length)} lies inside memory (no overflow). */
    public boolean contains(final long phys, final long length) {
        return phys >= 0 && length >= 0 && phys <= size && length <= size - phys;
    }

    private void check(final long phys, final long length) {
        if (!contains(phys, length)) {
            throw PhysicalAccessException.outOfRange(phys, length, size);
        }
    }

    private void check64(final long phys) {
        if ((phys & 7) != 0) {
            throw PhysicalAccessException.misaligned(phys, 8);
        }
        check(phys, 8);
    }

    private void check32(final long phys) {
        if ((phys & 3) != 0) {
            throw PhysicalAccessException.misaligned(phys, 4);
        }
        check(phys, 4);
    }

    public long load64(final long phys) {
        check64(phys);
        return (long) U64_HANDLE.get(segment, phys);
    }

    public long load64Acquire(final long phys) {
        check64(phys);
        return (long) U64_HANDLE.getAcquire(segment, phys);
    }

    public void store64(final long phys, final long value) {
        check64(phys);
        U64_HANDLE.set(segment, phys, value);
    }

    public void store64Release(final long phys, final long value) {
        check64(phys);
        U64_HANDLE.setRelease(segment, phys, value);
    }

    public boolean compareAndSet64(final long phys, final long expected, final long value) {
        check64(phys);
        return U64_HANDLE.compareAndSet(segment, phys, expected, value);
    }

    public int load32Acquire(final long phys) {
        check32(phys);
        return (int) U32_HANDLE.getAcquire(segment, phys);
    }

    public int load32(final long phys) {
        check32(phys);
        return (int) U32_HANDLE.get(segment, phys);
    }

    public void store32Release(final long phys, final int value) {
        check32(phys);
        U32_HANDLE.setRelease(segment, phys, value);
    }

    /** Copies {@code length} bytes between two physical ranges (memmove semantics). */
    public void copy(final long srcPhys, final long dstPhys, final long length) {
        check(srcPhys, length);
        check(dstPhys, length);
        MemorySegment.copy(segment, srcPhys, segment, dstPhys, length);
    }

    /** Fills {@code length} bytes at {@code phys} with {@code value}. */
    public void fill(final long phys, final long length, final byte value) {
        check(phys, length);
        segment.asSlice(phys, length).fill(value);
    }

    /**
     * Zero range: {@code [phys, phys + length)} reads as zeros afterwards, in every process that maps
     * this memory. Whole frames become a hole in the memory file (no disk, no page cache, no CPU
     * writing them); a partial frame at either end is written with zeros. Large ranges (guestmemfs
     * blocks, big runs of frames) should use this, not {@link #fill}.
     */
    public void zeroRange(final long phys, final long length) {
        check(phys, length);
        if (length > 0) {
            file.zeroRange(phys, length);
        }
    }

    /** Copies out of physical memory into {@code dst}. */
    public void read(final long phys, final MemorySegment dst, final long dstOffset, final long length) {
        check(phys, length);
        MemorySegment.copy(segment, phys, dst, dstOffset, length);
    }

    /** Copies {@code src} into physical memory. */
    public void write(final long phys, final MemorySegment src, final long srcOffset, final long length) {
        check(phys, length);
        MemorySegment.copy(src, srcOffset, segment, phys, length);
    }

    public void read(final long phys, final byte[] dst, final int dstOffset, final int length) {
        check(phys, length);
        MemorySegment.copy(segment, ValueLayout.JAVA_BYTE, phys, dst, dstOffset, length);
    }

    public void write(final long phys, final byte[] src, final int srcOffset, final int length) {
        check(phys, length);
        MemorySegment.copy(src, srcOffset, segment, ValueLayout.JAVA_BYTE, phys, length);
    }

    /** A view of {@code [phys, phys + length)}, for flyweights over tables. */
    public MemorySegment slice(final long phys, final long length) {
        check(phys, length);
        return segment.asSlice(phys, length);
    }

    /** The view of one whole 4 KiB frame. */
    public MemorySegment frame(final long phys) {
        if ((phys & FRAME_MASK) != 0) {
            throw PhysicalAccessException.misaligned(phys, (int) FRAME_SIZE);
        }
        return slice(phys, FRAME_SIZE);
    }

    /**
     * The whole mapping, for hot loops that check bounds themselves.
     * SAFETY: the segment still bounds-checks every access; callers only skip our nicer messages.
     */
    public MemorySegment segment() {
        return segment;
    }

    /** Flushes dirty pages to the file (only needed for durability, not for other processes). */
    public void force() {
        segment.force();
    }

    @Override
    public void close() {
        file.close();
    }

    @Override
    public String toString() {
        return "PhysicalMemory[" + file.path() + ", size=0x" + Long.toHexString(size) + "]";
    }
}
