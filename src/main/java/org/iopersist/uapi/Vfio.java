package org.iopersist.uapi;

import java.lang.foreign.MemorySegment;

/**
 * The VFIO device-cdev ioctls a VMM uses with iommufd, as merged in {@code include/uapi/linux/vfio.h}:
 * {@code _IO(VFIO_TYPE, VFIO_BASE + n)} numbers, and structs framed by {@code argsz} and
 * {@code flags}. VFIO's framing differs from iommufd's: the kernel copies {@code minsz} bytes,
 * {@code argsz < minsz} or unknown flags are EINVAL, and a larger {@code argsz} is simply allowed.
 * The structs: {@link VfioDeviceBindIommufd}, {@link VfioDeviceAttachIommufdPt},
 * {@link VfioDeviceDetachIommufdPt}; for the type1 container ioctls iommufd answers,
 * {@link VfioIommuType1Info} (with {@link VfioInfoCapHeader}, {@link VfioIommuType1InfoCapIovaRange},
 * {@link VfioIovaRange}, {@link VfioIommuType1InfoDmaAvail}), {@link VfioIommuType1DmaMap} and
 * {@link VfioIommuType1DmaUnmap}.
 */
public final class Vfio {
    public static final int VFIO_TYPE = ';';
    public static final int VFIO_BASE = 100;

    public static final int VFIO_DEVICE_BIND_IOMMUFD = (VFIO_TYPE << 8) | (VFIO_BASE + 18);
    public static final int VFIO_DEVICE_ATTACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 19);
    public static final int VFIO_DEVICE_DETACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 20);

    // The container (type1) ioctls, which iommufd answers on its own fd (vfio_compat.c).
    public static final int VFIO_GET_API_VERSION = (VFIO_TYPE << 8) | VFIO_BASE;
    public static final int VFIO_CHECK_EXTENSION = (VFIO_TYPE << 8) | (VFIO_BASE + 1);
    public static final int VFIO_SET_IOMMU = (VFIO_TYPE << 8) | (VFIO_BASE + 2);
    public static final int VFIO_IOMMU_GET_INFO = (VFIO_TYPE << 8) | (VFIO_BASE + 12);
    public static final int VFIO_IOMMU_MAP_DMA = (VFIO_TYPE << 8) | (VFIO_BASE + 13);
    public static final int VFIO_IOMMU_UNMAP_DMA = (VFIO_TYPE << 8) | (VFIO_BASE + 14);
    public static final int VFIO_IOMMU_DIRTY_PAGES = (VFIO_TYPE << 8) | (VFIO_BASE + 17);

    public static final int VFIO_API_VERSION = 0;
    // VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU arguments
    public static final int VFIO_TYPE1_IOMMU = 1;
    public static final int VFIO_TYPE1v2_IOMMU = 3;
    public static final int VFIO_DMA_CC_IOMMU = 4;
    public static final int VFIO_TYPE1_NESTING_IOMMU = 6;
    public static final int VFIO_UNMAP_ALL = 9;
    public static final int VFIO_UPDATE_VADDR = 10;

    // vfio_iommu_type1_info
    public static final int VFIO_IOMMU_INFO_PGSIZES = 1;
    public static final int VFIO_IOMMU_INFO_CAPS = 1 << 1;
    public static final int VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
    public static final int VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
    public static final int VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

    // vfio_iommu_type1_dma_map / _unmap flags
    public static final int VFIO_DMA_MAP_FLAG_READ = 1;
    public static final int VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
    public static final int VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
    public static final int VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1;
    public static final int VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
    public static final int VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;

    /** The legacy container node iommufd provides ({@code CONFIG_IOMMUFD_VFIO_CONTAINER}): an iommufd with MM accounting. */
    public static final String CONTAINER_PATH = "/dev/vfio/vfio";

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
