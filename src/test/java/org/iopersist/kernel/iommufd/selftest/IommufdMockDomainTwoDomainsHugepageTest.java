package org.iopersist.kernel.iommufd.selftest;

/** FIXTURE_VARIANT_ADD(iommufd_mock_domain, two_domains_hugepage). */
class IommufdMockDomainTwoDomainsHugepageTest extends IommufdMockDomainCases {
    @Override
    Variant variant() {
        return new Variant(2, true);
    }
}
