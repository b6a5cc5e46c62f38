package org.iopersist.kernel.iommu.intel;

import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.InvDesc;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * One unit's invalidation queue (Linux's {@code qi_submit_sync}): descriptors go into a 256-slot
 * ring, a wait descriptor with a status write follows them, IQT moves, and the caller spins until
 * the hardware has written the status word. Every submission is synchronous, so the ring is empty
 * between calls and a wait that returns means every descriptor before it has taken effect.
 */
final class QueuedInvalidation {
    static final int SLOTS = 256;
    private static final long RING_BYTES = SLOTS * InvDesc.SIZE;
    private static final long TIMEOUT_NANOS = 10_000_000_000L;

    private final int unit;
    private final PhysicalMemory memory;
    private final Mmio.Window regs;
    private long ringPhys = -1;
    private long statusPhys;
    private long tail;
    private int seq;

    QueuedInvalidation(final int unit, final PhysicalMemory memory, final Mmio.Window regs) {
        this.unit = unit;
        this.memory = memory;
        this.regs = regs;
    }

    synchronized long ringPhys() {
        return ringPhys;
    }

    synchronized long statusPhys() {
        return statusPhys;
    }

    /**
     * Points the unit at a new ring. A queue left on by an earlier kernel is first allowed to run
     * dry, then turned off, since IQA may only change while queued invalidation is off.
     */
    synchronized void start(final long ring, final long status) {
        if ((regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_QIES) != 0) {
            await("the old queue to drain", () -> regs.read64(VtdRegisters.IQH) == regs.read64(VtdRegisters.IQT)
                    || (regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_IQE) != 0);
            regs.clearBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_QIE);
            await("QIES to clear", () -> (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_QIES) == 0);
        }
        clearQueueError();
        memory.store32Release(status, 0);
        this.ringPhys = ring;
        this.statusPhys = status;
        this.tail = 0;
        this.seq = 0;
        regs.write64(VtdRegisters.IQT, 0);
        regs.write64(VtdRegisters.IQA, ring); // QS = 0: one 4 KiB page, 256 descriptors
        regs.setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_QIE);
        await("QIES", () -> (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_QIES) != 0);
    }

    private void clearQueueError() {
        int fsts;
        while (((fsts = regs.read32(VtdRegisters.FSTS)) & VtdRegisters.FSTS_IQE) != 0) {
            if (regs.cas32(VtdRegisters.FSTS, fsts, fsts & ~VtdRegisters.FSTS_IQE)) {
                break;
            }
        }
    }

    /** Submits one descriptor and waits for it. */
    synchronized void submitSync(final long qw0, final long qw1) {
        post(qw0, qw1);
        sync();
    }

    /** Submits two descriptors and waits for both. */
    synchronized void submitSync(final long aQw0, final long aQw1, final long bQw0, final long bQw1) {
        post(aQw0, aQw1);
        post(bQw0, bQw1);
        sync();
    }

    private void post(final long qw0, final long qw1) {
        if (ringPhys < 0) {
            throw new IllegalStateException("VT-d unit " + unit + ": invalidation before the queue started");
        }
        final long slot = ringPhys + tail;
        memory.store64(slot + 8, qw1);
        memory.store64(slot, qw0);
        tail = (tail + InvDesc.SIZE) % RING_BYTES;
    }

    /** Appends a wait descriptor with a status write, moves IQT, and spins on the status word. */
    private void sync() {
        final int token = ++seq == 0 ? ++seq : seq;
        post(InvDesc.wait(token, true), statusPhys);
        regs.write64(VtdRegisters.IQT, tail); // volatile: the descriptors above are visible first
        final long deadline = System.nanoTime() + TIMEOUT_NANOS;
        int spins = 0;
        long badDescriptor = -1;
        while (memory.load32Acquire(statusPhys) != token) {
            if ((regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_IQE) != 0) {
                // As Linux's qi_check_fault: neutralise the bad descriptor (IQH points at it), clear
                // IQE so the hardware resumes, and still wait for our status write.
                final long head = regs.read64(VtdRegisters.IQH);
                badDescriptor = head / InvDesc.SIZE;
                memory.store64(ringPhys + head + 8, 0);
                memory.store64Release(ringPhys + head, InvDesc.TYPE_WAIT);
                clearQueueError();
            }
            if (++spins > 256) {
                if (System.nanoTime() > deadline) {
                    throw new KernelException(Errno.ETIMEDOUT, "VT-d unit " + unit
                            + ": invalidation wait did not complete in 10 s (is the machine running?)");
                }
            }
            spin(spins);
        }
        if (badDescriptor >= 0) {
            throw new KernelException(Errno.EIO, String.format("VT-d unit %d: invalidation queue error at descriptor %d",
                    unit, badDescriptor));
        }
    }

    private void await(final String what, final java.util.function.BooleanSupplier done) {
        final long deadline = System.nanoTime() + TIMEOUT_NANOS;
        int spins = 0;
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new KernelException(Errno.ETIMEDOUT, "VT-d unit " + unit + ": timed out waiting for " + what
                        + " (is the machine running?)");
            }
            spin(++spins);
        }
    }

    /**
     * A wait on the hardware: spin a little, then yield. The unit is a thread of the machine that may
     * share this core, and on a small host a waiter that only spins delays the very answer it awaits.
     */
    static void spin(final int spins) {
        if (spins < 256) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }
}
