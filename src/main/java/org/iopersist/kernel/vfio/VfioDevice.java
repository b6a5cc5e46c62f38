package org.iopersist.kernel.vfio;

import org.iopersist.kernel.iommu.IommuDevice;

/**
 * A PCI device handed to userspace through its VFIO cdev {@code /dev/vfio/devices/vfioN}. N is
 * the device's index in BDF order, so a restarted VMM finds the same device at the same node.
 * Only one open file may be bound to an iommufd at a time, as on the cdev path in Linux.
 */
public final class VfioDevice {
    private final int index;
    private final IommuDevice dev;
    private VfioDeviceFile boundFile; // guarded by this

    public VfioDevice(final int index, final IommuDevice dev) {
        this.index = index;
        this.dev = dev;
    }

    public int index() {
        return index;
    }

    public IommuDevice device() {
        return dev;
    }

    public String cdevPath() {
        return org.iopersist.uapi.Vfio.cdevPath(index);
    }

    synchronized boolean claim(final VfioDeviceFile file) {
        if (boundFile != null && boundFile != file) {
            return false;
        }
        boundFile = file;
        return true;
    }

    synchronized void unclaim(final VfioDeviceFile file) {
        if (boundFile == file) {
            boundFile = null;
        }
    }
}
