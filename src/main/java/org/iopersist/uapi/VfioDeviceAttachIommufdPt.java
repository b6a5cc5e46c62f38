package org.iopersist.uapi;

import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct vfio_device_attach_iommufd_pt}, the argument of {@code VFIO_DEVICE_ATTACH_IOMMUFD_PT}:
 * attaches (or replaces) the bound device's page table.
 *
 * <pre>
 *   0  u32      argsz
 *   4  u32      flags
 *   8  u32      pt_id
 * </pre>
 *
 * Later kernels append {@code __u32 pasid} at 12 (valid with {@code VFIO_DEVICE_ATTACH_PASID});
 * this model accepts no flags, so it copies {@code MIN_SIZE}.
 */
public final class VfioDeviceAttachIommufdPt {
    public static final long ARGSZ_OFFSET = 0;
    public static final long FLAGS_OFFSET = 4;
    public static final long PT_ID_OFFSET = 8;
    /** {@code sizeof(struct vfio_device_attach_iommufd_pt)}. */
    public static final long SIZE = 12;
    /**
     * {@code offsetofend(struct vfio_device_attach_iommufd_pt, pt_id)}:
     * VFIO's {@code minsz}, the bytes the kernel copies.
     */
    public static final long MIN_SIZE = PT_ID_OFFSET + 4;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"),
            U32.withName("pt_id")).withName("vfio_device_attach_iommufd_pt");

    private VfioDeviceAttachIommufdPt() {
    }

    /** {@code pt_id}: in: an IOAS or HWPT id; out: the HWPT attached. */
    public static int ptId(final MemorySegment s) {
        return CType.u32(s, PT_ID_OFFSET);
    }

    /** Sets {@code pt_id}. */
    public static void ptId(final MemorySegment s, final int v) {
        CType.u32(s, PT_ID_OFFSET, v);
    }
}
