package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty256M). */
class IommufdDirtyTrackingDirty256MTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(256L << 20, false);
    }
}
