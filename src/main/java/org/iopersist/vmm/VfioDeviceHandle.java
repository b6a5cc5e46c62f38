package org.iopersist.vmm;

import java.lang.foreign.MemorySegment;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioDeviceAttachIommufdPt;
import org.iopersist.uapi.VfioDeviceBindIommufd;
import org.iopersist.uapi.VfioDeviceDetachIommufdPt;

/** A VMM's handle on one VFIO device cdev: bind to an iommufd, attach, detach. */
public final class VfioDeviceHandle implements AutoCloseable {
    private final KernelClient client;
    private final int index;
    private final int fd;
    private int devId;

    private VfioDeviceHandle(final KernelClient client, final int index, final int fd) {
        this.client = client;
        this.index = index;
        this.fd = fd;
    }

    /** Wraps a device fd this process holds (one retrieved from a LUO session, already bound as {@code devId}). */
    public static VfioDeviceHandle of(final KernelClient client, final int index, final int fd, final int devId) {
        final VfioDeviceHandle h = new VfioDeviceHandle(client, index, fd);
        h.devId = devId;
        return h;
    }

    public int fd() {
        return fd;
    }

    /** Opens {@code /dev/vfio/devices/vfio<index>}. */
    public static VfioDeviceHandle open(final KernelClient client, final int index) {
        return new VfioDeviceHandle(client, index, client.open(Vfio.cdevPath(index), Syscall.O_RDWR));
    }

    public int index() {
        return index;
    }

    /** The iommufd device id from the last bind. */
    public int devId() {
        return devId;
    }

    private MemorySegment call(final int cmd, final MemorySegment s, final String what) {
        final long ret = client.ioctl(fd, cmd, s);
        if (ret < 0) {
            throw new ErrnoException((int) -ret, what + " on vfio" + index);
        }
        return s;
    }

    /** A zeroed struct of {@code size} bytes with {@code argsz} set, as a caller fills one. */
    private static MemorySegment struct(final long size) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((size + 7) / 8)]).asSlice(0, size);
        Vfio.argsz(s, (int) size);
        return s;
    }

    /** VFIO_DEVICE_BIND_IOMMUFD; returns the device id. */
    public int bind(final IommufdHandle iommufd) {
        final MemorySegment s = struct(VfioDeviceBindIommufd.SIZE);
        VfioDeviceBindIommufd.iommufd(s, iommufd.fd());
        devId = VfioDeviceBindIommufd.outDevid(call(Vfio.VFIO_DEVICE_BIND_IOMMUFD, s, "VFIO_DEVICE_BIND_IOMMUFD"));
        return devId;
    }

    /** VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS or HWPT; returns the HWPT id. */
    public int attach(final int ptId) {
        final MemorySegment s = struct(VfioDeviceAttachIommufdPt.SIZE);
        VfioDeviceAttachIommufdPt.ptId(s, ptId);
        return VfioDeviceAttachIommufdPt.ptId(call(Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT, s, "VFIO_DEVICE_ATTACH_IOMMUFD_PT"));
    }

    public void detach() {
        call(Vfio.VFIO_DEVICE_DETACH_IOMMUFD_PT, struct(VfioDeviceDetachIommufdPt.SIZE), "VFIO_DEVICE_DETACH_IOMMUFD_PT");
    }

    @Override
    public void close() {
        client.close(fd);
    }
}
