package org.iopersist.kernel.vfio;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommufd.HwptPaging;
import org.iopersist.kernel.iommufd.IommufdDevice;
import org.iopersist.kernel.iommufd.persist.IommufdLuoHandler;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.luo.LuoFileHandler;
import org.iopersist.kernel.liveupdate.luo.LuoSession;
import org.iopersist.uapi.Errno;

/**
 * A VFIO device cdev in a LUO session ({@code drivers/vfio/pci/vfio_pci_liveupdate.c} with the
 * IOMMU series' {@code iommufd_device_preserve}; compatible {@code vfio-pci-v1}). Preserving a bound,
 * attached device keeps it running through the kexec: its context entry, its domain and its DMA
 * (bus mastering stays on, as the PCI series has it), so its HWPT must be preserved, which means
 * its iommufd is preserved in the same session with that HWPT marked; otherwise EINVAL. While
 * preserved, the device's attachment is frozen (attach and detach answer EBUSY).
 *
 * <p>The next kernel restores the device bound to the restored iommufd and attached to the
 * restored HWPT; RETRIEVE_FD gives the device file back that way (no bind, no attach), and until
 * the session finishes the cdev cannot be opened otherwise (EBUSY). The session can finish only
 * once the device was retrieved ({@code vfio_pci_liveupdate_can_finish}); a device nobody
 * retrieves is unbound, so blocked, at the core's finish.
 *
 * <pre>
 * file@F { compatible = "vfio-pci-v1"; token = &lt;u64&gt;; device = &lt;unit &lt;&lt; 32 | segment &lt;&lt; 16 | source-id&gt;;
 *          iommufd = &lt;u64 token of its iommufd in the session&gt;; hwpt-token = &lt;u64&gt;; dev-id = &lt;u32&gt; }
 *          (the last three only for an attached device)
 * </pre>
 */
public final class VfioLuoHandler implements LuoFileHandler {
    public static final String COMPATIBLE = "vfio-pci-v1";

    private final KernelLog log;
    private final IommuCore iommu;
    private final List<VfioDevice> devices;
    /** Devices restored in this boot (validate only): a device is in one record at most. */
    private final Set<IommuDevice> claimed = new HashSet<>();

    public VfioLuoHandler(final KernelLog log, final IommuCore iommu, final List<VfioDevice> devices) {
        this.log = log;
        this.iommu = iommu;
        this.devices = List.copyOf(devices);
    }

    @Override
    public String compatible() {
        return COMPATIBLE;
    }

    /** vfio_pci_liveupdate_can_preserve: a device file opened through its cdev. */
    @Override
    public boolean canPreserve(final KernelFile file) {
        return file instanceof VfioDeviceFile;
    }

    /**
     * vfio_pci_liveupdate_preserve: an attached device needs its HWPT preserved (EINVAL otherwise:
     * its iommufd not preserved, or the HWPT not marked), by an iommufd of this very session
     * (EINVAL if another session preserved it).
     */
    @Override
    public Preserved preserve(final OpenFile file, final long token, final LuoSession session) {
        final VfioDeviceFile f = (VfioDeviceFile) file.file();
        final IommuDevice dev = f.vfioDevice().device();
        final IommufdDevice idev = f.iommufdDevice();
        final HwptPaging h = idev == null ? null : idev.hwpt();
        if (h == null) {
            return new Out(dev, null, 0, 0, 0);
        }
        synchronized (idev.ctx().attachLock()) {
            if (!h.liveupdatePreserved()) {
                throw new KernelException(Errno.EINVAL, dev + ": its HWPT " + h.id()
                        + " is not preserved (preserve its iommufd, with the HWPT marked, first)");
            }
            IommufdLuoHandler.Out iommufd = null;
            for (IommufdLuoHandler.Out o : session.preservedOfType(IommufdLuoHandler.Out.class)) {
                if (o.ctx() == idev.ctx()) {
                    iommufd = o;
                }
            }
            if (iommufd == null) {
                // liveupdate_get_token_outgoing finds no such file in this session (Phase 1 answered ENOENT here).
                throw new KernelException(Errno.EINVAL, dev + ": its iommufd is preserved in another session");
            }
            iommu.preserveDevice(dev, true);
            idev.liveupdatePreserved(true);
            return new Out(dev, idev, iommufd.token(), h.liveupdateToken(), idev.id());
        }
    }

