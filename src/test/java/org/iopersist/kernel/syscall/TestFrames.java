package org.iopersist.kernel.syscall;

import java.util.ArrayDeque;
import java.util.HashSet;
import java.util.Set;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.mm.FrameSource;

/** A small frame allocator for syscall tests: a free list over [base, limit), with accounting. */
public final class TestFrames implements FrameSource {
    private final PhysicalMemory memory;
    private final ArrayDeque<Long> free = new ArrayDeque<>();
    private final Set<Long> used = new HashSet<>();

    public TestFrames(final PhysicalMemory memory, final long base, final long limit) {
        this.memory = memory;
        for (long p = base; p < limit; p += PhysicalMemory.FRAME_SIZE) {
            free.add(p);
        }
    }

    @Override
    public synchronized long allocZeroedFrame() {
        final Long p = free.poll();
        if (p == null) {
            throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.ENOMEM, "test frames exhausted");
        }
        memory.fill(p, PhysicalMemory.FRAME_SIZE, (byte) 0);
        used.add(p);
        return p;
    }

    @Override
    public synchronized void freeFrame(final long phys) {
        if (!used.remove(phys)) {
            throw new IllegalStateException("double free of 0x" + Long.toHexString(phys));
        }
        memory.fill(phys, PhysicalMemory.FRAME_SIZE, (byte) 0x6b); // poison: a use after free shows
        free.addFirst(phys);
    }

    /** Single frames only: a run of more is ENOMEM, as from an allocator fragmented to the last frame. */
    @Override
    public long allocZeroedRun(final int order) {
        if (order != 0) {
            throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.ENOMEM, "test frames come one by one");
        }
        return allocZeroedFrame();
    }

    /** A run of frames handed out one by one, given back together (by a range of reference counts). */
    @Override
    public void freeRun(final long phys, final int order) {
        for (long f = 0; f < 1L << order; f++) {
            freeFrame(phys + f * PhysicalMemory.FRAME_SIZE);
        }
    }

    public synchronized int used() {
        return used.size();
    }
}
