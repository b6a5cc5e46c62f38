package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_iova_range}: one element of the {@code allowed_iovas} arrays of
 * {@code IOMMU_IOAS_IOVA_RANGES} and {@code IOMMU_IOAS_ALLOW_IOVAS}, in user memory; element
 * {@code i} is at {@code allowed_iovas + i * SIZE}.
 *
 * <pre>
 *   0  u64      start
 *   8  u64      last
 * </pre>
 */
public final class IommuIovaRange {
    public static final long START_OFFSET = 0;
    public static final long LAST_OFFSET = 8;
    /** {@code sizeof(struct iommu_iova_range)}. */
    public static final long SIZE = 16;

    /** The C layout, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            ALIGNED_U64.withName("start"), ALIGNED_U64.withName("last")).withName("iommu_iova_range");

    private IommuIovaRange() {
    }

    /** {@code start}: first IOVA. */
    public static long start(final MemorySegment s) {
        return CType.u64(s, START_OFFSET);
    }

    /** Sets {@code start}. */
    public static void start(final MemorySegment s, final long v) {
        CType.u64(s, START_OFFSET, v);
    }

    /** {@code last}: inclusive last IOVA. */
    public static long last(final MemorySegment s) {
        return CType.u64(s, LAST_OFFSET);
    }

    /** Sets {@code last}. */
    public static void last(final MemorySegment s, final long v) {
        CType.u64(s, LAST_OFFSET, v);
    }
}
