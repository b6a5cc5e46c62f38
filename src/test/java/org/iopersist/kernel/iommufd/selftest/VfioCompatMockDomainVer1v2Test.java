package org.iopersist.kernel.iommufd.selftest;

import org.iopersist.uapi.Vfio;

/** FIXTURE_VARIANT_ADD(vfio_compat_mock_domain, Ver1v2). */
class VfioCompatMockDomainVer1v2Test extends VfioCompatMockDomainCases {
    @Override
    int version() {
        return Vfio.VFIO_TYPE1v2_IOMMU;
    }
}
