package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommu.HwInfo;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwInfo;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.Iommufd;

/**
 * Devices in an iommufd context (Linux's {@code device.c} and {@code hw_pagetable.c}): bind and
 * unbind for VFIO, attach, replace and detach, HWPT_ALLOC and GET_HW_INFO.
 *
 * <p>Reference rules: the binding holds one {@code users} on the device object, an attach one more;
 * each attached device holds one on its HWPT; a HWPT holds one on its IOAS. An auto HWPT is
 * destroyed when its last device leaves.
 */
public final class DeviceOps {
    private DeviceOps() {
    }

    /** iommufd_device_bind: a new DEVICE object; the context stays alive until unbind. */
    public static IommufdDevice bind(final IommufdCtx ctx, final IommuDevice dev) {
        ctx.iommu();
        synchronized (ctx.attachLock) {
            for (IommufdObject o : ctx.objects.objects()) {
                if (o instanceof IommufdDevice d && d.restored && d.dev.equals(dev)) {
                    // The restarted VMM binds its device again: it gets the restored object, still attached.
                    d.restored = false;
                    return d;
                }
            }
        }
        // A device restored into another context (held by the kernel, or reopened but not yet
        // bound again) is that context's until it is bound there or finish frees it.
        ctx.iommu().claimDmaOwner(dev, ctx);
        final int id;
        try {
            id = ctx.objects.reserve();
        } catch (RuntimeException e) {
            ctx.iommu().releaseDmaOwner(dev, ctx);
            throw e;
        }
        final IommufdDevice idev = new IommufdDevice(ctx, dev);
        idev.users.incrementAndGet(); // the binding driver's reference
        ctx.objects.finalizeObject(id, idev);
        ctx.get();
        return idev;
    }

    /** iommufd_device_unbind: detaches, destroys the object, releases the context. */
    public static void unbind(final IommufdDevice idev) {
        final IommufdCtx ctx = idev.ctx;
        ctx.abortFinalizeIfFrozen("lost device " + idev.dev);
        synchronized (ctx.attachLock) {
            detachLocked(idev);
            idev.users.decrementAndGet();
            ctx.objects.tryDestroy(idev);
        }
        ctx.iommu().releaseDmaOwner(idev.dev, ctx);
        ctx.put();
    }

    /**
     * iommufd_device_attach / replace: {@code ptId} names an IOAS (an auto HWPT is found or made)
     * or a HWPT_PAGING. Returns the HWPT's id.
     */
    public static int attach(final IommufdDevice idev, final int ptId) {
        final IommufdCtx ctx = idev.ctx;
        ctx.checkMutable("attach");
        synchronized (ctx.attachLock) {
            final IommufdObject pt = ctx.objects.find(ptId);
            if (pt == null) {
                throw new KernelException(Errno.ENOENT, "no object with id " + ptId);
            }
            return switch (pt) {
                case HwptPaging h -> {
                    setHwpt(idev, h);
                    yield h.id();
                }
                case Ioas ioas -> attachIoas(idev, ioas);
                default -> throw new KernelException(Errno.EINVAL, pt.type() + " " + ptId + " is not a page table");
            };
        }
    }

    private static int attachIoas(final IommufdDevice idev, final Ioas ioas) {
        final IommufdCtx ctx = idev.ctx;
        for (IommufdObject o : ctx.objects.objects()) {
            if (o instanceof HwptPaging h && h.auto && h.ioas == ioas) {
                if (h == idev.hwpt) {
                    return h.id();
                }
                try {
                    setHwpt(idev, h);
                    return h.id();
                } catch (KernelException e) {
                    if (e.errno() != Errno.EINVAL) {
                        throw e;
                    }
                    // Incompatible (another unit, another geometry): try the next, then make one.
                }
            }
        }
        final HwptPaging h = newHwpt(ctx, ioas, idev.dev, 0, true);
        try {
            setHwpt(idev, h);
        } catch (RuntimeException e) {
            ctx.objects.tryDestroy(h); // nothing but the table holds it yet
            throw e;
        }
        return h.id();
    }

    /** Allocates a HWPT_PAGING over {@code ioas} and publishes it (users: the table's only). */
    private static HwptPaging newHwpt(final IommufdCtx ctx, final Ioas ioas, final IommuDevice dev, final int flags,
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
        try {
            ioas.addDomain(h);
        } catch (RuntimeException e) {
            ctx.iommu().free(domain);
            ctx.objects.abort(id);
            throw e;
        }
        ioas.users.incrementAndGet();
        ctx.objects.finalizeObject(id, h);
        return h;
    }

