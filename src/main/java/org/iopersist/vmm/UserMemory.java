package org.iopersist.vmm;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * A process's view of its own memory: its MMU, in effect. It maps the machine's memory file and
 * turns a virtual address into the frame the kernel reports for it in {@code /proc/self/pagemap},
 * caching the answer per page until the mapping changes.
 */
public final class UserMemory implements AutoCloseable {
    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long PAGE = 4096;

    /** Reads pagemap entries: {@code count} u64 starting at virtual page {@code vpn}. */
    @FunctionalInterface
    interface PagemapReader {
        long[] read(long vpn, int count);
    }

    private final PhysicalMemory memory;
    private final PagemapReader pagemap;
    private final Map<Long, Long> frames = new HashMap<>();

    UserMemory(final PhysicalMemory memory, final PagemapReader pagemap) {
        this.memory = memory;
        this.pagemap = pagemap;
    }

    private final Map<Long, Long> pinned = new HashMap<>();

    /** Records frames known without asking (the stack the hello named); they survive {@link #flush}. */
    synchronized void seed(final long va, final long[] pageFrames) {
        for (int i = 0; i < pageFrames.length; i++) {
            pinned.put((va >>> 12) + i, pageFrames[i]);
        }
    }

    /** Forgets cached translations (after munmap or mmap over a range). */
    public synchronized void flush() {
        frames.clear();
    }

    /** The physical address behind {@code va}. @throws IllegalArgumentException if not mapped */
    public synchronized long physOf(final long va) {
        final long vpn = va >>> 12;
        Long frame = pinned.get(vpn);
        if (frame == null) {
            frame = frames.get(vpn);
        }
        if (frame == null) {
            final long[] entries = pagemap.read(vpn, 64);
            for (int i = 0; i < entries.length; i++) {
                if (entries[i] < 0) { // bit 63: present
                    frames.put(vpn + i, (entries[i] & ((1L << 55) - 1)) << 12);
                }
            }
            frame = frames.get(vpn);
            if (frame == null) {
                throw new IllegalArgumentException(String.format("va 0x%x is not mapped in this process", va));
            }
        }
        return frame | (va & (PAGE - 1));
    }

    public void write(final long va, final MemorySegment src, final long srcOffset, final long length) {
        long done = 0;
        while (done < length) {
            final long chunk = Math.min(length - done, PAGE - ((va + done) & (PAGE - 1)));
            memory.write(physOf(va + done), src, srcOffset + done, chunk);
            done += chunk;
        }
    }

    public void read(final long va, final MemorySegment dst, final long dstOffset, final long length) {
        long done = 0;
        while (done < length) {
            final long chunk = Math.min(length - done, PAGE - ((va + done) & (PAGE - 1)));
            memory.read(physOf(va + done), dst, dstOffset + done, chunk);
            done += chunk;
        }
    }

    public void writeBytes(final long va, final byte[] bytes) {
        write(va, MemorySegment.ofArray(bytes), 0, bytes.length);
    }

    public byte[] readBytes(final long va, final int length) {
        final byte[] out = new byte[length];
        read(va, MemorySegment.ofArray(out), 0, length);
        return out;
    }

    public long readLong(final long va) {
        final MemorySegment s = MemorySegment.ofArray(new long[1]);
        read(va, s, 0, 8);
        return s.get(LE64, 0);
    }

    public void writeLong(final long va, final long value) {
        final MemorySegment s = MemorySegment.ofArray(new long[1]);
        s.set(LE64, 0, value);
        write(va, s, 0, 8);
    }

    @Override
    public void close() {
        memory.close();
    }
}
