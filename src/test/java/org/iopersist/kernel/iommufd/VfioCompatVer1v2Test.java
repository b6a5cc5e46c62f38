package org.iopersist.kernel.iommufd;

import org.iopersist.uapi.Vfio;

/** FIXTURE_VARIANT_ADD(vfio_compat_mock_domain, Ver1v2), on a VT-d domain. */
class VfioCompatVer1v2Test extends VfioCompatDomainCases {
    @Override
    int version() {
        return Vfio.VFIO_TYPE1v2_IOMMU;
    }
}
