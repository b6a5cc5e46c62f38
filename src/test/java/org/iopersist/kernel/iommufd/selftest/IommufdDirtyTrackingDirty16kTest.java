package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty16k). */
class IommufdDirtyTrackingDirty16kTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(16L * 1024, false);
    }
}
