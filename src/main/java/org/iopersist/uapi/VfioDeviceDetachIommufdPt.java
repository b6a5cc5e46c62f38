package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_device_detach_iommufd_pt}, the argument of {@code VFIO_DEVICE_DETACH_IOMMUFD_PT}:
 * blocks the bound device's DMA again.
 *
 * <pre>
 *   0  u32      argsz
 *   4  u32      flags
 * </pre>
 *
 * Later kernels append {@code __u32 pasid} at 8 (valid with {@code VFIO_DEVICE_DETACH_PASID});
 * this model accepts no flags, so it copies {@code MIN_SIZE}.
 */
public final class VfioDeviceDetachIommufdPt {
    public static final long ARGSZ_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    /** {@code sizeof(struct vfio_device_detach_iommufd_pt)}. */
    public static final long SIZE = 8;
    /**
     * {@code offsetofend(struct vfio_device_detach_iommufd_pt, flags)}:
     * VFIO's {@code minsz}, the bytes the kernel copies.
     */
    public static final long MIN_SIZE = FLAGS_OFFSET + 4;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags")).withName("vfio_device_detach_iommufd_pt");

    private VfioDeviceDetachIommufdPt() {
    }
}
