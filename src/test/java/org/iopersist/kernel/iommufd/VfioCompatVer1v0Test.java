package org.iopersist.kernel.iommufd;

import org.iopersist.uapi.Vfio;

/** FIXTURE_VARIANT_ADD(vfio_compat_mock_domain, Ver1v0), on a VT-d domain: large pages off, so unmap can cut. */
class VfioCompatVer1v0Test extends VfioCompatDomainCases {
    @Override
    int version() {
        return Vfio.VFIO_TYPE1_IOMMU;
    }
}
