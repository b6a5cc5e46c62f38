package org.iopersist.kernel.vfio;

import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.uapi.Errno;

/**
 * A PCI device handed to userspace through its VFIO cdev {@code /dev/vfio/devices/vfioN}. N is
 * the device's index in BDF order, so a restarted VMM finds the same device at the same node.
 * Only one open file may be bound to an iommufd at a time, as on the cdev path in Linux.
 */
public final class VfioDevice {
    private final int index;
    private final IommuDevice dev;
    private VfioDeviceFile boundFile; // guarded by this
    /** Held by an incoming LUO session until it finishes: only RETRIEVE_FD gives it out. Guarded by this. */
    private boolean liveupdateHeld;

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

    /**
     * open(2) of the cdev: EBUSY while a live update holds the device, as vfio_pci_liveupdate.c has
     * it ("attempting to open a new file for the device via its character device will fail").
     */
    public synchronized VfioDeviceFile open() {
        if (liveupdateHeld) {
            throw new KernelException(Errno.EBUSY, cdevPath() + " is held by a live-update session until it finishes");
        }
        return new VfioDeviceFile(this);
    }

    synchronized void liveupdateHeld(final boolean on) {
        liveupdateHeld = on;
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
