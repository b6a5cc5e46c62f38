package org.iopersist.uapi;

import static org.iopersist.uapi.Iommufd.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;

/**
 * The VFIO device-cdev ioctls a VMM uses with iommufd, as merged in {@code include/uapi/linux/vfio.h}:
 * {@code _IO(VFIO_TYPE, VFIO_BASE + n)} numbers, and structs framed by {@code argsz} and
 * {@code flags}. VFIO's framing differs from iommufd's: the kernel copies {@code minsz} bytes,
 * {@code argsz < minsz} or unknown flags are EINVAL, and a larger {@code argsz} is simply allowed.
 */
public final class Vfio {
    public static final int VFIO_TYPE = ';';
    public static final int VFIO_BASE = 100;

    public static final int VFIO_DEVICE_BIND_IOMMUFD = (VFIO_TYPE << 8) | (VFIO_BASE + 18);
    public static final int VFIO_DEVICE_ATTACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 19);
    public static final int VFIO_DEVICE_DETACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 20);

    /** struct vfio_device_bind_iommufd {argsz; flags; s32 iommufd; out_devid}. */
    public static final StructLayout BIND_IOMMUFD_LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("iommufd"), U32.withName("out_devid"));
    /** struct vfio_device_attach_iommufd_pt {argsz; flags; pt_id}. */
    public static final StructLayout ATTACH_IOMMUFD_PT_LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("pt_id"));
    /** struct vfio_device_detach_iommufd_pt {argsz; flags}. */
    public static final StructLayout DETACH_IOMMUFD_PT_LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"));

    /** Device nodes: {@code /dev/vfio/devices/vfioN}, N in BDF order. */
    public static final String CDEV_DIR = "/dev/vfio/devices/";

    private Vfio() {
    }
}
