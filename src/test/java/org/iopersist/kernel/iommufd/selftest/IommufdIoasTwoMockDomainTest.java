package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_ioas, two_mock_domain). */
class IommufdIoasTwoMockDomainTest extends IommufdIoasCases {
    @Override
    Variant variant() {
        return new Variant(2, 0);
    }
}