    private final class Out implements Preserved {
        private final IommuDevice dev;
        private final IommufdDevice idev;
        private final long iommufdToken;
        private final long hwptToken;
        private final int devId;

        Out(final IommuDevice dev, final IommufdDevice idev, final long iommufdToken, final long hwptToken, final int devId) {
            this.dev = dev;
            this.idev = idev;
            this.iommufdToken = iommufdToken;
            this.hwptToken = hwptToken;
            this.devId = devId;
        }

        @Override
        public void serialize(final FdtWriter node) {
            node.propertyU64("device", dev.handoverKey());
            if (idev != null) {
                node.propertyU64("iommufd", iommufdToken).propertyU64("hwpt-token", hwptToken).propertyU32("dev-id", devId);
            }
        }

        @Override
        public void unpreserve() {
            if (idev != null) {
                idev.liveupdatePreserved(false);
                iommu.preserveDevice(dev, false);
            }
        }
    }

    @Override
    public Restorable validate(final FdtReader blob, final int node, final LuoSession session, final IncomingHandover in)
            throws HandoverFormatException {
        final long key = blob.u64(node, "device");
        VfioDevice vd = null;
        for (VfioDevice d : devices) {
            if (d.device().handoverKey() == key) {
                vd = d;
            }
        }
        if (vd == null || !claimed.add(vd.device())) {
            throw new HandoverFormatException(String.format("vfio device 0x%x in session '%s' is unknown or claimed twice", key,
                    session.name()));
        }
        if (!blob.has(node, "iommufd")) {
            return new In(vd, null, 0, 0);
        }
        final long iommufdToken = blob.u64(node, "iommufd");
        final long hwptToken = blob.u64(node, "hwpt-token");
        final IommufdLuoHandler.In iommufd = session.restorable(iommufdToken, IommufdLuoHandler.In.class);
        if (iommufd == null || !iommufd.serves(hwptToken, vd.device())) {
            throw new HandoverFormatException(String.format("%s in session '%s' is not translating through a preserved HWPT of its"
                    + " iommufd", vd.device(), session.name()));
        }
        final int devId = blob.u32(node, "dev-id");
        if (!iommufd.claimDeviceId(devId)) {
            throw new HandoverFormatException(String.format("%s in session '%s': object id %d is invalid or taken in its iommufd",
                    vd.device(), session.name(), devId));
        }
        return new In(vd, iommufd, hwptToken, devId);
    }

    /** A device handed over: held by the session, bound and attached, until retrieve or finish. */
    private final class In implements Restorable {
        private final VfioDevice vd;
        private final IommufdLuoHandler.In iommufd;
        private final long hwptToken;
        private final int devId;
        private IommufdDevice idev;

        In(final VfioDevice vd, final IommufdLuoHandler.In iommufd, final long hwptToken, final int devId) {
            this.vd = vd;
            this.iommufd = iommufd;
            this.hwptToken = hwptToken;
            this.devId = devId;
        }

        @Override
        public void adopt(final IncomingHandover in) {
            vd.liveupdateHeld(true);
            if (iommufd != null) {
                idev = iommufd.restoreDevice(devId, vd.device(), hwptToken); // the session's binding until retrieve
                idev.liveupdatePreserved(true);
                iommu.preserveDevice(vd.device(), true);
            }
        }

        /** vfio_device_liveupdate_cdev_open: the device file, bound and attached (or unbound, if it was). */
        @Override
        public OpenFile retrieve(final UserProcess caller) {
            return new OpenFile(idev == null ? new VfioDeviceFile(vd) : VfioDeviceFile.restored(vd, idev));
        }

        /** vfio_pci_liveupdate_can_finish: only once retrieved. */
        @Override
        public boolean canFinish(final boolean retrieved) {
            return retrieved;
        }

        @Override
        public void finish(final boolean retrieved) {
            dropped();
            if (!retrieved && idev != null) {
                IommufdDevice.unbind(idev); // nobody took it: detached, so blocked
                log.info("vfio: %s was not retrieved: blocked", vd.device());
            }
            vd.liveupdateHeld(false);
        }

        @Override
        public void dropped() {
            if (idev != null) {
                idev.liveupdatePreserved(false);
                iommu.preserveDevice(vd.device(), false);
            }
        }
    }
}
