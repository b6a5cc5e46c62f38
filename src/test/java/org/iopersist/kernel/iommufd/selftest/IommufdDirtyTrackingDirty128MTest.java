package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty128M). */
class IommufdDirtyTrackingDirty128MTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(128L << 20, false);
    }
}
