package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty256k). */
class IommufdDirtyTrackingDirty256kTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(256L * 1024, false);
    }
}
