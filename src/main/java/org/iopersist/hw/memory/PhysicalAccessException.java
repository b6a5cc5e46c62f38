package org.iopersist.hw.memory;

/**
 * A CPU-side access to physical memory outside the machine's memory, or misaligned for its width.
 * This is a programming error in the caller (a kernel bug, in the model's terms), never a DMA fault:
 * devices reach memory only through the remapping unit, which turns bad addresses into faults.
 */
public final class PhysicalAccessException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public PhysicalAccessException(final String message) {
        super(message);
    }

    static PhysicalAccessException outOfRange(final long phys, final long length, final long size) {
        return new PhysicalAccessException(String.format(
                "physical access phys=0x%x length=0x%x outside memory size=0x%x", phys, length, size));
    }

    static PhysicalAccessException misaligned(final long phys, final int width) {
        return new PhysicalAccessException(String.format(
                "physical access phys=0x%x is not %d-byte aligned", phys, width));
    }
}
