package org.iopersist.kernel.iommufd;

import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.Iommufd;

/**
 * IOMMUFD_OBJ_HWPT_PAGING ({@code hw_pagetable.c}): a paging domain of the iommu core that mirrors
 * one IOAS, and HWPT_ALLOC. It holds a reference on its IOAS from allocation to destroy; every
 * device attached holds one on it. An auto HWPT (made by attaching a device to an IOAS) goes away
 * with its last device.
 */
public final class HwptPaging extends IommufdObject implements IoasDomain {
    final Ioas ioas;
    final IommuDomain domain;
    final boolean auto;
    private final IommuCore iommu;
    /** Devices attached, guarded by the context's attach lock. */
    int devices;

    private HwptPaging(final Ioas ioas, final IommuDomain domain, final boolean auto, final IommuCore iommu) {
        super(ObjectType.HWPT_PAGING);
        this.ioas = ioas;
        this.domain = domain;
        this.auto = auto;
        this.iommu = iommu;
    }

    /** What a scrub of an adopted domain found: leaves and bytes walked, and the first difference or null. */
    public record ScrubResult(long leaves, long bytes, long areaBytes, String mismatch) {
        public boolean ok() {
            return mismatch == null;
        }
    }

    /**
     * The full check of this HWPT's domain against its IOAS (see {@link IoPagetable#checkDomain}),
     * with maps and unmaps held off while it runs.
     */
    public ScrubResult scrub() {
        ioas.iopt.domainsLock.readLock().lock();
        try {
            ioas.iopt.iovaLock.readLock().lock();
            try {
                return ioas.iopt.checkDomain(domain.ops());
            } finally {
                ioas.iopt.iovaLock.readLock().unlock();
            }
        } finally {
            ioas.iopt.domainsLock.readLock().unlock();
        }
    }

    public IommuDomain domain() {
        return domain;
    }

    /** The IOAS this HWPT mirrors. */
    public Ioas ioas() {
        return ioas;
    }

    /** Whether attaching a device to the IOAS made it (it goes with its last device). */
    public boolean auto() {
        return auto;
    }

    /**
     * iommufd_hwpt_paging_alloc: a HWPT_PAGING over {@code ioas}, its id reserved but not published;
     * the caller finalizes it ({@link ObjectTable#finalizeObject}) or undoes it
     * ({@link ObjectTable#abortAndDestroy}). Takes a reference on the IOAS, released by {@link #destroy}.
     */
    static HwptPaging alloc(final IommufdCtx ctx, final Ioas ioas, final IommuDevice dev, final int flags,
            final boolean auto) {
        final int id = ctx.objects.reserve();
        final IommuDomain domain;
        try {
            // Every HWPT of a persistent context is a persistent domain (tracked per domain by the driver).
            domain = ctx.iommu().allocPaging(dev, flags | (ctx.persistent() ? IommuDomain.PERSISTENT : 0));
        } catch (RuntimeException e) {
            ctx.objects.abort(id);
            throw e;
        }
        final HwptPaging h = new HwptPaging(ioas, domain, auto, ctx.iommu());
        h.setId(id);
        try {
            ioas.iopt.addDomain(h);
        } catch (RuntimeException e) {
            ctx.iommu().free(domain);
            ctx.objects.abort(id);
            throw e;
        }
        ioas.users.incrementAndGet(); // released by destroy()
        return h;
    }

    /** iommufd_hwpt_paging_destroy: the IOAS stops mirroring into the domain, which is freed. */
    @Override
    void destroy() {
        ioas.iopt.removeDomain(this);
        ioas.users.decrementAndGet();
        iommu.free(domain);
    }

    // ------------------------------------------------------------------ ioctls

