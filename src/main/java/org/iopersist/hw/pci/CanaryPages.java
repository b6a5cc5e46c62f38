package org.iopersist.hw.pci;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * Canary frames: physical frames outside every DMA window, filled by the CPU with a pattern and
 * checked later to have never changed. A DMA that lands where no mapping should take it (a stale
 * IOTLB entry, a freed table page reused, a wrong translation) shows up here.
 *
 * <p>Each 64-bit word's pattern depends on the seed and on its own physical address, so a canary
 * page copied over another, a zeroed page, or a shifted page are all detected, not just a write of
 * foreign data. CPU-side only: filling and checking use plain loads and stores on
 * {@link PhysicalMemory}, never the remapping unit.
 *
 * <pre>{@code
 * CanaryPages canaries = new CanaryPages(memory, 0xC0FFEE);
 * canaries.fill(0x3000_0000L, 64);            // 64 frames
 * ... run DMA ...
 * assertEquals(List.of(), canaries.changes());
 * }</pre>
 *
 * Not thread safe: one owner fills and checks.
 */
public final class CanaryPages {
    /** Every filled range, in fill order. */
    private final List<Range> ranges = new ArrayList<>();
    private final PhysicalMemory memory;
    private final long seed;
    private long frames;

    /** A range of frames holding canaries. */
    public record Range(long phys, long frames) {
    }

    /**
     * The first changed word of one changed frame.
     *
     * @param phys     address of the word
     * @param expected the canary pattern
     * @param actual   what memory holds
     */
    public record Change(long phys, long expected, long actual) {
        @Override
        public String toString() {
            return String.format("phys=0x%x expected=0x%016x actual=0x%016x", phys, expected, actual);
        }
    }

    /** Canaries in {@code memory} whose pattern is keyed by {@code seed}; none filled yet. */
    public CanaryPages(final PhysicalMemory memory, final long seed) {
        this.memory = memory;
        this.seed = seed;
    }

    /**
     * Fills {@code count} frames from {@code phys} (frame aligned) with the pattern and remembers them.
     *
     * @throws IllegalArgumentException if the range is misaligned, empty or outside memory
     */
    public void fill(final long phys, final long count) {
        if ((phys & PhysicalMemory.FRAME_MASK) != 0 || count <= 0
                || !memory.contains(phys, count << PhysicalMemory.FRAME_SHIFT)) {
            throw new IllegalArgumentException(String.format("canary range phys=0x%x frames=%d is not frame aligned inside memory",
                    phys, count));
        }
        final long end = phys + (count << PhysicalMemory.FRAME_SHIFT);
        for (long p = phys; p < end; p += 8) {
            memory.store64(p, pattern(p));
        }
        ranges.add(new Range(phys, count));
        frames += count;
    }

    /** Frames filled so far. */
    public long frames() {
        return frames;
    }

    /** The filled ranges, in fill order. */
    public List<Range> ranges() {
        return List.copyOf(ranges);
    }

    /** The canary word for address {@code phys} under this seed. */
    public long pattern(final long phys) {
        return DmaRecord.mix(phys ^ seed) | 1; // never 0, so a zeroed frame cannot pass
    }

    /** Every frame that changed since its fill, each with its first changed word; empty if none. */
    public List<Change> changes() {
        final List<Change> out = new ArrayList<>();
        for (Range r : ranges) {
            final long end = r.phys() + (r.frames() << PhysicalMemory.FRAME_SHIFT);
            for (long frame = r.phys(); frame < end; frame += PhysicalMemory.FRAME_SIZE) {
                for (long p = frame; p < frame + PhysicalMemory.FRAME_SIZE; p += 8) {
                    final long actual = memory.load64(p);
                    final long expected = pattern(p);
                    if (actual != expected) {
                        out.add(new Change(p, expected, actual));
                        break;
                    }
                }
            }
        }
        return out;
    }

    /** True if no canary frame has changed. */
    public boolean intact() {
        return changes().isEmpty();
    }
}
