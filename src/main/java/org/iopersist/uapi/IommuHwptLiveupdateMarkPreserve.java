package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_hwpt_liveupdate_mark_preserve}, the argument of
 * {@code IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE} from the IOMMU live-update series (Samiullah Khawaja;
 * the layout of its newest posting, a u64 token: earlier ones named it
 * {@code iommu_hwpt_lu_set_preserve} with a u32 token). Marks a HWPT for preservation when its
 * iommufd is preserved in a LUO session; there is no unmark.
 *
 * <pre>
 *   0  u32      size
 *   4  u32      hwpt_id     the HWPT_PAGING to mark
 *   8  u64      hwpt_token  unique among this iommufd's marked HWPTs (else EADDRINUSE)
 * </pre>
 */
public final class IommuHwptLiveupdateMarkPreserve {
    public static final long SIZE_OFFSET = 0;
    public static final long HWPT_ID_OFFSET = 4;
    public static final long HWPT_TOKEN_OFFSET = 8;
    /** {@code sizeof(struct iommu_hwpt_liveupdate_mark_preserve)}. */
    public static final long SIZE = 16;
    /** {@code offsetofend(..., hwpt_token)}: the smallest size the ioctl accepts. */
    public static final long MIN_SIZE = HWPT_TOKEN_OFFSET + 8;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("hwpt_id"), ALIGNED_U64.withName("hwpt_token"))
            .withName("iommu_hwpt_liveupdate_mark_preserve");

    private IommuHwptLiveupdateMarkPreserve() {
    }

    public static int hwptId(final MemorySegment s) {
        return CType.u32(s, HWPT_ID_OFFSET);
    }

    public static void hwptId(final MemorySegment s, final int v) {
        CType.u32(s, HWPT_ID_OFFSET, v);
    }

    public static long hwptToken(final MemorySegment s) {
        return CType.u64(s, HWPT_TOKEN_OFFSET);
    }

    public static void hwptToken(final MemorySegment s, final long v) {
        CType.u64(s, HWPT_TOKEN_OFFSET, v);
    }
}
