package org.iopersist.kernel.iommufd;

import java.lang.foreign.StructLayout;
import org.iopersist.uapi.Iommufd;

/**
 * The dispatch table of iommufd's ioctls: each command's struct, the field that ends its minimum
 * size, and its handler. The dispatcher, not the handlers, enforces the size rules.
 */
enum IoctlOp {
    DESTROY(Iommufd.IOMMU_DESTROY, Iommufd.IOMMU_DESTROY_LAYOUT, "id", IoasOps::destroy),
    IOAS_ALLOC(Iommufd.IOMMU_IOAS_ALLOC, Iommufd.IOMMU_IOAS_ALLOC_LAYOUT, "out_ioas_id", IoasOps::alloc),
    IOAS_ALLOW_IOVAS(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, Iommufd.IOMMU_IOAS_ALLOW_IOVAS_LAYOUT, "allowed_iovas", IoasOps::allowIovas),
    IOAS_IOVA_RANGES(Iommufd.IOMMU_IOAS_IOVA_RANGES, Iommufd.IOMMU_IOAS_IOVA_RANGES_LAYOUT, "out_iova_alignment", IoasOps::iovaRanges),
    IOAS_MAP(Iommufd.IOMMU_IOAS_MAP, Iommufd.IOMMU_IOAS_MAP_LAYOUT, "iova", MapOps::map),
    IOAS_UNMAP(Iommufd.IOMMU_IOAS_UNMAP, Iommufd.IOMMU_IOAS_UNMAP_LAYOUT, "length", MapOps::unmap),
    IOAS_COPY(Iommufd.IOMMU_IOAS_COPY, Iommufd.IOMMU_IOAS_COPY_LAYOUT, "src_iova", MapOps::copy),
    IOAS_MAP_FILE(Iommufd.IOMMU_IOAS_MAP_FILE, Iommufd.IOMMU_IOAS_MAP_FILE_LAYOUT, "iova", MapOps::mapFile),
    OPTION(Iommufd.IOMMU_OPTION, Iommufd.IOMMU_OPTION_LAYOUT, "val64", IoasOps::option),
    HWPT_ALLOC(Iommufd.IOMMU_HWPT_ALLOC, Iommufd.IOMMU_HWPT_ALLOC_LAYOUT, "__reserved", DeviceOps::hwptAlloc),
    GET_HW_INFO(Iommufd.IOMMU_GET_HW_INFO, Iommufd.IOMMU_HW_INFO_LAYOUT, "__reserved", DeviceOps::getHwInfo);

    /** A command's handler; returns the ioctl's return value (0) or throws with the errno. */
    @FunctionalInterface
    interface Handler {
        long handle(Ucmd ucmd);
    }

    final int cmd;
    final StructLayout layout;
    final long minSize;
    final Handler handler;

    IoctlOp(final int cmd, final StructLayout layout, final String lastMandatory, final Handler handler) {
        this.cmd = cmd;
        this.layout = layout;
        this.minSize = Iommufd.offsetofend(layout, lastMandatory);
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
