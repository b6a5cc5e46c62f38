package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_ioas, mock_domain_limit). */
class IommufdIoasMockDomainLimitTest extends IommufdIoasCases {
    @Override
    Variant variant() {
        return new Variant(1, 16);
    }
}
