package org.iopersist.kernel.iommu;

/**
 * What IOMMU_GET_HW_INFO reports for a device: the driver's info type ({@code IOMMU_HW_INFO_TYPE_*}),
 * its struct as bytes in the uAPI layout, and {@code IOMMU_HW_CAP_*} bits.
 */
public record HwInfo(int type, byte[] data, long capabilities) {
    public HwInfo {
        data = data.clone();
    }

    @Override
    public byte[] data() {
        return data.clone();
    }
}
