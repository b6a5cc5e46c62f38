package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, domain_dirty128M_huge). */
class IommufdDirtyTrackingDirty128MHugeTest extends IommufdDirtyTrackingCases {
    @Override
    Variant variant() {
        return new Variant(128L << 20, true);
    }
}
