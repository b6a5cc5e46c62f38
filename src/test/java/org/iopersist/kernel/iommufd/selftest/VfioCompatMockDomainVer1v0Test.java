package org.iopersist.kernel.iommufd.selftest;

import org.iopersist.uapi.Vfio;

/** FIXTURE_VARIANT_ADD(vfio_compat_mock_domain, Ver1v0). */
class VfioCompatMockDomainVer1v0Test extends VfioCompatMockDomainCases {
    @Override
    int version() {
        return Vfio.VFIO_TYPE1_IOMMU;
    }
}
