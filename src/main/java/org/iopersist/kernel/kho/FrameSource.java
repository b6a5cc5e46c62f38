package org.iopersist.kernel.kho;

/** Where KHO gets zeroed 4 KiB frames for its own metadata, and gives them back. */
public interface FrameSource {
    /** A zeroed frame's physical address. */
    long allocZeroedFrame();

    void freeFrame(long phys);
}
