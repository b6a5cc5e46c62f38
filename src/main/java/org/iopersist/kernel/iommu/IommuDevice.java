package org.iopersist.kernel.iommu;

import org.iopersist.hw.pci.Bdf;

/**
 * A device as the iommu core knows it: a PCI function, its address and the remapping unit it sits
 * behind; or a device on another bus the core probes at run time (the selftest's
 * {@code iommufd_mock} bus), with no unit ({@link #NO_UNIT}) and a name of its own.
 */
public record IommuDevice(Bdf bdf, int unit) implements Comparable<IommuDevice> {
    /** The unit of a device no remapping unit translates for. */
    public static final int NO_UNIT = -1;
    /** The PCI segment the iommu core's non-PCI devices are numbered in (no PCI segment uses it). */
    private static final int VIRTUAL_SEGMENT = 0xFFFF;

    /** Device {@code n} of a non-PCI bus, {@code <bus>n} ({@code iommufd_mock3}); n below 65536. */
    public static IommuDevice virtual(final int n) {
        return new IommuDevice(new Bdf(VIRTUAL_SEGMENT, (n >> 8) & 0xFF, (n >> 3) & 0x1F, n & 7), NO_UNIT);
    }

    /** Whether a remapping unit translates for this device (a PCI function), or it is a virtual one. */
    public boolean pci() {
        return unit != NO_UNIT;
    }

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
        return pci() ? bdf.toString() : "iommufd_mock" + (bdf.bus() << 8 | bdf.devfn());
    }
}