    /** Moves {@code idev} onto {@code h}: reserve its regions there, switch the domain, move references. */
    private static void setHwpt(final IommufdDevice idev, final HwptPaging h) {
        final HwptPaging old = idev.hwpt;
        if (old == h) {
            return;
        }
        final boolean sameIoas = old != null && old.ioas == h.ioas;
        if (!sameIoas) {
            final List<IovaRange> ranges = new ArrayList<>();
            for (ReservedRegion r : h.domain.reservedRegions()) {
                ranges.add(new IovaRange(r.start(), r.last()));
            }
            h.ioas.reserveForDevice(idev, ranges);
        }
        try {
            if (old == null) {
                idev.ctx.iommu().attach(idev.dev, h.domain);
            } else {
                idev.ctx.iommu().replace(idev.dev, h.domain);
            }
        } catch (RuntimeException e) {
            if (!sameIoas) {
                h.ioas.unreserveForDevice(idev);
            }
            throw e;
        }
        h.users.incrementAndGet();
        h.devices++;
        idev.hwpt = h;
        if (old == null) {
            idev.users.incrementAndGet();
        } else {
            release(idev, old, !sameIoas);
        }
    }

    /** Blocks the device and drops what its attach held. */
    public static void detach(final IommufdDevice idev) {
        idev.ctx.checkMutable("detach");
        synchronized (idev.ctx.attachLock) {
            detachLocked(idev);
        }
    }

    private static void detachLocked(final IommufdDevice idev) {
        final HwptPaging old = idev.hwpt;
        if (old == null) {
            return;
        }
        idev.ctx.iommu().detach(idev.dev);
        idev.hwpt = null;
        idev.users.decrementAndGet();
        release(idev, old, true);
    }

    private static void release(final IommufdDevice idev, final HwptPaging old, final boolean unreserve) {
        if (unreserve) {
            old.ioas.unreserveForDevice(idev);
        }
        old.devices--;
        old.users.decrementAndGet();
        if (old.auto && old.devices == 0) {
            idev.ctx.objects.tryDestroy(old);
        }
    }

    // ------------------------------------------------------------------ ioctls

    /** IOMMU_HWPT_ALLOC: a paging HWPT over an IOAS; nesting and dirty tracking are not modelled. */
    static long hwptAlloc(final Ucmd u) {
        if (IommuHwptAlloc.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("HWPT_ALLOC __reserved");
        }
        final int dataType = IommuHwptAlloc.dataType(u.cmd);
        final int dataLen = IommuHwptAlloc.dataLen(u.cmd);
        if ((dataType == Iommufd.IOMMU_HWPT_DATA_NONE) != (dataLen == 0)) {
            throw new KernelException(Errno.EINVAL, "data_type " + dataType + " with data_len " + dataLen);
        }
        final IommufdDevice idev = u.ctx.objects.get(IommuHwptAlloc.devId(u.cmd), ObjectType.DEVICE, IommufdDevice.class);
        final IommufdObject pt = u.ctx.objects.find(IommuHwptAlloc.ptId(u.cmd));
        if (pt == null) {
            throw new KernelException(Errno.EINVAL, "pt_id " + IommuHwptAlloc.ptId(u.cmd) + " names nothing");
        }
        final int flags = IommuHwptAlloc.flags(u.cmd);
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
            final HwptPaging h = newHwpt(u.ctx, ioas, idev.dev, 0, false);
            IommuHwptAlloc.outHwptId(u.cmd, h.id());
            try {
                u.respond();
            } catch (KernelException e) {
                u.ctx.objects.tryDestroy(h);
                throw e;
            }
            return 0;
        }
    }

    /** IOMMU_GET_HW_INFO: the driver's struct, truncated or zero-extended to the user's buffer. */
    static long getHwInfo(final Ucmd u) {
        if (IommuHwInfo.flags(u.cmd) != 0 || !IommuHwInfo.reservedIsZero(u.cmd)) {
            throw Ucmd.unsupported("GET_HW_INFO flags or __reserved");
        }
        final IommufdDevice idev = u.ctx.objects.get(IommuHwInfo.devId(u.cmd), ObjectType.DEVICE, IommufdDevice.class);
        final HwInfo info = u.ctx.iommu().driver().hwInfo(idev.dev);
        final long userLen = Integer.toUnsignedLong(IommuHwInfo.dataLen(u.cmd));
        final long uptr = IommuHwInfo.dataUptr(u.cmd);
        final byte[] data = info.data();
        final long copy = Math.min(userLen, data.length);
        if (copy > 0) {
            u.process.mm().copyToUser(uptr, MemorySegment.ofArray(data), 0, copy);
        }
        if (userLen > copy) {
            u.process.mm().copyToUser(uptr + copy, MemorySegment.ofArray(new byte[(int) Math.min(userLen - copy, 1 << 20)]), 0,
                    Math.min(userLen - copy, 1 << 20));
        }
        IommuHwInfo.dataLen(u.cmd, data.length);
        IommuHwInfo.outDataType(u.cmd, info.type());
        IommuHwInfo.outCapabilities(u.cmd, info.capabilities());
        u.respond();
        return 0;
    }
}
