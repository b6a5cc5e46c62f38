package org.iopersist.kernel.mm;

import org.iopersist.kernel.FaultInjection;

/** Where the kernel gets zeroed frames (KHO's metadata and blobs, anonymous memory), and gives them back. */
public interface FrameSource {
    /** A zeroed 4 KiB frame's physical address. */
    long allocZeroedFrame();

    void freeFrame(long phys);

    /** A zeroed, naturally aligned run of {@code 2^order} frames. */
    long allocZeroedRun(int order);

    /** A naturally aligned run of {@code 2^order} frames whose contents the caller will overwrite. */
    default long allocRun(final int order) {
        return allocZeroedRun(order);
    }

    void freeRun(long phys, int order);

    /**
     * Frames that could be handed out now, for the overcommit check a large request makes before
     * it starts ({@code __vm_enough_memory}); unknown sources answer {@link Long#MAX_VALUE}.
     */
    default long freeFrames() {
        return Long.MAX_VALUE;
    }

    /** This kernel's fault injection ({@code fail_nth}), or null where nothing is injectable (boot-time frames). */
    default FaultInjection faults() {
        return null;
    }
}
