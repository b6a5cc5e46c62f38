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
    /**
     * By pfn, not by physical address: a frame address's low 12 bits are zero, so Long's hash puts
     * 16 consecutive frames into one bucket and the map degrades into trees (a 3 GiB memfd adopted
     * at boot spent most of its time there).
     */
    private final Map<Long, Integer> counts = new HashMap<>(); // guarded by this

    public FrameRefs(final FrameSource frames) {
        this.frames = frames;
    }

    public synchronized void init(final long phys) {
        counts.put(phys >>> 12, 1);
    }

    /** Takes a reference; returns false if the frame is not a counted user frame. */
    public synchronized boolean get(final long phys) {
        final Integer c = counts.get(phys >>> 12);
        if (c == null) {
            return false;
        }
        counts.put(phys >>> 12, c + 1);
        return true;
    }

    /** Drops a reference; frees the frame with the last one. */
    public synchronized void put(final long phys) {
        final Integer c = counts.get(phys >>> 12);
        if (c == null) {
            throw new IllegalStateException("put of an uncounted frame 0x" + Long.toHexString(phys));
        }
        if (c == 1) {
            counts.remove(phys >>> 12);
            frames.freeFrame(phys);
        } else {
            counts.put(phys >>> 12, c - 1);
        }
    }

    public synchronized int count(final long phys) {
        return counts.getOrDefault(phys >>> 12, 0);
    }

    public synchronized int frames() {
        return counts.size();
    }
}
