package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_ioas, no_domain). */
class IommufdIoasNoDomainTest extends IommufdIoasCases {
    @Override
    Variant variant() {
        return new Variant(0, 0);
    }
}
