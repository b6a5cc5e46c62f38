package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommu.HwInfo;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwInfo;

/**
 * IOMMUFD_OBJ_DEVICE ({@code device.c}): a device bound to a context by its VFIO cdev. The binding
 * driver holds a reference from {@link #bind} to {@link #unbind}, so userspace can never DESTROY it;
 * an attach holds another, and a reference on the HWPT it translates through. Also GET_HW_INFO.
 *
 * <p>Attach, replace, detach and unbind run under the context's attach lock: they move references
 * between the device, its old HWPT and its new one.
 */
public final class IommufdDevice extends IommufdObject {
    final IommufdCtx ctx;
    final IommuDevice dev;
    /** The HWPT it translates through, or null when blocked; written under the context's attach lock. */
    volatile HwptPaging hwpt;
    /** Re-hydrated after a live update and not yet adopted by a VFIO bind; guarded by the attach lock. */
    boolean restored;
    /** Its VFIO cdev is preserved in a LUO session (or restored by one, not finished): attachments are frozen. */
    private volatile boolean liveupdatePreserved;
    /** Adopted by a bind whose answer has not reached the process yet; guarded by ctx.attachLock. */
    boolean adopting;

    private IommufdDevice(final IommufdCtx ctx, final IommuDevice dev) {
        super(ObjectType.DEVICE);
        this.ctx = ctx;
        this.dev = dev;
    }

    /** The context the device is bound to. */
    public IommufdCtx ctx() {
        return ctx;
    }

    public IommuDevice device() {
        return dev;
    }

    /** The HWPT the device translates through, or null when blocked (a lock-free read: a freeze reads it). */
    public HwptPaging hwpt() {
        return hwpt;
    }

    /** iommufd_get_device: the device {@code id} with a short-term reference, put by the caller. @throws KernelException ENOENT */
    static IommufdDevice get(final IommufdCtx ctx, final int id) {
        return ctx.objects.getObject(id, ObjectType.DEVICE, IommufdDevice.class);
    }

    /** iommufd_device_destroy: unbind detached it first; nothing to undo here. */
    @Override
    void destroy() {
    }

    // ------------------------------------------------------------------ bind

    /**
     * iommufd_device_bind: a new DEVICE object; the context stays alive until unbind. A device
     * restored by a live update is adopted instead, still attached. The caller ends the bind with
     * {@link #bindDone} once its answer reached the process, or {@link #abortBind} if it did not.
     */
    public static IommufdDevice bind(final IommufdCtx ctx, final IommuDevice dev) {
        ctx.iommu();
        synchronized (ctx.attachLock) {
            for (IommufdObject o : ctx.objects.objects()) {
                if (o instanceof IommufdDevice d && d.restored && d.dev.equals(dev)) {
                    // The restarted VMM binds its device again: it gets the restored object, still attached.
                    d.restored = false;
                    d.adopting = true;
                    return d;
                }
            }
        }
        // iommufd_get_group: a device is its own group here, so its igroup is always new (kzalloc).
        ctx.fail.kzalloc("iommufd_group");
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
        idev.users.incrementAndGet(); // the binding driver's reference, released by unbind
        ctx.objects.finalizeObject(id, idev);
        if (dev.pci()) {
            // iommufd_ctx_get, released by unbind. Not for a selftest mock device: its binding is an
            // object of the context itself, which would otherwise keep the context alive forever.
            ctx.get();
        }
        return idev;
    }

    /**
     * The bind's answer reached the process: an adopted device is its VMM's from now on, and the
     * last of a context's restored devices to be adopted starts the deferred checks (the scrub).
     */
    public static void bindDone(final IommufdDevice idev) {
        final IommufdCtx ctx = idev.ctx;
        final boolean last;
        synchronized (ctx.attachLock) {
            if (!idev.adopting) {
                return;
            }
            idev.adopting = false;
            last = !ctx.hasRestoredDevices();
        }
        if (last) {
            ctx.restoredDevicesRebound(); // outside the attach lock: it starts the scrub
        }
    }

    /**
     * The bind succeeded here but its answer could not reach the process (its copy to user
     * failed): a new binding is undone (unbind), while an adopted device goes back to waiting for
     * its VMM, still attached. A restarted VMM whose bind fails must not block the device it is
     * taking over.
     */
    public static void abortBind(final IommufdDevice idev) {
        synchronized (idev.ctx.attachLock) {
            if (idev.adopting) {
                idev.adopting = false;
                idev.restored = true;
                return;
            }
        }
        unbind(idev);
    }

