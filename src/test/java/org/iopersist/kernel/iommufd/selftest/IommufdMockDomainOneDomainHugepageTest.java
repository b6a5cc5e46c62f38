package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_mock_domain, one_domain_hugepage). */
class IommufdMockDomainOneDomainHugepageTest extends IommufdMockDomainCases {
    @Override
    Variant variant() {
        return new Variant(1, true);
    }
}
