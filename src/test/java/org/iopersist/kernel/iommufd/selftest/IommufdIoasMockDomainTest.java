package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_ioas, mock_domain). */
class IommufdIoasMockDomainTest extends IommufdIoasCases {
    @Override
    Variant variant() {
        return new Variant(1, 0);
    }
}
