package org.iopersist.kernel.mm;

/** Where KHO gets zeroed frames for its own metadata and blobs, and gives them back. */
public interface FrameSource {
    /** A zeroed 4 KiB frame's physical address. */
    long allocZeroedFrame();

    void freeFrame(long phys);

    /** A zeroed, naturally aligned run of {@code 2^order} frames. */
    long allocZeroedRun(int order);

    void freeRun(long phys, int order);
}
