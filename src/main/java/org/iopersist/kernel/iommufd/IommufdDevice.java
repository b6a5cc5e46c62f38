package org.iopersist.kernel.iommufd;

import org.iopersist.kernel.iommu.IommuDevice;

/**
 * IOMMUFD_OBJ_DEVICE: a device bound to this context by its VFIO cdev. The binding driver holds
 * a reference from bind to unbind, so userspace can never DESTROY it; an attach holds another.
 */
public final class IommufdDevice extends IommufdObject {
    final IommufdCtx ctx;
    final IommuDevice dev;
    /** The HWPT it translates through, or null when blocked; guarded by the context's attach lock. */
    HwptPaging hwpt;
    /** Re-hydrated after a live update and not yet adopted by a VFIO bind; guarded by the attach lock. */
    boolean restored;

    IommufdDevice(final IommufdCtx ctx, final IommuDevice dev) {
        super(ObjectType.DEVICE);
        this.ctx = ctx;
        this.dev = dev;
    }

    public IommuDevice device() {
        return dev;
    }

    @Override
    void destroy() {
        // Unbind detached it first; nothing to undo here.
    }
}