    /** iommufd_hwpt_alloc (IOMMU_HWPT_ALLOC): a paging HWPT over an IOAS; nesting and dirty tracking are not modelled. */
    static long allocIoctl(final Ucmd u) {
        if (IommuHwptAlloc.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("HWPT_ALLOC __reserved");
        }
        final int dataType = IommuHwptAlloc.dataType(u.cmd);
        final int dataLen = IommuHwptAlloc.dataLen(u.cmd);
        if ((dataType == Iommufd.IOMMU_HWPT_DATA_NONE) != (dataLen == 0)) {
            throw new KernelException(Errno.EINVAL, "data_type " + dataType + " with data_len " + dataLen);
        }
        final IommufdDevice idev = IommufdDevice.get(u.ctx, IommuHwptAlloc.devId(u.cmd));
        try {
            final IommufdObject pt;
            try {
                pt = u.ctx.objects.getObject(IommuHwptAlloc.ptId(u.cmd), ObjectType.ANY, IommufdObject.class);
            } catch (KernelException e) {
                throw new KernelException(Errno.EINVAL, "pt_id " + IommuHwptAlloc.ptId(u.cmd) + " names nothing");
            }
            try {
                return alloc(u, idev, pt);
            } finally {
                u.ctx.objects.putObject(pt);
            }
        } finally {
            u.ctx.objects.putObject(idev);
        }
    }

    private static long alloc(final Ucmd u, final IommufdDevice idev, final IommufdObject pt) {
        final int flags = IommuHwptAlloc.flags(u.cmd);
        final int dataType = IommuHwptAlloc.dataType(u.cmd);
        u.ctx.checkMutable("HWPT_ALLOC");
        synchronized (u.ctx.attachLock) {
            if (pt instanceof HwptPaging) {
                throw new KernelException(Errno.EINVAL, "nested HWPTs need a NEST_PARENT parent; none exist here");
            }
            if (!(pt instanceof Ioas ioas)) {
                throw new KernelException(Errno.EINVAL, pt.type() + " is not an IOAS or HWPT");
            }
            if (flags != 0) {
                throw Ucmd.unsupported("HWPT_ALLOC flags 0x" + Integer.toHexString(flags) + " (no nesting, no dirty tracking)");
            }
            if (dataType != Iommufd.IOMMU_HWPT_DATA_NONE) {
                throw Ucmd.unsupported("HWPT_ALLOC data_type " + dataType);
            }
            final HwptPaging h = alloc(u.ctx, ioas, idev.dev, 0, false);
            IommuHwptAlloc.outHwptId(u.cmd, h.id());
            try {
                u.respond();
            } catch (KernelException e) {
                u.ctx.objects.abortAndDestroy(h.id(), h);
                throw e;
            }
            u.ctx.objects.finalizeObject(h.id(), h);
            return 0;
        }
    }

    // ------------------------------------------------------------------ IoasDomain

    @Override
    public void map(final long iova, final long phys, final long length, final int prot) {
        domain.map(iova, phys, length, prot);
    }

    @Override
    public void unmap(final long iova, final long length) {
        domain.unmap(iova, length);
    }

    @Override
    public long pgsizeBitmap() {
        return domain.pgsizeBitmap();
    }

    /** What lies outside the domain's aperture, as iopt_table_add_domain reserves it. */
    @Override
    public List<IovaInterval> reservedRanges() {
        final List<IovaInterval> out = new java.util.ArrayList<>(2);
        final long start = domain.apertureStart();
        if (start != 0) {
            out.add(new IovaInterval(0, start - 1));
        }
        final long last = domain.apertureLast();
        if (last != -1L) {
            out.add(new IovaInterval(last + 1, -1L));
        }
        return out;
    }

    // ------------------------------------------------------------------ live update

    /**
     * A HWPT re-hydrated from a handover into {@code ctx} under its old {@code id}: it stands for the
     * restored domain {@code domainKey}, whose tables already map every area of {@code ioas}. Takes a
     * reference on the IOAS, released by {@link #destroy}.
     */
    public static HwptPaging restore(final IommufdCtx ctx, final int id, final Ioas ioas, final long domainKey,
            final boolean auto) {
        final HwptPaging h = new HwptPaging(ioas, ctx.iommu().restoredDomain(domainKey), auto, ctx.iommu());
        ioas.iopt.adoptDomain(h);
        ioas.users.incrementAndGet(); // released by destroy()
        ctx.objects.insertRestored(id, h);
        return h;
    }
}
