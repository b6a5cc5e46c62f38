package org.iopersist.kernel.iommufd;

import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommu.DomainOps;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.IommuHwptLiveupdateMarkPreserve;
import org.iopersist.uapi.IommuHwptGetDirtyBitmap;
import org.iopersist.uapi.IommuHwptSetDirtyTracking;
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
    /** Allocated with IOMMU_HWPT_ALLOC_NEST_PARENT (hwpt_paging->nest_parent). */
    boolean nestParent;
    private final IommuCore iommu;
    /** Devices attached, guarded by the context's attach lock. */
    int devices;
    /** IOMMUFD_OBJ_LIVEUPDATE_MARK: marked for preservation under {@link #liveupdateToken}; guarded by the attach lock. */
    private boolean liveupdateMarked;
    private long liveupdateToken;
    /** liveupdate_preserved: its iommufd is preserved in a session (or it was restored by one); guarded by the attach lock. */
    private boolean liveupdatePreserved;

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
                final String tables = domain.ops().checkTables();
                return tables != null ? new ScrubResult(0, 0, 0, tables) : ioas.iopt.checkDomain(domain.ops());
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
            final int hwptFlags, final boolean auto) {
        if (hwptFlags != 0) {
            // iommufd_hwpt_paging_alloc's checks before the driver sees the flags.
            if ((hwptFlags & ~(Iommufd.IOMMU_HWPT_ALLOC_NEST_PARENT | Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)) != 0) {
                throw Ucmd.unsupported("HWPT_ALLOC flags 0x" + Integer.toHexString(hwptFlags));
            }
            if ((hwptFlags & Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING) != 0
                    && (ctx.iommu().hwInfo(dev).capabilities() & MockIommu.IOMMU_HW_CAP_DIRTY_TRACKING) == 0) {
                throw Ucmd.unsupported(dev + " cannot track dirty pages");
            }
        }
        final int id = ctx.objects.reserve();
        final IommuDomain domain;
        try {
            // Every HWPT of a persistent context is a persistent domain (tracked per domain by the driver).
            domain = hwptFlags != 0 ? ctx.iommu().allocUser(dev, hwptFlags)
                    : ctx.iommu().allocPaging(dev, flags | (ctx.persistent() ? IommuDomain.PERSISTENT : 0));
        } catch (RuntimeException e) {
            ctx.objects.abort(id);
            throw e;
        }
        final HwptPaging h = new HwptPaging(ioas, domain, auto, ctx.iommu());
        h.nestParent = (hwptFlags & Iommufd.IOMMU_HWPT_ALLOC_NEST_PARENT) != 0;
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
        final int dataLen = IommuHwptAlloc.dataLen(u.cmd);
        u.ctx.checkMutable("HWPT_ALLOC");
        synchronized (u.ctx.attachLock) {
            if (pt instanceof HwptPaging parent) {
                // iommufd_hwpt_nested_alloc: a nested HWPT needs driver data and a NEST_PARENT parent
                // made by hand; no driver here builds nested domains (no VT-d unit of the model nests).
                if (flags != 0 || dataLen == 0) {
                    throw Ucmd.unsupported("a nested HWPT needs data and no flags");
                }
                if (parent.auto || !parent.nestParent) {
                    throw new KernelException(Errno.EINVAL, "HWPT " + parent.id() + " is not a NEST_PARENT");
                }
                throw Ucmd.unsupported("nested HWPTs are not modelled");
            }
            if (!(pt instanceof Ioas ioas)) {
                throw new KernelException(Errno.EINVAL, pt.type() + " is not an IOAS or HWPT");
            }
            if (dataLen != 0) {
                throw Ucmd.unsupported("HWPT_ALLOC driver data for a paging HWPT (data_type " + IommuHwptAlloc.dataType(u.cmd) + ")");
            }
            final HwptPaging h = alloc(u.ctx, ioas, idev.dev, 0, flags, false);
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

    /**
     * IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE (iommufd_hwpt_liveupdate_mark_preserve): the HWPT_PAGING
     * {@code hwpt_id} (ENOENT) is marked with {@code hwpt_token}, which no marked HWPT of this
     * iommufd may hold already, this one included (EADDRINUSE). There is no unmark. Then, marking in
     * an iommufd preserved in a session (or restored from one, until it finishes) is EBUSY: the
     * series leaves it a TODO, and a mark made after the preserve would not be preserved.
     */
    static long liveupdateMarkPreserve(final Ucmd u) {
        final HwptPaging target = u.ctx.objects.getObject(IommuHwptLiveupdateMarkPreserve.hwptId(u.cmd), ObjectType.HWPT_PAGING,
                HwptPaging.class);
        try {
            final long token = IommuHwptLiveupdateMarkPreserve.hwptToken(u.cmd);
            synchronized (u.ctx.attachLock) {
                for (IommufdObject o : u.ctx.objects.objects()) {
                    if (o instanceof HwptPaging h && h.liveupdateMarked && h.liveupdateToken == token) {
                        throw new KernelException(Errno.EADDRINUSE, "hwpt_token 0x" + Long.toHexString(token) + " marks hwpt " + h.id());
                    }
                }
                if (u.ctx.liveupdatePreserved()) {
                    throw new KernelException(Errno.EBUSY, "iommufd is preserved in a live-update session: mark before preserving it");
                }
                target.liveupdateMarked = true;
                target.liveupdateToken = token;
            }
            return 0;
        } finally {
            u.ctx.objects.putObject(target);
        }
    }

    /** Whether the HWPT is marked for preservation (attach lock). */
    public boolean liveupdateMarked() {
        return liveupdateMarked;
    }

    /** Its token, if marked. */
    public long liveupdateToken() {
        return liveupdateToken;
    }

    /** Whether it is preserved now (its iommufd preserved in a session, or restored by one). */
    public boolean liveupdatePreserved() {
        return liveupdatePreserved;
    }

    /**
     * Its iommufd is preserved (on) or not (off) any more: while preserved the object is locked, so
     * DESTROY answers EBUSY (iommufd_lock_obj, put at unpreserve).
     */
    public void liveupdatePreserved(final boolean on) {
        if (on == liveupdatePreserved) {
            return;
        }
        liveupdatePreserved = on;
        if (on) {
            users.incrementAndGet(); // the preservation's, released by liveupdatePreserved(false)
        } else {
            users.decrementAndGet();
        }
    }

    /** A restored HWPT takes back its mark and token. */
    public void liveupdateMark(final long token) {
        liveupdateMarked = true;
        liveupdateToken = token;
    }

    /** iommufd_get_hwpt_paging: the HWPT_PAGING {@code id} with a short-term reference. @throws KernelException ENOENT */
    static HwptPaging get(final IommufdCtx ctx, final int id) {
        return ctx.objects.getObject(id, ObjectType.HWPT_PAGING, HwptPaging.class);
    }

    /**
     * iommufd_hwpt_set_dirty_tracking (IOMMU_HWPT_SET_DIRTY_TRACKING): EOPNOTSUPP for an unknown flag
     * or a domain without dirty tracking. Turning it on first clears every area's dirty bits, so
     * the next read starts from a clean snapshot (iopt_set_dirty_tracking).
     */
    static long setDirtyTracking(final Ucmd u) {
        final int flags = IommuHwptSetDirtyTracking.flags(u.cmd);
        if ((flags & ~Iommufd.IOMMU_HWPT_DIRTY_TRACKING_ENABLE) != 0) {
            throw Ucmd.unsupported("HWPT_SET_DIRTY_TRACKING flags 0x" + Integer.toHexString(flags));
        }
        final HwptPaging h = get(u.ctx, IommuHwptSetDirtyTracking.hwptId(u.cmd));
        try {
            final DomainOps.DirtyOps ops = h.domain.ops().dirtyOps();
            if (ops == null) {
                throw Ucmd.unsupported("HWPT " + h.id() + " was not allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING");
            }
            final boolean enable = (flags & Iommufd.IOMMU_HWPT_DIRTY_TRACKING_ENABLE) != 0;
            h.ioas.iopt.iovaLock.readLock().lock();
            try {
                if (enable) {
                    for (IoptArea a : h.ioas.iopt.areas().values()) {
                        ops.readAndClearDirty(a.start(), a.length(), false, null);
                    }
                }
                ops.setDirtyTracking(enable);
            } finally {
                h.ioas.iopt.iovaLock.readLock().unlock();
            }
            return 0;
        } finally {
            u.ctx.objects.putObject(h);
        }
    }

    /**
     * iommufd_hwpt_get_dirty_bitmap (IOMMU_HWPT_GET_DIRTY_BITMAP): checks the range
     * (iommufd_check_iova_range: EOVERFLOW on a wrap; EINVAL unless iova and end are aligned to the
     * IOAS and to page_size), then walks the areas covering it (EINVAL for a hole) through the
     * domain's read_and_clear_dirty, setting a bit per dirty page_size in the user's bitmap.
     */
    static long getDirtyBitmap(final Ucmd u) {
        final int flags = IommuHwptGetDirtyBitmap.flags(u.cmd);
        if ((flags & ~Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) != 0 || IommuHwptGetDirtyBitmap.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("HWPT_GET_DIRTY_BITMAP flags or __reserved");
        }
        final HwptPaging h = get(u.ctx, IommuHwptGetDirtyBitmap.hwptId(u.cmd));
        try {
            final long iova = IommuHwptGetDirtyBitmap.iova(u.cmd);
            final long length = IommuHwptGetDirtyBitmap.length(u.cmd);
            final long pageSize = IommuHwptGetDirtyBitmap.pageSize(u.cmd);
            final long last = iova + length - 1;
            if (Long.compareUnsigned(last, iova) < 0) {
                throw new KernelException(Errno.EOVERFLOW, String.format("iova=0x%x length=0x%x wraps", iova, length));
            }
            final IoPagetable iopt = h.ioas.iopt;
            iopt.iovaLock.readLock().lock();
            try {
                final long align = iopt.iovaAlignment();
                if (((iova & (align - 1)) | ((last + 1) & (align - 1))) != 0 || pageSize == 0
                        || ((iova & (pageSize - 1)) | ((last + 1) & (pageSize - 1))) != 0) {
                    throw new KernelException(Errno.EINVAL, String.format("iova=0x%x length=0x%x page_size=0x%x misaligned",
                            iova, length, pageSize));
                }
                final DomainOps.DirtyOps ops = h.domain.ops().dirtyOps();
                if (ops == null) {
                    throw Ucmd.unsupported("HWPT " + h.id() + " has no dirty tracking");
                }
                // iopt_for_each_contig_area: the areas must cover the range without a hole.
                final List<IoptArea> areas = iopt.areasIn(iova, last);
                long next = iova;
                boolean covered = false;
                for (IoptArea a : areas) {
                    if (Long.compareUnsigned(a.start(), next) > 0) {
                        break;
                    }
                    if (Long.compareUnsigned(a.last(), last) >= 0) {
                        covered = true;
                        break;
                    }
                    next = a.last() + 1;
                }
                if (!covered) {
                    throw new KernelException(Errno.EINVAL, String.format("[0x%x, 0x%x] is not covered by areas", iova, last));
                }
                final IovaBitmap bitmap = new IovaBitmap(iova, length, pageSize);
                final boolean noClear = (flags & Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) != 0;
                long cur = iova;
                for (IoptArea a : areas) {
                    final long end = Long.compareUnsigned(a.last(), last) < 0 ? a.last() : last;
                    ops.readAndClearDirty(cur, end - cur + 1, noClear, bitmap::set);
                    if (end == last) {
                        break;
                    }
                    cur = end + 1;
                }
                bitmap.writeTo(u.process, IommuHwptGetDirtyBitmap.data(u.cmd));
                return 0;
            } finally {
                iopt.iovaLock.readLock().unlock();
            }
        } finally {
            u.ctx.objects.putObject(h);
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
