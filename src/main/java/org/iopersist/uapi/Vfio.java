package org.iopersist.uapi;

import java.lang.foreign.MemorySegment;

/**
 * The VFIO device-cdev ioctls a VMM uses with iommufd, as merged in {@code include/uapi/linux/vfio.h}:
 * {@code _IO(VFIO_TYPE, VFIO_BASE + n)} numbers, and structs framed by {@code argsz} and
 * {@code flags}. VFIO's framing differs from iommufd's: the kernel copies {@code minsz} bytes,
 * {@code argsz < minsz} or unknown flags are EINVAL, and a larger {@code argsz} is simply allowed.
 * The structs: {@link VfioDeviceBindIommufd}, {@link VfioDeviceAttachIommufdPt},
 * {@link VfioDeviceDetachIommufdPt}.
 */
public final class Vfio {
    public static final int VFIO_TYPE = ';';
    public static final int VFIO_BASE = 100;

    public static final int VFIO_DEVICE_BIND_IOMMUFD = (VFIO_TYPE << 8) | (VFIO_BASE + 18);
    public static final int VFIO_DEVICE_ATTACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 19);
    public static final int VFIO_DEVICE_DETACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 20);

    /** Every VFIO struct starts with {@code u32 argsz; u32 flags}: what the kernel checks first. */
    public static final long ARGSZ_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;

    /** Device nodes: {@code /dev/vfio/devices/vfioN}, N in BDF order. */
    public static final String CDEV_DIR = "/dev/vfio/devices/";

    /** PCI devices in sysfs: {@code /sys/bus/pci/devices/<BDF>}. */
    public static final String PCI_SYSFS_DIR = "/sys/bus/pci/devices/";

    private Vfio() {
    }

    /** {@code /dev/vfio/devices/vfio<index>}. */
    public static String cdevPath(final int index) {
        return CDEV_DIR + "vfio" + index;
    }

    /** {@code /sys/bus/pci/devices/<bdf>}, {@code bdf} as {@code ssss:bb:dd.f}. */
    public static String pciSysfsDir(final String bdf) {
        return PCI_SYSFS_DIR + bdf;
    }

    /** {@code /sys/bus/pci/devices/<bdf>/vfio-dev/vfio<index>}: its {@code dev} reads the cdev's major:minor. */
    public static String vfioDevSysfsDir(final String bdf, final int index) {
        return pciSysfsDir(bdf) + "/vfio-dev/vfio" + index;
    }

    /** {@code argsz}: the size of the caller's struct. */
    public static int argsz(final MemorySegment s) {
        return CType.u32(s, ARGSZ_OFFSET);
    }

    /** Sets {@code argsz}. */
    public static void argsz(final MemorySegment s, final int v) {
        CType.u32(s, ARGSZ_OFFSET, v);
    }

    /** {@code flags}: must be 0 for the three commands here. */
    public static int flags(final MemorySegment s) {
        return CType.u32(s, FLAGS_OFFSET);
    }

    /** Sets {@code flags}. */
    public static void flags(final MemorySegment s, final int v) {
        CType.u32(s, FLAGS_OFFSET, v);
    }
}
