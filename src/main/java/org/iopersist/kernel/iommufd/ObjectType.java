package org.iopersist.kernel.iommufd;

/** iommufd object types, in the order of {@code enum iommufd_object_type}. */
public enum ObjectType {
    ANY,
    DEVICE,
    HWPT_PAGING,
    HWPT_NESTED,
    IOAS,
    ACCESS
}
