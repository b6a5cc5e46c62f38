package org.iopersist.uapi;

import static org.iopersist.uapi.CType.S32;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_device_bind_iommufd}, the argument of {@code VFIO_DEVICE_BIND_IOMMUFD}: binds the
 * device to an iommufd, which answers the device's id in it.
 *
 * <pre>
 *   0  u32      argsz
 *   4  u32      flags
 *   8  s32      iommufd
 *  12  u32      out_devid
 * </pre>
 *
 * Later kernels append {@code __aligned_u64 token_uuid_ptr} at 16 (valid with
 * {@code VFIO_DEVICE_BIND_FLAG_TOKEN}); this model accepts no flags, so it copies {@code MIN_SIZE}.
 */
public final class VfioDeviceBindIommufd {
    public static final long ARGSZ_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long IOMMUFD_OFFSET = 8;
    public static final long OUT_DEVID_OFFSET = 12;
    /** {@code sizeof(struct vfio_device_bind_iommufd)}. */
    public static final long SIZE = 16;
    /**
     * {@code offsetofend(struct vfio_device_bind_iommufd, out_devid)}:
     * VFIO's {@code minsz}, the bytes the kernel copies.
     */
    public static final long MIN_SIZE = OUT_DEVID_OFFSET + 4;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), S32.withName("iommufd"),
            U32.withName("out_devid")).withName("vfio_device_bind_iommufd");

    private VfioDeviceBindIommufd() {
    }

    /** {@code iommufd}: the iommufd to bind to. */
    public static int iommufd(final MemorySegment s) {
        return CType.u32(s, IOMMUFD_OFFSET);
    }

    /** Sets {@code iommufd}. */
    public static void iommufd(final MemorySegment s, final int v) {
        CType.u32(s, IOMMUFD_OFFSET, v);
    }

    /** {@code out_devid}: the device's id in that iommufd (out). */
    public static int outDevid(final MemorySegment s) {
        return CType.u32(s, OUT_DEVID_OFFSET);
    }

    /** Sets {@code out_devid}. */
    public static void outDevid(final MemorySegment s, final int v) {
        CType.u32(s, OUT_DEVID_OFFSET, v);
    }
}
