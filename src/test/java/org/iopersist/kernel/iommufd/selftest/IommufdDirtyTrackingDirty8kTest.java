package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty8k). */
class IommufdDirtyTrackingDirty8kTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(8L * 1024, false);
    }
}
