package org.iopersist.kernel.iommufd;

import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;

/** An open {@code /dev/iommu}: its ioctls go to the context, its release destroys everything it owns. */
public final class IommufdFile implements KernelFile {
    private final IommufdCtx ctx;

    public IommufdFile(final IommufdCtx ctx) {
        this.ctx = ctx;
    }

    public IommufdCtx ctx() {
        return ctx;
    }

    @Override
    public long ioctl(final UserProcess process, final int cmd, final long arg) {
        return ctx.ioctl(process, cmd, arg);
    }

    @Override
    public void release() {
        ctx.release();
    }

    @Override
    public String describe() {
        return org.iopersist.uapi.Iommufd.DEV_PATH;
    }
}
