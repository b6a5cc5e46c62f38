package org.iopersist.kernel.iommufd;

/** iommufd object types, in the order of {@code enum iommufd_object_type}. */
public enum ObjectType {
    ANY,
    DEVICE,
    HWPT_PAGING,
    HWPT_NESTED,
    IOAS,
    ACCESS,
    /** IOMMUFD_OBJ_SELFTEST: a mock device of IOMMU_TEST_OP_MOCK_DOMAIN (iommufd.selftest=1 only). */
    SELFTEST
}
