package org.iopersist.kernel.iommu;

import org.iopersist.hw.pci.Bdf;

/** A PCI device as the iommu core knows it: its address and the remapping unit it sits behind. */
public record IommuDevice(Bdf bdf, int unit) implements Comparable<IommuDevice> {
    public int sourceId() {
        return bdf.sourceId();
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
