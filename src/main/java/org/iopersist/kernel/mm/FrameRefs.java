package org.iopersist.kernel.mm;

import java.util.HashMap;
import java.util.Map;
import org.iopersist.kernel.mm.FrameSource;

/**
 * Reference counts of anonymous user frames: the mapping holds one, each pin one more. The frame
 * goes back to the allocator with its last reference, so a page pinned for DMA outlives munmap.
 *
 * <p>Lock: this object's monitor.
 */
public final class FrameRefs {
    private final FrameSource frames;
    private final Map<Long, Integer> counts = new HashMap<>(); // guarded by this

    public FrameRefs(final FrameSource frames) {
        this.frames = frames;
    }

    public synchronized void init(final long phys) {
        counts.put(phys, 1);
    }

    /** Takes a reference; returns false if the frame is not a counted user frame. */
    public synchronized boolean get(final long phys) {
        final Integer c = counts.get(phys);
        if (c == null) {
            return false;
        }
        counts.put(phys, c + 1);
        return true;
    }

    /** Drops a reference; frees the frame with the last one. */
    public synchronized void put(final long phys) {
        final Integer c = counts.get(phys);
        if (c == null) {
            throw new IllegalStateException("put of an uncounted frame 0x" + Long.toHexString(phys));
        }
        if (c == 1) {
            counts.remove(phys);
            frames.freeFrame(phys);
        } else {
            counts.put(phys, c - 1);
        }
    }

    public synchronized int count(final long phys) {
        return counts.getOrDefault(phys, 0);
    }

    public synchronized int frames() {
        return counts.size();
    }
}
