package org.iopersist.testing;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameAllocator;

/**
 * A fragmented allocator, for the paths that must cope with one: {@link #exhaust} takes every free
 * frame, {@link #freeHoles} gives back small pieces that are not aligned to their length (frames
 * 1, 2-3 and 4-7 of a block, which the buddy allocator cannot merge), and {@link #release} gives
 * back everything else it took.
 */
public final class Fragments {
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;

    private final FrameAllocator frames;
    private final List<long[]> taken = new ArrayList<>(); // {phys, order}
    private final List<long[]> holes = new ArrayList<>(); // {phys, frames}: given back by freeHoles

    private Fragments(final FrameAllocator frames) {
        this.frames = frames;
    }

    /** Takes every free frame of {@code frames}, the largest runs first. */
    public static Fragments exhaust(final FrameAllocator frames) {
        final Fragments f = new Fragments(frames);
        for (int order = FrameAllocator.MAX_ORDER; order >= 0; order--) {
            while (true) {
                try {
                    f.taken.add(new long[] {frames.allocRun(order), order});
                } catch (KernelException e) {
                    break;
                }
            }
        }
        return f;
    }

    /**
     * Gives back frames 1..7 of {@code blocks} taken blocks of order 3 or more (as an order-0, an
     * order-1 and an order-2 block: 7 frames from an odd frame), so whatever is allocated next
     * comes from these; returns the frames freed.
     */
    public long freeHoles(final int blocks) {
        int done = 0;
        for (long[] t : taken) {
            if (done == blocks) {
                break;
            }
            if (t[1] < 3) {
                continue;
            }
            final long base = t[0];
            frames.freeRun(base + PAGE, 0);
            frames.freeRun(base + 2 * PAGE, 1);
            frames.freeRun(base + 4 * PAGE, 2);
            holes.add(new long[] {base + PAGE, 7});
            done++;
        }
        if (done < blocks) {
            throw new IllegalStateException("only " + done + " blocks of order 3 or more to punch");
        }
        return 7L * done;
    }

    /** Gives back every other frame taken (not the holes, which went already). */
    public void release() {
        for (long[] t : taken) {
            final long[] hole = holes.stream().filter(h -> h[0] - PAGE == t[0]).findFirst().orElse(null);
            if (hole == null) {
                frames.freeRun(t[0], (int) t[1]);
                continue;
            }
            frames.freeRun(t[0], 0);
            for (int order = 3; order < t[1]; order++) { // the block's upper halves, 8.. of it
                frames.freeRun(t[0] + (PAGE << order), order);
            }
        }
        taken.clear();
        holes.clear();
    }
}
