package org.iopersist.kernel.iommu;

/**
 * An IOVA range a domain must never map (Linux's {@code iommu_resv_region}). {@code MSI} is the
 * interrupt window: device writes there are interrupt requests, never memory accesses.
 */
public record ReservedRegion(long start, long last, Type type) {
    public enum Type { MSI, RESERVED }

    /** The x86 interrupt window 0xFEE00000-0xFEEFFFFF. */
    public static final ReservedRegion INTERRUPT_WINDOW = new ReservedRegion(0xFEE0_0000L, 0xFEEF_FFFFL, Type.MSI);
}
