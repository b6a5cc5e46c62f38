package org.iopersist.vmm;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;

/** A VMM's handle on one VFIO device cdev: bind to an iommufd, attach, detach. */
public final class VfioDevice implements AutoCloseable {
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private final KernelClient client;
    private final int index;
    private final int fd;
    private int devId;

    private VfioDevice(final KernelClient client, final int index, final int fd) {
        this.client = client;
        this.index = index;
        this.fd = fd;
    }

    /** Opens {@code /dev/vfio/devices/vfio<index>}. */
    public static VfioDevice open(final KernelClient client, final int index) {
        return new VfioDevice(client, index, client.open(Vfio.CDEV_DIR + "vfio" + index, Syscall.O_RDWR));
    }

    public int index() {
        return index;
    }

    /** The iommufd device id from the last bind. */
    public int devId() {
        return devId;
    }

    private MemorySegment call(final int cmd, final StructLayout l, final MemorySegment s, final String what) {
        final long ret = client.ioctl(fd, cmd, s);
        if (ret < 0) {
            throw new ErrnoException((int) -ret, what + " on vfio" + index);
        }
        return s;
    }

    private static MemorySegment struct(final StructLayout l) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((l.byteSize() + 7) / 8)]).asSlice(0, l.byteSize());
        s.set(U32, 0, (int) l.byteSize());
        return s;
    }

    /** VFIO_DEVICE_BIND_IOMMUFD; returns the device id. */
    public int bind(final Iommufd iommufd) {
        final MemorySegment s = struct(Vfio.BIND_IOMMUFD_LAYOUT);
        s.set(U32, 8, iommufd.fd());
        devId = call(Vfio.VFIO_DEVICE_BIND_IOMMUFD, Vfio.BIND_IOMMUFD_LAYOUT, s, "VFIO_DEVICE_BIND_IOMMUFD").get(U32, 12);
        return devId;
    }

    /** VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS or HWPT; returns the HWPT id. */
    public int attach(final int ptId) {
        final MemorySegment s = struct(Vfio.ATTACH_IOMMUFD_PT_LAYOUT);
        s.set(U32, 8, ptId);
        return call(Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT, Vfio.ATTACH_IOMMUFD_PT_LAYOUT, s, "VFIO_DEVICE_ATTACH_IOMMUFD_PT").get(U32, 8);
    }

    public void detach() {
        call(Vfio.VFIO_DEVICE_DETACH_IOMMUFD_PT, Vfio.DETACH_IOMMUFD_PT_LAYOUT, struct(Vfio.DETACH_IOMMUFD_PT_LAYOUT),
                "VFIO_DEVICE_DETACH_IOMMUFD_PT");
    }

    @Override
    public void close() {
        client.close(fd);
    }
}
