package org.iopersist.kernel.iommufd;

import org.iopersist.kernel.iommu.IommuDevice;

/**
 * IOMMUFD_OBJ_SELFTEST ({@code struct selftest_obj}, TYPE_IDEV): a mock device IOMMU_TEST_OP_MOCK_DOMAIN
 * created, bound to the context and attached. Userspace destroys this object, not the device
 * object, to take the device away: destroy detaches, unbinds and removes the device
 * (iommufd_selftest_destroy).
 */
public final class SelftestObject extends IommufdObject {
    final MockIommu mock;
    final IommuDevice dev;
    final IommufdDevice idev;

    SelftestObject(final MockIommu mock, final IommuDevice dev, final IommufdDevice idev) {
        super(ObjectType.SELFTEST);
        this.mock = mock;
        this.dev = dev;
        this.idev = idev;
    }

    @Override
    void destroy() {
        synchronized (idev.ctx.attachLock) {
            IommufdDevice.detachLocked(idev);
        }
        IommufdDevice.unbind(idev);
        mock.destroyDevice(dev);
    }
}
