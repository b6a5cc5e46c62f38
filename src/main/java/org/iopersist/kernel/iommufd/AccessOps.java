package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * The in-kernel access API (Linux's {@code iommufd_access_*}): create, attach to an IOAS, pin and
 * unpin pages by IOVA, read and write through the IOAS, destroy.
 */
public final class AccessOps {
    private static final long PAGE = IoPagetable.PAGE_SIZE;

    private AccessOps() {
    }

    /** iommufd_access_create: a new ACCESS object held by the caller. */
    public static Access create(final IommufdCtx ctx, final Access.Ops ops) {
        final int id = ctx.objects.reserve();
        final Access a = new Access(ctx, ops);
        a.users.incrementAndGet(); // the creating driver's reference
        ctx.objects.finalizeObject(id, a);
        ctx.get(); // as iommufd_ctx_get: the context outlives its fd while the access exists
        return a;
    }

    /** iommufd_access_destroy: drops the driver's reference; the object goes with it. */
    public static void destroy(final Access a) {
        a.users.decrementAndGet();
        if (!a.ctx.objects.tryDestroy(a)) {
            a.users.incrementAndGet();
            throw new KernelException(Errno.EBUSY, "access " + a.id() + " still has users");
        }
        a.ctx.put();
    }

    /** iommufd_access_attach: ENOENT for no IOAS, EINVAL if already attached. */
    public static void attach(final Access a, final int ioasId) {
        final Ioas ioas = a.ctx.objects.get(ioasId, ObjectType.IOAS, Ioas.class);
        synchronized (a) {
            if (a.ioas != null) {
                throw new KernelException(Errno.EINVAL, "access " + a.id() + " is already attached");
            }
            ioas.addAccess(a);
            ioas.users.incrementAndGet();
            a.ioas = ioas;
        }
    }

    /** iommufd_access_detach: every pin must be gone (EBUSY). */
    public static void detach(final Access a) {
        synchronized (a) {
            if (!a.pins.isEmpty()) {
                throw new KernelException(Errno.EBUSY, "access " + a.id() + " still pins " + a.pins.size() + " ranges");
            }
        }
        detachQuietly(a);
    }

    static void detachQuietly(final Access a) {
        final Ioas ioas;
        final List<Access.Pin> left;
        synchronized (a) {
            ioas = a.ioas;
            left = new ArrayList<>(a.pins);
            a.pins.clear();
            a.ioas = null;
        }
        if (ioas == null) {
            return;
        }
        for (Access.Pin p : left) {
            release(p);
        }
        ioas.removeAccess(a);
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
        ioas.iovaLock.readLock().lock();
        try {
            final List<Ioas.Area> areas = covering(ioas, iova, last, write);
            final List<Ioas.Area> pinned = new ArrayList<>();
            try {
                for (Ioas.Area area : areas) {
                    area.pages().pin();
                    pinned.add(area);
                }
            } catch (RuntimeException e) {
                for (Ioas.Area area : pinned) {
                    area.pages().unpin();
                }
                throw e;
            }
            final long first = iova & -PAGE;
            final long[] frames = new long[(int) (((last & -PAGE) - first) / PAGE + 1)];
            for (int i = 0; i < frames.length; i++) {
                frames[i] = frameOf(areas, first + i * PAGE);
            }
            synchronized (a) {
                a.pins.add(new Access.Pin(iova, length, List.copyOf(areas)));
            }
            return frames;
        } finally {
            ioas.iovaLock.readLock().unlock();
        }
    }

    /** iommufd_access_unpin_pages: the range must be one pinned before (EINVAL otherwise). */
    public static void unpinPages(final Access a, final long iova, final long length) {
        final Access.Pin pin;
        synchronized (a) {
            final int i = indexOf(a, iova, length);
            if (i < 0) {
                throw new KernelException(Errno.EINVAL, String.format("no pin of [0x%x, +0x%x]", iova, length));
            }
            pin = a.pins.remove(i);
        }
        release(pin);
    }

    private static int indexOf(final Access a, final long iova, final long length) {
        for (int i = 0; i < a.pins.size(); i++) {
            if (a.pins.get(i).iova() == iova && a.pins.get(i).length() == length) {
                return i;
            }
        }
        return -1;
    }

    private static void release(final Access.Pin pin) {
        for (Ioas.Area area : pin.areas()) {
            area.pages().unpin();
        }
    }

    /**
     * iommufd_access_rw: copies between {@code buf} and the IOAS at byte granularity, across page and
     * area boundaries. ENOENT for a hole, EPERM to write a read-only area.
     */
    public static void rw(final Access a, final long iova, final MemorySegment buf, final boolean write) {
        final long length = buf.byteSize();
        if (length == 0) {
            return;
        }
        final long last = IovaMath.lastOf(iova, length);
        final Ioas ioas = attached(a);
        final PhysicalMemory memory = a.ctx.memory();
        ioas.iovaLock.readLock().lock();
        try {
            final List<Ioas.Area> areas = covering(ioas, iova, last, write);
            for (Ioas.Area area : areas) {
                area.pages().pin(); // the slow path: pin for the duration of the copy
            }
            try {
                long done = 0;
                while (done < length) {
                    final long at = iova + done;
                    final long chunk = Math.min(length - done, PAGE - (at & (PAGE - 1)));
                    final long phys = frameOf(areas, at & -PAGE) + (at & (PAGE - 1));
                    if (write) {
                        MemorySegment.copy(buf, done, memory.segment(), phys, chunk);
                    } else {
                        MemorySegment.copy(memory.segment(), phys, buf, done, chunk);
                    }
                    done += chunk;
                }
            } finally {
                for (Ioas.Area area : areas) {
                    area.pages().unpin();
                }
            }
        } finally {
            ioas.iovaLock.readLock().unlock();
        }
    }

    private static Ioas attached(final Access a) {
        synchronized (a) {
            if (a.ioas == null) {
                throw new KernelException(Errno.EINVAL, "access " + a.id() + " is not attached");
            }
            return a.ioas;
        }
    }

    /** The areas covering {@code [iova, last]} without a hole, in order; ENOENT or EPERM otherwise. */
    private static List<Ioas.Area> covering(final Ioas ioas, final long iova, final long last, final boolean write) {
        final List<Ioas.Area> areas = ioas.iopt.areasIn(iova, last);
        long next = iova;
        for (Ioas.Area area : areas) {
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

    /** Frame behind the page at {@code pageIova} (pinned by the caller). */
    private static long frameOf(final List<Ioas.Area> areas, final long pageIova) {
        for (Ioas.Area area : areas) {
            final long base = area.start() - (area.startByte() & (PAGE - 1));
            if (Long.compareUnsigned(pageIova, base) >= 0 && Long.compareUnsigned(pageIova, area.last()) <= 0) {
                return area.pages().frame((area.startByte() >>> 12) + ((pageIova - base) >>> 12));
            }
        }
        throw new IllegalStateException("no area holds 0x" + Long.toHexString(pageIova));
    }
}