    /**
     * iommufd_device_unbind: detaches, then destroys the object once the ioctls using it are done
     * (iommufd_object_destroy_user), and releases the context.
     */
    public static void unbind(final IommufdDevice idev) {
        final IommufdCtx ctx = idev.ctx;
        ctx.abortFinalizeIfFrozen("lost device " + idev.dev);
        synchronized (ctx.attachLock) {
            detachLocked(idev);
        }
        ctx.objects.destroyUser(idev); // drops the binding's reference
        ctx.iommu().releaseDmaOwner(idev.dev, ctx);
        if (idev.dev.pci()) {
            ctx.put();
        }
    }

    // ------------------------------------------------------------------ attach

    /**
     * iommufd_device_attach / iommufd_device_replace (iommufd_device_change_pt): {@code ptId} names
     * an IOAS (an auto HWPT is found or made) or a HWPT_PAGING. Returns the HWPT's id.
     */
    public static int attach(final IommufdDevice idev, final int ptId) {
        final IommufdCtx ctx = idev.ctx;
        ctx.checkMutable("attach");
        idev.checkLiveupdateMutable("attach");
        synchronized (ctx.attachLock) {
            final IommufdObject pt = ctx.objects.getObject(ptId, ObjectType.ANY, IommufdObject.class);
            try {
                return switch (pt) {
                    case HwptPaging h -> {
                        setHwpt(idev, h);
                        yield h.id();
                    }
                    case Ioas ioas -> autoGetDomain(idev, ioas);
                    default -> throw new KernelException(Errno.EINVAL, pt.type() + " " + ptId + " is not a page table");
                };
            } finally {
                ctx.objects.putObject(pt);
            }
        }
    }

    /**
     * iommufd_device_auto_get_domain: an auto HWPT of {@code ioas} the device can use, or a new one.
     * Caller holds the attach lock.
     */
    private static int autoGetDomain(final IommufdDevice idev, final Ioas ioas) {
        final IommufdCtx ctx = idev.ctx;
        for (IommufdObject o : ctx.objects.objects()) {
            if (o instanceof HwptPaging h && h.auto && h.ioas == ioas) {
                if (h == idev.hwpt) {
                    return h.id();
                }
                if (!h.lock()) {
                    continue; // being destroyed
                }
                try {
                    setHwpt(idev, h);
                    return h.id();
                } catch (KernelException e) {
                    if (e.errno() != Errno.EINVAL) {
                        throw e;
                    }
                    // Incompatible (another unit, another geometry): try the next, then make one.
                } finally {
                    ctx.objects.putObject(h);
                }
            }
        }
        final HwptPaging h = HwptPaging.alloc(ctx, ioas, idev.dev, 0, 0, true);
        try {
            setHwpt(idev, h);
        } catch (RuntimeException e) {
            ctx.objects.abortAndDestroy(h.id(), h); // never published: nothing else holds it
            throw e;
        }
        ctx.objects.finalizeObject(h.id(), h);
        return h.id();
    }

    /**
     * iommufd_hw_pagetable_attach / iommufd_device_do_replace: reserves the device's regions in the
     * new IOAS, switches the domain, and moves the references (the device's on {@code h}, released
     * by {@link #hwptPut}). Caller holds the attach lock.
     */
    private static void setHwpt(final IommufdDevice idev, final HwptPaging h) {
        final HwptPaging old = idev.hwpt;
        if (old == h) {
            return;
        }
        final boolean sameIoas = old != null && old.ioas == h.ioas;
        if (!sameIoas) {
            h.ioas.iopt.enforceDeviceReservedRegions(idev, reservedRegions(h));
        }
        try {
            idev.ctx.fail.kzalloc("iommufd_attach_handle"); // iommufd_hwpt_attach_device / _replace_device
            if (old == null) {
                idev.ctx.iommu().attach(idev.dev, h.domain);
            } else {
                idev.ctx.iommu().replace(idev.dev, h.domain);
            }
        } catch (RuntimeException e) {
            if (!sameIoas) {
                h.ioas.iopt.removeReservedIova(idev);
            }
            throw e;
        }
        h.users.incrementAndGet(); // the device's, released by hwptPut (detach, or the next replace)
        h.devices++;
        idev.hwpt = h;
        if (old == null) {
            idev.users.incrementAndGet(); // the attach's, released by detach
        } else {
            hwptPut(idev, old, !sameIoas);
        }
    }

    /** The device's reserved regions as the IOAS reserves them (the interrupt window, ...). */
    private static List<IovaInterval> reservedRegions(final HwptPaging h) {
        final List<IovaInterval> ranges = new ArrayList<>();
        for (ReservedRegion r : h.domain.reservedRegions()) {
            ranges.add(new IovaInterval(r.start(), r.last()));
        }
        return ranges;
    }

    /** iommufd_device_detach: blocks the device and drops what its attach held. */
    public static void detach(final IommufdDevice idev) {
        idev.ctx.checkMutable("detach");
        idev.checkLiveupdateMutable("detach");
        synchronized (idev.ctx.attachLock) {
            detachLocked(idev);
        }
    }

