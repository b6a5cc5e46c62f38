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
    /** FOLL_PIN references among {@link #counts} (what page_ref_count / GUP_PIN_COUNTING_BIAS tells). */
    private final Map<Long, Integer> pins = new HashMap<>(); // guarded by this

    public FrameRefs(final FrameSource frames) {
        this.frames = frames;
    }

    /** The kernel's fault injection ({@code fail_nth}), or null where nothing is injectable. */
    public org.iopersist.kernel.FaultInjection faults() {
        return frames.faults();
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

    /** pin_user_pages on one page: a reference that also counts as a pin. @return false if not a counted user frame */
    public synchronized boolean pin(final long phys) {
        if (!get(phys)) {
            return false;
        }
        pins.merge(phys, 1, Integer::sum);
        return true;
    }

    /** unpin_user_page: drops a pin and its reference (the frame goes with the last). */
    public synchronized void unpin(final long phys) {
        final Integer p = pins.get(phys);
        if (p == null) {
            throw new IllegalStateException("unpin of an unpinned frame 0x" + Long.toHexString(phys));
        }
        if (p == 1) {
            pins.remove(phys);
        } else {
            pins.put(phys, p - 1);
        }
        put(phys);
    }

    /** The pins on a frame (the selftest's MD_CHECK_REFS reads this). */
    public synchronized int pins(final long phys) {
        return pins.getOrDefault(phys, 0);
    }

    public synchronized int count(final long phys) {
        return counts.getOrDefault(phys >>> 12, 0);
    }

    public synchronized int frames() {
        return counts.size();
    }
}
