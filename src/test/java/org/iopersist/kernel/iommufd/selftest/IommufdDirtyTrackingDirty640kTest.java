package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty640k). */
class IommufdDirtyTrackingDirty640kTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(640L * 1024, false);
    }
}