    static void detachLocked(final IommufdDevice idev) {
        final HwptPaging old = idev.hwpt;
        if (old == null) {
            return;
        }
        idev.ctx.iommu().detach(idev.dev);
        idev.hwpt = null;
        idev.users.decrementAndGet();
        hwptPut(idev, old, true);
    }

    /**
     * iommufd_hw_pagetable_put: the device's reference on {@code old} goes; an auto HWPT is destroyed
     * with it when that was the last user (iommufd_object_put_and_try_destroy).
     */
    private static void hwptPut(final IommufdDevice idev, final HwptPaging old, final boolean unreserve) {
        if (unreserve) {
            old.ioas.iopt.removeReservedIova(idev);
        }
        old.devices--;
        if (old.auto) {
            idev.ctx.objects.putAndTryDestroy(old);
        } else {
            old.users.decrementAndGet();
        }
    }

    // ------------------------------------------------------------------ ioctls

    /** iommufd_get_hw_info (IOMMU_GET_HW_INFO): the driver's struct, truncated or zero-extended to the user's buffer. */
    static long getHwInfo(final Ucmd u) {
        if (IommuHwInfo.flags(u.cmd) != 0 || !IommuHwInfo.reservedIsZero(u.cmd)) {
            throw Ucmd.unsupported("GET_HW_INFO flags or __reserved");
        }
        final IommufdDevice idev = get(u.ctx, IommuHwInfo.devId(u.cmd));
        try {
            u.ctx.fail.kzalloc("the driver's hw_info"); // ops->hw_info allocates what it answers
            final HwInfo info = u.ctx.iommu().hwInfo(idev.dev);
            final long userLen = Integer.toUnsignedLong(IommuHwInfo.dataLen(u.cmd));
            final long uptr = IommuHwInfo.dataUptr(u.cmd);
            final byte[] data = info.data();
            final long copy = Math.min(userLen, data.length);
            if (copy > 0) {
                u.process.mm().copyToUser(uptr, MemorySegment.ofArray(data), 0, copy);
            }
            if (userLen > copy) { // clear_user
                u.process.mm().putUser(uptr + copy, MemorySegment.ofArray(new byte[(int) Math.min(userLen - copy, 1 << 20)]), 0,
                        Math.min(userLen - copy, 1 << 20));
            }
            IommuHwInfo.dataLen(u.cmd, data.length);
            IommuHwInfo.outDataType(u.cmd, info.type());
            IommuHwInfo.outCapabilities(u.cmd, info.capabilities());
            u.respond();
            return 0;
        } finally {
            u.ctx.objects.putObject(idev);
        }
    }

    // ------------------------------------------------------------------ live update

    private void checkLiveupdateMutable(final String what) {
        if (liveupdatePreserved) {
            throw new KernelException(Errno.EBUSY, what + " of " + dev + ": its VFIO device is preserved for a live update");
        }
    }

    /** Whether its VFIO device is preserved in a LUO session (or restored by one, not finished). */
    public boolean liveupdatePreserved() {
        return liveupdatePreserved;
    }

    public void liveupdatePreserved(final boolean on) {
        liveupdatePreserved = on;
    }

    /**
     * A device restored by LUO: as {@link #restore(IommufdCtx, int, IommuDevice, HwptPaging)}, but the
     * binding belongs to the VFIO file handler, which hands it to the retrieved device file (or
     * unbinds it at finish), not to a later VFIO bind.
     */
    public static IommufdDevice restoreForRetrieve(final IommufdCtx ctx, final int id, final IommuDevice dev, final HwptPaging h) {
        final IommufdDevice idev = restore(ctx, id, dev, h);
        synchronized (ctx.attachLock) {
            idev.restored = false;
        }
        return idev;
    }

    /**
     * A device re-hydrated from a handover into {@code ctx} under its old {@code id}, still attached
     * to {@code h} as it was: the kernel holds the binding until the reopened VMM binds it again
     * ({@link #bind} adopts it) or finish unbinds it.
     */
    public static IommufdDevice restore(final IommufdCtx ctx, final int id, final IommuDevice dev, final HwptPaging h) {
        ctx.iommu().claimDmaOwner(dev, ctx); // nobody else may bind it until reopen or finish
        final IommufdDevice idev = new IommufdDevice(ctx, dev);
        idev.users.incrementAndGet(); // the binding: the VMM's VFIO cdev adopts it on bind; released by unbind
        idev.users.incrementAndGet(); // the attach, released by detach
        idev.restored = true;
        h.ioas.iopt.enforceDeviceReservedRegions(idev, reservedRegions(h));
        h.users.incrementAndGet(); // the device's, released by hwptPut
        h.devices++;
        idev.hwpt = h;
        ctx.objects.insertRestored(id, idev);
        ctx.get(); // a bound device holds its context, released by unbind
        return idev;
    }
}
