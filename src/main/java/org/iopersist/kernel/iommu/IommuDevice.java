package org.iopersist.kernel.iommu;

import org.iopersist.hw.pci.Bdf;

/** A PCI device as the iommu core knows it: its address and the remapping unit it sits behind. */
public record IommuDevice(Bdf bdf, int unit) implements Comparable<IommuDevice> {
    public int sourceId() {
        return bdf.sourceId();
    }

    /**
     * The device's name in a handover, the same on both sides of a kexec:
     * {@code unit << 32 | segment << 16 | source-id} (source-id is {@code bus << 8 | devfn}). The
     * VT-d handover lists a domain's devices by it; iommufd's names each bound device by it.
     */
    public long handoverKey() {
        return (long) unit << 32 | (long) bdf.segment() << 16 | bdf.sourceId();
    }

    @Override
    public int compareTo(final IommuDevice o) {
        return bdf.compareTo(o.bdf);
    }

    @Override
    public String toString() {
        return bdf.toString();
    }
}
