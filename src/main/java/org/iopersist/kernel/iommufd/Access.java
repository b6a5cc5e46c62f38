package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * IOMMUFD_OBJ_ACCESS and the in-kernel access API (the {@code iommufd_access_*} part of
 * {@code device.c}): an in-kernel user of an IOAS (an emulated device, a mediated driver) that pins
 * pages by IOVA and reads and writes through the IOAS without a hardware domain. The creating
 * driver holds a reference from {@link #create} to {@link #destroy(Access)}; an attach holds one
 * on the IOAS until detach.
 *
 * <p>Pins are exact: each unpin names an iova and length some pin used. An unmap of a pinned
 * area calls {@link Ops#unmap} and expects the driver to unpin before it retries.
 *
 * <p>Locks: this object's monitor (Linux's ioas_lock) guards which IOAS it is attached to and is
 * taken before the IOAS's iova_rwsem; the pin list's monitor is innermost (taken under iova_rwsem
 * by an unmap asking who pins an area).
 */
public final class Access extends IommufdObject {
    private static final long PAGE = IoPagetable.PAGE_SIZE;

    /** What the driver provides (Linux's {@code iommufd_access_ops}). */
    public interface Ops {
        /** True if the driver pins pages (the IOAS alignment rises to PAGE_SIZE). */
        boolean needsPinPages();

        /** The IOAS wants {@code [iova, iova + length)} back: unpin whatever overlaps it. */
        void unmap(long iova, long length);
    }

    /** One pin: its range and the areas it holds (each one pin user on the area's pages). */
    record Pin(long iova, long length, List<IoptArea> areas) {
        long last() {
            return iova + length - 1;
        }
    }

    final IommufdCtx ctx;
    final Ops ops;
    private Ioas ioas; // guarded by this
    private final List<Pin> pins = new ArrayList<>(); // guarded by pins

    private Access(final IommufdCtx ctx, final Ops ops) {
        super(ObjectType.ACCESS);
        this.ctx = ctx;
        this.ops = ops;
    }

    long alignment() {
        return ops.needsPinPages() ? IoPagetable.PAGE_SIZE : 1;
    }

    /** True if a pin of this access covers part of {@code [start, last]}. */
    boolean pins(final long start, final long last) {
        synchronized (pins) {
            for (Pin p : pins) {
                if (IovaMath.le(p.iova(), last) && IovaMath.le(start, p.last())) {
                    return true;
                }
            }
            return false;
        }
    }

    /** iommufd_access_destroy_object: detaches, dropping every pin. */
    @Override
    void destroy() {
        detachQuietly(this);
    }

    /** iommufd_access_create: a new ACCESS object held by the caller. */
    public static Access create(final IommufdCtx ctx, final Ops ops) {
        final int id = ctx.objects.reserve();
        final Access a = new Access(ctx, ops);
        a.users.incrementAndGet(); // the creating driver's reference, released by destroy(Access)
        ctx.objects.finalizeObject(id, a);
        ctx.get(); // as iommufd_ctx_get: the context outlives its fd while the access exists; put by destroy(Access)
        return a;
    }

    /**
     * iommufd_access_destroy: drops the driver's reference; the object goes with it once no
     * unmap callback is using it (iommufd_object_destroy_user).
     *
     * @throws KernelException EBUSY if something else still holds it (the driver keeps its reference)
     */
    public static void destroy(final Access a) {
        if (!a.ctx.objects.destroyUser(a)) {
            a.users.incrementAndGet(); // the driver's reference stays: it may try again
            throw new KernelException(Errno.EBUSY, "access " + a.id() + " still has users");
        }
        a.ctx.put();
    }

    /** iommufd_access_attach: ENOENT for no IOAS, EINVAL if already attached. */
    public static void attach(final Access a, final int ioasId) {
        final Ioas ioas = Ioas.get(a.ctx, ioasId);
        try {
            synchronized (a) {
                if (a.ioas != null) {
                    throw new KernelException(Errno.EINVAL, "access " + a.id() + " is already attached");
                }
                ioas.iopt.addAccess(a);
                ioas.users.incrementAndGet(); // the attach's, released by detach
                a.ioas = ioas;
            }
        } finally {
            a.ctx.objects.putObject(ioas);
        }
    }

    /**
     * iommufd_access_replace: moves an attached access (ENOENT if it is not) to IOAS {@code ioasId}
     * (ENOENT if none). The driver is asked to unpin everything in the old IOAS first (its unmap
     * callback over the whole IOVA space); what it keeps is dropped. EADDRINUSE if the new IOAS has
     * an area the access's alignment cannot take.
     */
    public static void replace(final Access a, final int ioasId) {
        synchronized (a) {
            if (a.ioas == null) {
                throw new KernelException(Errno.ENOENT, "access " + a.id() + " is not attached");
            }
        }
        final Ioas next = Ioas.get(a.ctx, ioasId);
        try {
            final Ioas cur;
            synchronized (a) {
                cur = a.ioas;
                if (cur == null) {
                    throw new KernelException(Errno.ENOENT, "access " + a.id() + " was detached");
                }
                if (cur == next) {
                    return;
                }
                next.iopt.addAccess(a);
                next.users.incrementAndGet(); // the attach's, released by detach
                a.ioas = null; // no pin from here until the move is done
            }
            a.ops.unmap(0, -1L); // outside the lock: the driver's unpins take it
            final List<Pin> left;
            synchronized (a) {
                synchronized (a.pins) {
                    left = new ArrayList<>(a.pins);
                    a.pins.clear();
                }
                a.ioas = next;
            }
            for (Pin p : left) {
                release(p);
            }
            cur.iopt.removeAccess(a);
            cur.users.decrementAndGet();
        } finally {
            a.ctx.objects.putObject(next);
        }
    }

    /** iommufd_access_detach: every pin must be gone (EBUSY). */
    public static void detach(final Access a) {
        synchronized (a.pins) {
            if (!a.pins.isEmpty()) {
                throw new KernelException(Errno.EBUSY, "access " + a.id() + " still pins " + a.pins.size() + " ranges");
            }
        }
        detachQuietly(a);
    }

    private static void detachQuietly(final Access a) {
        final Ioas ioas;
        final List<Pin> left;
        synchronized (a) {
            ioas = a.ioas;
            synchronized (a.pins) {
                left = new ArrayList<>(a.pins);
                a.pins.clear();
            }
            a.ioas = null;
        }
        if (ioas == null) {
            return;
        }
        for (Pin p : left) {
            release(p);
        }
        ioas.iopt.removeAccess(a);
        ioas.users.decrementAndGet();
    }

    /**
     * iommufd_access_pin_pages: pins {@code [iova, iova + length)} (which contiguous areas must
     * cover: ENOENT) and returns the frame of each page from {@code iova} rounded down. EPERM to
     * pin a read-only area for writing.
     */
    public static long[] pinPages(final Access a, final long iova, final long length, final boolean write) {
        if (length == 0) {
            throw new KernelException(Errno.EINVAL, "pin of zero bytes");
        }
        final long last = IovaMath.lastOf(iova, length);
        final Ioas ioas = attached(a);
        ioas.iopt.iovaLock.readLock().lock();
        try {
            final List<IoptArea> areas = covering(ioas, iova, last, write);
            for (IoptArea area : areas) {
                // iopt_area_contig_is_aligned: pages are handed out whole, so each area's IOVA must
                // sit at the same offset in its page as its bytes do.
                if (((area.start() - area.startByte()) & (PAGE - 1)) != 0) {
                    throw new KernelException(Errno.EINVAL, String.format("the area at 0x%x is not page aligned", area.start()));
                }
            }
            final List<IoptArea> pinned = new ArrayList<>();
            try {
                for (IoptArea area : areas) {
                    // iopt_area_add_access: its record, then iopt_pages_fill_xarray's points: the user
                    // pin into the caller's page list for pages nobody holds, the store into the
                    // xarray unless another access holds them there already, and the count.
                    a.ctx.fail.kzalloc("iopt_pages_access");
                    final boolean held = area.pages().pinnedNow();
                    if (!held) {
                        a.ctx.fail.userPin(pagesIn(area, iova, last), true);
                    }
                    area.pages().pin();
                    pinned.add(area);
                    if (!held || ioas.iopt.hasDomains()) {
                        a.ctx.fail.pagesToXarray();
                    }
                    if (!held) {
                        a.ctx.fail.updatePinned();
                    }
                }
            } catch (RuntimeException e) {
                for (IoptArea area : pinned) {
                    area.pages().unpin();
                }
                throw e;
            }
            final long first = iova & -PAGE;
            final long[] frames = new long[(int) (((last & -PAGE) - first) / PAGE + 1)];
            for (int i = 0; i < frames.length; i++) {
                frames[i] = frameOf(areas, first + i * PAGE);
            }
            synchronized (a.pins) {
                a.pins.add(new Pin(iova, length, List.copyOf(areas))); // released by unpinPages or detach
            }
            return frames;
        } finally {
            ioas.iopt.iovaLock.readLock().unlock();
        }
    }

    /** iommufd_access_unpin_pages: the range must be one pinned before (EINVAL otherwise). */
    public static void unpinPages(final Access a, final long iova, final long length) {
        final Pin pin;
        synchronized (a.pins) {
            final int i = indexOf(a, iova, length);
            if (i < 0) {
                throw new KernelException(Errno.EINVAL, String.format("no pin of [0x%x, +0x%x]", iova, length));
            }
            pin = a.pins.remove(i);
        }
        release(pin);
    }

    /** Caller holds the pin list's monitor. */
    private static int indexOf(final Access a, final long iova, final long length) {
        for (int i = 0; i < a.pins.size(); i++) {
            if (a.pins.get(i).iova() == iova && a.pins.get(i).length() == length) {
                return i;
            }
        }
        return -1;
    }

    private static void release(final Pin pin) {
        for (IoptArea area : pin.areas()) {
            area.pages().unpin();
        }
    }

    /** Pages of {@code area} that {@code [iova, last]} touches. */
    private static long pagesIn(final IoptArea area, final long iova, final long last) {
        final long from = IovaMath.lt(area.start(), iova) ? iova : area.start();
        final long to = IovaMath.lt(last, area.last()) ? last : area.last();
        final long first = area.startByte() + (from - area.start());
        return ((first + (to - from)) >>> 12) - (first >>> 12) + 1;
    }

    /**
     * iommufd_access_rw: copies between {@code buf} and the IOAS at byte granularity, across page and
     * area boundaries. ENOENT for a hole, EPERM to write a read-only area. The copy of a caller in
     * the pages' own process ({@link #rw(Access, long, MemorySegment, boolean, boolean)} without the
     * slow path).
     */
    public static void rw(final Access a, final long iova, final MemorySegment buf, final boolean write) {
        rw(a, iova, buf, write, false);
    }

    /**
     * iommufd_access_rw with the selftest's {@code __IOMMUFD_ACCESS_RW_SLOW_PATH} flag: each area's
     * copy goes the way iopt_pages_rw_access sends it, with that way's fail_nth points. User pages
     * copied by their own process take copy_to_user / copy_from_user (EFAULT); on the slow path one
     * page goes through iopt_pages_rw_page (its point answers EINVAL) and more through
     * iopt_pages_rw_slow's pfn reader (the batch, and the user pin for pages nobody holds); file
     * pages always go the slow way. The model copies through physical memory every time.
     */
    public static void rw(final Access a, final long iova, final MemorySegment buf, final boolean write,
            final boolean slowPath) {
        final long length = buf.byteSize();
        if (length == 0) {
            throw new KernelException(Errno.EINVAL, "access rw of zero bytes");
        }
        final long last = IovaMath.lastOf(iova, length);
        final Ioas ioas = attached(a);
        final PhysicalMemory memory = a.ctx.memory();
        ioas.iopt.iovaLock.readLock().lock();
        try {
            final List<IoptArea> areas = covering(ioas, iova, last, write);
            final List<IoptArea> pinned = new ArrayList<>();
            try {
                for (IoptArea area : areas) {
                    final boolean user = area.pages().memfd() == null && area.pages().guestmem() == null;
                    final long n = pagesIn(area, iova, last);
                    if (user && !slowPath) {
                        a.ctx.fail.userCopy();
                    } else if (user && n == 1) {
                        a.ctx.fail.point(Errno.EINVAL, "iopt_pages_rw_page");
                    } else {
                        a.ctx.fail.batchInit();
                        if (!area.pages().pinnedNow()) {
                            a.ctx.fail.userPin(n, false);
                        }
                    }
                    area.pages().pin(); // the model's way for every path: pin for the duration of the copy
                    pinned.add(area);
                }
                copy(iova, buf, write, memory, areas);
            } finally {
                for (IoptArea area : pinned) {
                    area.pages().unpin();
                }
            }
        } finally {
            ioas.iopt.iovaLock.readLock().unlock();
        }
    }

    /** The bytes of {@link #rw}, every area pinned by the caller. */
    private static void copy(final long iova, final MemorySegment buf, final boolean write, final PhysicalMemory memory,
            final List<IoptArea> areas) {
        final long length = buf.byteSize();
        long done = 0;
        while (done < length) {
            final long at = iova + done;
            final IoptArea area = areaOf(areas, at);
            // The byte's place in the area's pages: an area need not start at the page offset of its
            // IOVA (no pinning access, no domain wider than its alignment).
            final long index = area.startByte() + (at - area.start());
            final long inPage = index & (PAGE - 1);
            final long chunk = Math.min(Math.min(length - done, PAGE - inPage), area.last() - at + 1);
            final long phys = area.pages().frame(index >>> 12) + inPage;
            if (write) {
                MemorySegment.copy(buf, done, memory.segment(), phys, chunk);
            } else {
                MemorySegment.copy(memory.segment(), phys, buf, done, chunk);
            }
            done += chunk;
        }
    }

    /** The IOAS the access is attached to, or null. */
    synchronized Ioas attachedIoas() {
        return ioas;
    }

    private static Ioas attached(final Access a) {
        synchronized (a) {
            if (a.ioas == null) {
                throw new KernelException(Errno.ENOENT, "access " + a.id() + " is not attached");
            }
            return a.ioas;
        }
    }

    /**
     * iopt_for_each_contig_area: the areas covering {@code [iova, last]} without a hole, in order;
     * ENOENT or EPERM otherwise. Caller holds iova_rwsem.
     */
    private static List<IoptArea> covering(final Ioas ioas, final long iova, final long last, final boolean write) {
        final List<IoptArea> areas = ioas.iopt.areasIn(iova, last);
        long next = iova;
        for (IoptArea area : areas) {
            if (Long.compareUnsigned(area.start(), next) > 0) {
                break;
            }
            if (write && (area.prot() & IoasDomain.IOMMU_WRITE) == 0) {
                throw new KernelException(Errno.EPERM, String.format("area at 0x%x is read-only", area.start()));
            }
            if (Long.compareUnsigned(area.last(), last) >= 0) {
                return areas;
            }
            next = area.last() + 1;
        }
        throw new KernelException(Errno.ENOENT, String.format("[0x%x, 0x%x] is not covered by areas", iova, last));
    }

    /** The area holding {@code iova}. */
    private static IoptArea areaOf(final List<IoptArea> areas, final long iova) {
        for (IoptArea area : areas) {
            if (IovaMath.le(area.start(), iova) && IovaMath.le(iova, area.last())) {
                return area;
            }
        }
        throw new IllegalStateException("no area holds 0x" + Long.toHexString(iova));
    }

    /** Frame behind the page at {@code pageIova} (pinned by the caller). */
    private static long frameOf(final List<IoptArea> areas, final long pageIova) {
        for (IoptArea area : areas) {
            if (area.holdsPage(pageIova)) {
                return area.frameOf(pageIova);
            }
        }
        throw new IllegalStateException("no area holds 0x" + Long.toHexString(pageIova));
    }
}
