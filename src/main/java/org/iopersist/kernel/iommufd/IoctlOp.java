package org.iopersist.kernel.iommufd;

import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuHwInfo;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.IommuHwptLiveupdateMarkPreserve;
import org.iopersist.uapi.IommuHwptGetDirtyBitmap;
import org.iopersist.uapi.IommuHwptSetDirtyTracking;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasMapFile;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.IommuVfioIoas;
import org.iopersist.uapi.Iommufd;

/**
 * The dispatch table of iommufd's ioctls ({@code iommufd_ioctl_ops}): each command's struct size, its
 * minimum size ({@code offsetofend} of the last mandatory field), and its handler. The dispatcher,
 * not the handlers, enforces the size rules.
 */
enum IoctlOp {
    DESTROY(Iommufd.IOMMU_DESTROY, IommuDestroy.SIZE, IommuDestroy.MIN_SIZE, IommufdCtx::destroy),
    IOAS_ALLOC(Iommufd.IOMMU_IOAS_ALLOC, IommuIoasAlloc.SIZE, IommuIoasAlloc.MIN_SIZE, Ioas::alloc),
    IOAS_ALLOW_IOVAS(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, IommuIoasAllowIovas.SIZE, IommuIoasAllowIovas.MIN_SIZE, Ioas::allowIovas),
    IOAS_IOVA_RANGES(Iommufd.IOMMU_IOAS_IOVA_RANGES, IommuIoasIovaRanges.SIZE, IommuIoasIovaRanges.MIN_SIZE, Ioas::iovaRanges),
    IOAS_MAP(Iommufd.IOMMU_IOAS_MAP, IommuIoasMap.SIZE, IommuIoasMap.MIN_SIZE, Ioas::map),
    IOAS_UNMAP(Iommufd.IOMMU_IOAS_UNMAP, IommuIoasUnmap.SIZE, IommuIoasUnmap.MIN_SIZE, Ioas::unmap),
    IOAS_COPY(Iommufd.IOMMU_IOAS_COPY, IommuIoasCopy.SIZE, IommuIoasCopy.MIN_SIZE, Ioas::copy),
    IOAS_MAP_FILE(Iommufd.IOMMU_IOAS_MAP_FILE, IommuIoasMapFile.SIZE, IommuIoasMapFile.MIN_SIZE, Ioas::mapFile),
    OPTION(Iommufd.IOMMU_OPTION, IommuOption.SIZE, IommuOption.MIN_SIZE, IommufdCtx::option),
    HWPT_ALLOC(Iommufd.IOMMU_HWPT_ALLOC, IommuHwptAlloc.SIZE, IommuHwptAlloc.MIN_SIZE, HwptPaging::allocIoctl),
    GET_HW_INFO(Iommufd.IOMMU_GET_HW_INFO, IommuHwInfo.SIZE, IommuHwInfo.MIN_SIZE, IommufdDevice::getHwInfo),
    VFIO_IOAS(Iommufd.IOMMU_VFIO_IOAS, IommuVfioIoas.SIZE, IommuVfioIoas.MIN_SIZE, VfioCompat::vfioIoas),
    HWPT_SET_DIRTY_TRACKING(Iommufd.IOMMU_HWPT_SET_DIRTY_TRACKING, IommuHwptSetDirtyTracking.SIZE,
            IommuHwptSetDirtyTracking.MIN_SIZE, HwptPaging::setDirtyTracking),
    HWPT_GET_DIRTY_BITMAP(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, IommuHwptGetDirtyBitmap.SIZE, IommuHwptGetDirtyBitmap.MIN_SIZE,
            HwptPaging::getDirtyBitmap),
    HWPT_LIVEUPDATE_MARK_PRESERVE(Iommufd.IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, IommuHwptLiveupdateMarkPreserve.SIZE,
            IommuHwptLiveupdateMarkPreserve.MIN_SIZE, HwptPaging::liveupdateMarkPreserve),
    TEST_CMD(IommuTestCmd.IOMMU_TEST_CMD, IommuTestCmd.SIZE, IommuTestCmd.MIN_SIZE, Selftest::test);

    /**
     * The ioctl numbers iommufd_ioctl_ops spans, {@code [0x80, 0x80 + TABLE_SIZE)}, as in a kernel
     * built with CONFIG_IOMMUFD_TEST (its last entry is IOMMU_TEST_CMD, 0x80 + 32). A number outside
     * goes to the VFIO compatibility ioctls; one inside with no command is ENOTTY once its size reads.
     */
    static final int TABLE_SIZE = 33;

    /** Whether {@code cmd}'s number falls in iommufd's own table (else: VFIO compatibility). */
    static boolean inTable(final int cmd) {
        final int nr = cmd & 0xff;
        return nr >= Iommufd.CMD_BASE && nr - Iommufd.CMD_BASE < TABLE_SIZE;
    }

    /** A command's handler; returns the ioctl's return value (0) or throws with the errno. */
    @FunctionalInterface
    interface Handler {
        long handle(Ucmd ucmd);
    }

    final int cmd;
    /** The kernel's {@code sizeof} of the struct: what it copies in, zero-extending a shorter one. */
    final long size;
    final long minSize;
    final Handler handler;

    IoctlOp(final int cmd, final long size, final long minSize, final Handler handler) {
        this.cmd = cmd;
        this.size = size;
        this.minSize = minSize;
        this.handler = handler;
    }

    static IoctlOp of(final int cmd) {
        for (IoctlOp op : values()) {
            if (op.cmd == cmd) {
                return op;
            }
        }
        return null;
    }
}
