package org.iopersist.kernel.iommu;

import org.iopersist.hw.vtd.RemappingUnit;

/**
 * An IOVA range a domain must never map (Linux's {@code iommu_resv_region}). {@code MSI} is the
 * interrupt window: device writes there are interrupt requests, never memory accesses.
 */
public record ReservedRegion(long start, long last, Type type) {
    public enum Type { MSI, RESERVED }

    /**
     * The x86 interrupt window 0xFEE00000-0xFEEFFFFF ({@code IOAPIC_RANGE_START..END} in the VT-d
     * driver): the range the remapping hardware decodes as interrupt requests, so the kernel takes
     * its bounds from the hardware model rather than a copy.
     */
    public static final ReservedRegion INTERRUPT_WINDOW =
            new ReservedRegion(RemappingUnit.INTERRUPT_BASE, RemappingUnit.INTERRUPT_LAST, Type.MSI);

    /** Whether {@code [otherStart, otherLast]} overlaps this region (unsigned, both inclusive). */
    public boolean intersects(final long otherStart, final long otherLast) {
        return Long.compareUnsigned(otherStart, last) <= 0 && Long.compareUnsigned(start, otherLast) <= 0;
    }
}
