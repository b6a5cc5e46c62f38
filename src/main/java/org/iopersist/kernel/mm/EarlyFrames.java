package org.iopersist.kernel.mm;

import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.uapi.Errno;

/**
 * Boot-time frames from the KHO scratch region, handed out before the frame allocator opens
 * (Linux's memblock restricted to scratch). Devices left running by an earlier kernel never DMA
 * into scratch, since nothing preserved may live there, so these frames are safe before every
 * device is blocked. Nothing is ever freed: what lives here is moved out once the allocator opens.
 */
public final class EarlyFrames implements FrameSource {
    private final PhysicalMemory memory;
    private final PhysRange region;
    private long next;

    /** Frames from {@code region}, starting at {@code firstFree} (past an incoming handover tree). */
    public EarlyFrames(final PhysicalMemory memory, final PhysRange region, final long firstFree) {
        this.memory = memory;
        this.region = region;
        // Never below the region, whatever the caller computed: these frames are safe only inside it.
        this.next = (Math.max(firstFree, region.start()) + PhysicalMemory.FRAME_MASK) & ~PhysicalMemory.FRAME_MASK;
    }

    @Override
    public synchronized long allocZeroedFrame() {
        return allocZeroedRun(0);
    }

    @Override
    public synchronized long allocZeroedRun(final int order) {
        final long size = PhysicalMemory.FRAME_SIZE << order;
        final long phys = (next + size - 1) & -size;
        if (phys + size > region.end()) {
            throw new KernelException(Errno.ENOMEM, "early memory " + region + " exhausted");
        }
        memory.fill(phys, size, (byte) 0);
        next = phys + size;
        return phys;
    }

    @Override
    public void freeFrame(final long phys) {
        // Early frames are abandoned, not freed: the region is reused wholesale by the next boot.
    }

    @Override
    public void freeRun(final long phys, final int order) {
    }

    public synchronized long used() {
        return next - region.start();
    }
}
