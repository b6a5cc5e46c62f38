package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty128k). */
class IommufdDirtyTrackingDirty128kTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(128L * 1024, false);
    }
}
