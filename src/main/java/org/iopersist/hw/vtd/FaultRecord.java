package org.iopersist.hw.vtd;

import org.iopersist.hw.memory.Mmio;

/**
 * One fault recording register, decoded (VT-d §11.4.14; layout in {@link VtdRegisters}).
 *
 * @param index      which FRCD
 * @param pending    F: a fault is recorded and software has not cleared it
 * @param read       T: the faulting access was a read (else a write)
 * @param reasonCode FR as recorded
 * @param sid        source-id of the requester
 * @param page       FI: the page address of the faulting IOVA
 */
public record FaultRecord(int index, boolean pending, boolean read, int reasonCode, int sid, long page) {

    /** Reads FRCD[{@code index}] of the unit whose registers are {@code regs}. */
    public static FaultRecord read(final Mmio.Window regs, final int index) {
        final long lo = regs.read64(VtdRegisters.frcd(index));
        final long hi = regs.read64(VtdRegisters.frcd(index) + 8);
        return new FaultRecord(index, (hi & VtdRegisters.FRCD_HI_F) != 0, (hi & VtdRegisters.FRCD_HI_T_READ) != 0,
                (int) ((hi & VtdRegisters.FRCD_HI_FR_MASK) >>> VtdRegisters.FRCD_HI_FR_SHIFT),
                (int) (hi & VtdRegisters.FRCD_HI_SID_MASK), lo & ~0xFFFL);
    }

    /** The reason, or null for a code the model never records. */
    public FaultReason reason() {
        return FaultReason.ofCode(reasonCode);
    }

    /** True if the register holds anything: pending, or left over after software cleared F. */
    public boolean used() {
        return pending || reasonCode != 0 || sid != 0 || page != 0;
    }
}
