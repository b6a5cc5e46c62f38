package org.iopersist.kernel.vfio;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommufd.IommufdDevice;
import org.iopersist.kernel.iommufd.IommufdFile;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioDeviceAttachIommufdPt;
import org.iopersist.uapi.VfioDeviceBindIommufd;
import org.iopersist.uapi.VfioDeviceDetachIommufdPt;

/**
 * One open VFIO device cdev. Until VFIO_DEVICE_BIND_IOMMUFD succeeds every other device ioctl is
 * EINVAL; closing the file detaches and unbinds. The framing is VFIO's: copy {@code minsz} bytes,
 * {@code argsz < minsz} or unknown flags are EINVAL.
 */
public final class VfioDeviceFile implements KernelFile {
    private final VfioDevice device;
    private IommufdDevice idev; // guarded by this

    public VfioDeviceFile(final VfioDevice device) {
        this.device = device;
    }

    /**
     * vfio_device_liveupdate_cdev_open: the device file a live update restored, already bound to
     * {@code idev} and attached as it was.
     */
    static VfioDeviceFile restored(final VfioDevice device, final IommufdDevice idev) {
        final VfioDeviceFile f = new VfioDeviceFile(device);
        if (!device.claim(f)) {
            throw new KernelException(Errno.EBUSY, device.cdevPath() + " is bound through another open file");
        }
        synchronized (f) {
            f.idev = idev;
        }
        return f;
    }

    VfioDevice vfioDevice() {
        return device;
    }

    @Override
    public long ioctl(final UserProcess p, final int cmd, final long arg) {
        try (Arena arena = Arena.ofConfined()) {
            return switch (cmd) {
                case Vfio.VFIO_DEVICE_BIND_IOMMUFD -> bind(p, arg, arena);
                case Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT -> attach(p, arg, arena);
                case Vfio.VFIO_DEVICE_DETACH_IOMMUFD_PT -> detach(p, arg, arena);
                default -> {
                    if (bound() == null) {
                        throw new KernelException(Errno.EINVAL, "device ioctl before VFIO_DEVICE_BIND_IOMMUFD");
                    }
                    throw new KernelException(Errno.ENOTTY, "vfio device ioctl 0x" + Integer.toHexString(cmd));
                }
            };
        }
    }

    private static MemorySegment copyIn(final UserProcess p, final long arg, final long minsz, final Arena arena) {
        final MemorySegment s = arena.allocate(minsz, 8);
        p.mm().copyFromUser(arg, s, 0, minsz);
        final int argsz = Vfio.argsz(s);
        final int flags = Vfio.flags(s);
        if (Integer.toUnsignedLong(argsz) < minsz || flags != 0) {
            throw new KernelException(Errno.EINVAL, String.format("argsz=%d (minsz %d) flags=0x%x", argsz, minsz, flags));
        }
        return s;
    }

    private synchronized long bind(final UserProcess p, final long arg, final Arena arena) {
        final MemorySegment s = copyIn(p, arg, VfioDeviceBindIommufd.MIN_SIZE, arena);
        // vfio_df_ioctl_bind_iommufd: a negative fd is malformed (EINVAL), before any lookup.
        if (VfioDeviceBindIommufd.iommufd(s) < 0) {
            throw new KernelException(Errno.EINVAL, "iommufd " + VfioDeviceBindIommufd.iommufd(s));
        }
        if (idev != null) {
            throw new KernelException(Errno.EINVAL, device.cdevPath() + " is already bound");
        }
        final int fd = VfioDeviceBindIommufd.iommufd(s);
        final KernelFile f = p.fds().get(fd);
        if (f == null) {
            throw new KernelException(Errno.EBADF, "iommufd " + fd + " is not open");
        }
        if (!(f instanceof IommufdFile iommufd)) {
            throw new KernelException(Errno.EBADFD, "fd " + fd + " is " + f.describe() + ", not an iommufd");
        }
        if (!device.claim(this)) {
            throw new KernelException(Errno.EINVAL, device.cdevPath() + " is bound through another open file");
        }
        final IommufdDevice bound;
        try {
            bound = IommufdDevice.bind(iommufd.ctx(), device.device());
        } catch (RuntimeException e) {
            device.unclaim(this);
            throw e;
        }
        VfioDeviceBindIommufd.outDevid(s, bound.id());
        try {
            p.mm().copyToUser(arg, s, 0, VfioDeviceBindIommufd.MIN_SIZE);
        } catch (KernelException e) {
            IommufdDevice.abortBind(bound);
            device.unclaim(this);
            throw e;
        }
        idev = bound;
        IommufdDevice.bindDone(bound);
        return 0;
    }

    private long attach(final UserProcess p, final long arg, final Arena arena) {
        final IommufdDevice d = requireBound(); // before the copy, as vfio_device_fops_unl_ioctl
        final MemorySegment s = copyIn(p, arg, VfioDeviceAttachIommufdPt.MIN_SIZE, arena);
        final int hwptId = IommufdDevice.attach(d, VfioDeviceAttachIommufdPt.ptId(s));
        VfioDeviceAttachIommufdPt.ptId(s, hwptId);
        p.mm().copyToUser(arg, s, 0, VfioDeviceAttachIommufdPt.MIN_SIZE);
        return 0;
    }

    private long detach(final UserProcess p, final long arg, final Arena arena) {
        final IommufdDevice d = requireBound();
        copyIn(p, arg, VfioDeviceDetachIommufdPt.MIN_SIZE, arena);
        IommufdDevice.detach(d);
        return 0;
    }

    private synchronized IommufdDevice bound() {
        return idev;
    }

    private IommufdDevice requireBound() {
        final IommufdDevice d = bound();
        if (d == null) {
            throw new KernelException(Errno.EINVAL, "device ioctl before VFIO_DEVICE_BIND_IOMMUFD");
        }
        return d;
    }

    /** The device's bound iommufd object, or null (for tests and sysfs). */
    public IommufdDevice iommufdDevice() {
        return bound();
    }

    @Override
    public void release() {
        final IommufdDevice d;
        synchronized (this) {
            d = idev;
            idev = null;
        }
        if (d != null) {
            IommufdDevice.unbind(d);
        }
        device.unclaim(this);
    }

    @Override
    public String describe() {
        return device.cdevPath();
    }
}
