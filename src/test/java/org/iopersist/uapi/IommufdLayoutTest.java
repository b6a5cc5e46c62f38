package org.iopersist.uapi;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The uAPI structs byte for byte as {@code include/uapi/linux/iommufd.h} lays them out (sizes from
 * the C definitions with {@code __aligned_u64}), and the ioctl numbers as {@code _IO(';', nr)}.
 */
class IommufdLayoutTest {
    @Test
    void ioctlNumbersAreIoSemicolonNr() {
        assertEquals(0x3b80, Iommufd.IOMMU_DESTROY);
        assertEquals(0x3b81, Iommufd.IOMMU_IOAS_ALLOC);
        assertEquals(0x3b84, Iommufd.IOMMU_IOAS_IOVA_RANGES);
        assertEquals(0x3b85, Iommufd.IOMMU_IOAS_MAP);
        assertEquals(0x3b86, Iommufd.IOMMU_IOAS_UNMAP);
        assertEquals(0x3b87, Iommufd.IOMMU_OPTION);
        assertEquals(0x3b89, Iommufd.IOMMU_HWPT_ALLOC);
        assertEquals(0x3b8a, Iommufd.IOMMU_GET_HW_INFO);
        assertEquals(0x3b8f, Iommufd.IOMMU_IOAS_MAP_FILE);
    }

    @Test
    void structSizesAndOffsets() {
        assertEquals(8, Iommufd.IOMMU_DESTROY_LAYOUT.byteSize());
        assertEquals(12, Iommufd.IOMMU_IOAS_ALLOC_LAYOUT.byteSize());
        assertEquals(16, Iommufd.IOMMU_IOVA_RANGE_LAYOUT.byteSize());
        assertEquals(32, Iommufd.IOMMU_IOAS_IOVA_RANGES_LAYOUT.byteSize());
        assertEquals(24, Iommufd.IOMMU_IOAS_ALLOW_IOVAS_LAYOUT.byteSize());
        assertEquals(40, Iommufd.IOMMU_IOAS_MAP_LAYOUT.byteSize());
        assertEquals(40, Iommufd.IOMMU_IOAS_MAP_FILE_LAYOUT.byteSize());
        assertEquals(40, Iommufd.IOMMU_IOAS_COPY_LAYOUT.byteSize());
        assertEquals(24, Iommufd.IOMMU_IOAS_UNMAP_LAYOUT.byteSize());
        assertEquals(24, Iommufd.IOMMU_OPTION_LAYOUT.byteSize());
        assertEquals(48, Iommufd.IOMMU_HWPT_ALLOC_LAYOUT.byteSize());
        assertEquals(40, Iommufd.IOMMU_HW_INFO_LAYOUT.byteSize());
        assertEquals(24, Iommufd.IOMMU_HW_INFO_VTD_LAYOUT.byteSize());
        assertEquals(24, Iommufd.offsetof(Iommufd.IOMMU_IOAS_MAP_LAYOUT, "length"));
        assertEquals(12, Iommufd.offsetof(Iommufd.IOMMU_IOAS_MAP_FILE_LAYOUT, "fd"));
        assertEquals(8, Iommufd.offsetof(Iommufd.IOMMU_IOAS_UNMAP_LAYOUT, "iova"));
        assertEquals(10, Iommufd.offsetof(Iommufd.IOMMU_OPTION_LAYOUT, "__reserved"));
        assertEquals(29, Iommufd.offsetof(Iommufd.IOMMU_HW_INFO_LAYOUT, "__reserved"));
        assertEquals(40, Iommufd.offsetof(Iommufd.IOMMU_HWPT_ALLOC_LAYOUT, "fault_id"));
        // Minimum sizes of the dispatch table (offsetofend of the last mandatory field).
        assertEquals(8, Iommufd.offsetofend(Iommufd.IOMMU_DESTROY_LAYOUT, "id"));
        assertEquals(32, Iommufd.offsetofend(Iommufd.IOMMU_IOAS_IOVA_RANGES_LAYOUT, "out_iova_alignment"));
        assertEquals(40, Iommufd.offsetofend(Iommufd.IOMMU_IOAS_MAP_LAYOUT, "iova"));
        assertEquals(24, Iommufd.offsetofend(Iommufd.IOMMU_HWPT_ALLOC_LAYOUT, "__reserved"));
    }
}
