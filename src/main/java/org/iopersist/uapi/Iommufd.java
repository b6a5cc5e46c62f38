package org.iopersist.uapi;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * The iommufd uAPI of {@code include/uapi/linux/iommufd.h}: ioctl numbers, flags and option ids.
 * Every command is {@code _IO(';', 0x80 + n)} and every struct starts with {@code u32 size}. Each
 * struct is a class of its own, named after it, with its offsets, {@code SIZE} and {@code MIN_SIZE}
 * ({@code offsetofend} of the last mandatory field, as the kernel's dispatch table has it):
 * {@link IommuDestroy}, {@link IommuIoasAlloc}, {@link IommuIoasAllowIovas}, {@link IommuIoasCopy},
 * {@link IommuIoasIovaRanges} with {@link IommuIovaRange}, {@link IommuIoasMap}, {@link IommuIoasUnmap},
 * {@link IommuOption}, {@link IommuHwptAlloc}, {@link IommuHwInfo} with {@link IommuHwInfoVtd}, and
 * {@link IommuIoasMapFile}, {@link IommuVfioIoas}, {@link IommuHwptSetDirtyTracking},
 * {@link IommuHwptGetDirtyBitmap}; and {@link IommuTestCmd} for the selftest interface.
 */
public final class Iommufd {
    private Iommufd() {
    }

    public static final int IOMMUFD_TYPE = ';';
    public static final int CMD_BASE = 0x80;

    /** {@code _IO(type, nr)}: no direction, no size, as iommufd defines its commands. */
    public static int io(final int type, final int nr) {
        return (type << 8) | nr;
    }

    public static final int IOMMU_DESTROY = io(IOMMUFD_TYPE, 0x80);
    public static final int IOMMU_IOAS_ALLOC = io(IOMMUFD_TYPE, 0x81);
    public static final int IOMMU_IOAS_ALLOW_IOVAS = io(IOMMUFD_TYPE, 0x82);
    public static final int IOMMU_IOAS_COPY = io(IOMMUFD_TYPE, 0x83);
    public static final int IOMMU_IOAS_IOVA_RANGES = io(IOMMUFD_TYPE, 0x84);
    public static final int IOMMU_IOAS_MAP = io(IOMMUFD_TYPE, 0x85);
    public static final int IOMMU_IOAS_UNMAP = io(IOMMUFD_TYPE, 0x86);
    public static final int IOMMU_OPTION = io(IOMMUFD_TYPE, 0x87);
    public static final int IOMMU_VFIO_IOAS = io(IOMMUFD_TYPE, 0x88);
    public static final int IOMMU_HWPT_ALLOC = io(IOMMUFD_TYPE, 0x89);
    public static final int IOMMU_GET_HW_INFO = io(IOMMUFD_TYPE, 0x8a);
    public static final int IOMMU_HWPT_SET_DIRTY_TRACKING = io(IOMMUFD_TYPE, 0x8b);
    public static final int IOMMU_HWPT_GET_DIRTY_BITMAP = io(IOMMUFD_TYPE, 0x8c);
    public static final int IOMMU_HWPT_INVALIDATE = io(IOMMUFD_TYPE, 0x8d);
    public static final int IOMMU_FAULT_QUEUE_ALLOC = io(IOMMUFD_TYPE, 0x8e);
    public static final int IOMMU_IOAS_MAP_FILE = io(IOMMUFD_TYPE, 0x8f);
    public static final int IOMMU_IOAS_CHANGE_PROCESS = io(IOMMUFD_TYPE, 0x92);
    /**
     * The IOMMU live-update series' HWPT mark (not in mainline): {@code IOMMUFD_CMD_HWPT_LU_MARK_PRESERVE = 0x95}
     * in samikhawaja/linux, the number its later postings kept under the name
     * {@code IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE}; see {@link IommuHwptLiveupdateMarkPreserve}.
     */
    public static final int IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE = io(IOMMUFD_TYPE, 0x95);

    // IOMMU_VFIO_IOAS ops
    public static final int IOMMU_VFIO_IOAS_GET = 0;
    public static final int IOMMU_VFIO_IOAS_SET = 1;
    public static final int IOMMU_VFIO_IOAS_CLEAR = 2;

    // IOAS_MAP / MAP_FILE / COPY flags
    public static final int IOMMU_IOAS_MAP_FIXED_IOVA = 1;
    public static final int IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
    public static final int IOMMU_IOAS_MAP_READABLE = 1 << 2;

    // IOMMU_OPTION
    public static final int IOMMU_OPTION_RLIMIT_MODE = 0;
    public static final int IOMMU_OPTION_HUGE_PAGES = 1;
    /** The RFC's persistence option: SET on an empty ctx marks it persistent and returns its id. */
    public static final int IOMMU_OPTION_PERSISTENT = 2;
    public static final int IOMMU_OPTION_OP_SET = 0;
    public static final int IOMMU_OPTION_OP_GET = 1;

    // HWPT_ALLOC flags and data types
    public static final int IOMMU_HWPT_ALLOC_NEST_PARENT = 1;
    public static final int IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
    public static final int IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
    public static final int IOMMU_HWPT_ALLOC_PASID = 1 << 3;
    public static final int IOMMU_HWPT_DATA_NONE = 0;
    public static final int IOMMU_HWPT_DATA_VTD_S1 = 1;

    // HWPT_SET_DIRTY_TRACKING / HWPT_GET_DIRTY_BITMAP flags
    public static final int IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
    public static final int IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

    // GET_HW_INFO
    public static final int IOMMU_HW_INFO_TYPE_NONE = 0;
    public static final int IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;

    /** Every iommufd struct starts with {@code u32 size}: the dispatcher reads it before it knows the struct. */
    public static final long SIZE_OFFSET = 0;

    /** The {@code size} that heads every iommufd struct. */
    public static int size(final MemorySegment s) {
        return CType.u32(s, SIZE_OFFSET);
    }

    /** Sets the {@code size} that heads every iommufd struct. */
    public static void size(final MemorySegment s, final int v) {
        CType.u32(s, SIZE_OFFSET, v);
    }

    /** The device node that opens an iommufd context. */
    public static final String DEV_PATH = "/dev/iommu";

    /**
     * Where a restored persistent context appears after a live update: {@code <dir>/<id>/} holds its
     * attributes and the {@code iommufd} node a VMM opens to take it back (this project's addition,
     * after the RFC).
     */
    public static final String PERSISTED_SYSFS_DIR = "/sys/kernel/iommufd_persisted";

    /** {@code /sys/kernel/iommufd_persisted/<id>}. */
    public static String persistedDir(final long persistentId) {
        return PERSISTED_SYSFS_DIR + "/" + persistentId;
    }

    /** {@code /sys/kernel/iommufd_persisted/<id>/iommufd}: opening it reopens the restored context. */
    public static String persistedNode(final long persistentId) {
        return persistedDir(persistentId) + "/iommufd";
    }

    /**
     * {@code offsetofend(layout, field)}, by name: for tests and docs that check the constant offsets
     * of the struct classes ({@link IommuIoasMap} and the rest), never on an ioctl's path.
     */
    public static long offsetofend(final StructLayout layout, final String field) {
        return layout.byteOffset(groupElement(field)) + layout.select(groupElement(field)).byteSize();
    }

    /** {@code offsetof(layout, field)}, by name: as {@link #offsetofend}, for tests and docs. */
    public static long offsetof(final StructLayout layout, final String field) {
        return layout.byteOffset(groupElement(field));
    }
}
