package org.iopersist.hw.vtd;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * Test-side software for one remapping unit: programs registers under the MMIO contract and
 * submits queued-invalidation descriptors, the way a driver does, from any process. If
 * {@code unit} is given (same JVM, no poller), waits call {@link RemappingUnit#service()} themselves;
 * otherwise they wait for the machine's poller.
 */
public final class VtdProgrammer {
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    private final PhysicalMemory memory;
    private final Mmio.Window regs;
    private final RemappingUnit unit;
    private long ringPhys;
    private int slots;
    private long tail;
    private long statusPhys;
    private int statusSeq;

    public VtdProgrammer(final PhysicalMemory memory, final Mmio.Window regs, final RemappingUnit unitOrNull) {
        this.memory = memory;
        this.regs = regs;
        this.unit = unitOrNull;
    }

    private void await(final String what, final BooleanSupplier done) {
        final long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!done.getAsBoolean()) {
            if (unit != null) {
                unit.service();
            } else {
                Thread.onSpinWait();
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
        }
    }

    /** Latches {@code rootPhys} (SRTP) and waits for RTPS. */
    public void setRootTable(final long rootPhys) {
        regs.write64(VtdRegisters.RTADDR, rootPhys);
        regs.setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_SRTP);
        await("SRTP", () -> (regs.read32(VtdRegisters.GCMD) & VtdRegisters.GCMD_SRTP) == 0
                && (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_RTPS) != 0);
    }

    public void enableTranslation() {
        regs.setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_TE);
        await("TES", () -> (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_TES) != 0);
    }

    /** Programs a ring of 256 slots at {@code ring} (4 KiB), a status word at {@code status}, enables QI. */
    public void enableQueue(final long ring, final long status) {
        this.ringPhys = ring;
        this.slots = 256;
        this.statusPhys = status;
        this.tail = 0;
        regs.write64(VtdRegisters.IQT, 0);
        regs.write64(VtdRegisters.IQA, ring); // QS = 0: 256 slots
        regs.setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_QIE);
        await("QIES", () -> (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_QIES) != 0);
    }

    /** Writes descriptors (pairs of qw0, qw1) and moves IQT, without waiting. */
    public void post(final long... qwords) {
        for (int i = 0; i < qwords.length; i += 2) {
            final long slot = ringPhys + tail;
            memory.store64(slot + 8, qwords[i + 1]);
            memory.store64Release(slot, qwords[i]);
            tail = (tail + InvDesc.SIZE) % (slots * InvDesc.SIZE);
        }
        regs.write64(VtdRegisters.IQT, tail);
    }

    /** Posts the descriptors followed by a wait descriptor, and waits for its status write. */
    public void submitSync(final long... qwords) {
        final int seq = ++statusSeq;
        final long[] all = java.util.Arrays.copyOf(qwords, qwords.length + 2);
        all[qwords.length] = InvDesc.wait(seq, true);
        all[qwords.length + 1] = statusPhys;
        post(all);
        await("wait descriptor " + seq, () -> memory.load32Acquire(statusPhys) == seq
                || (regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_IQE) != 0);
        if ((regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_IQE) != 0) {
            throw new IllegalStateException("invalidation queue error (FSTS.IQE)");
        }
    }

    public void invalidateAll() {
        submitSync(InvDesc.contextGlobal(), 0, InvDesc.iotlbGlobal(), 0);
    }

    public long tail() {
        return tail;
    }
}
