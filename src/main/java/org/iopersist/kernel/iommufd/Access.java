package org.iopersist.kernel.iommufd;

import java.util.ArrayList;
import java.util.List;

/**
 * IOMMUFD_OBJ_ACCESS: an in-kernel user of an IOAS (an emulated device, a mediated driver) that
 * pins pages by IOVA and reads and writes through the IOAS without a hardware domain. The creating
 * driver holds a reference from create to destroy; an attach holds one on the IOAS.
 *
 * <p>Pins are exact: each unpin names an iova and length some pin used. An unmap of a pinned
 * area calls {@link Ops#unmap} and expects the driver to unpin before it retries.
 */
public final class Access extends IommufdObject {
    /** What the driver provides (Linux's {@code iommufd_access_ops}). */
    public interface Ops {
        /** True if the driver pins pages (the IOAS alignment rises to PAGE_SIZE). */
        boolean needsPinPages();

        /** The IOAS wants {@code [iova, iova + length)} back: unpin whatever overlaps it. */
        void unmap(long iova, long length);
    }

    /** One pin: its range and the areas it holds (each one pin user on the area's pages). */
    record Pin(long iova, long length, List<Ioas.Area> areas) {
        long last() {
            return iova + length - 1;
        }
    }

    final IommufdCtx ctx;
    final Ops ops;
    // guarded by this
    Ioas ioas;
    final List<Pin> pins = new ArrayList<>();

    Access(final IommufdCtx ctx, final Ops ops) {
        super(ObjectType.ACCESS);
        this.ctx = ctx;
        this.ops = ops;
    }

    long alignment() {
        return ops.needsPinPages() ? IoPagetable.PAGE_SIZE : 1;
    }

    /** True if a pin of this access covers part of {@code [start, last]}. */
    synchronized boolean pins(final long start, final long last) {
        for (Pin p : pins) {
            if (IovaMath.le(p.iova(), last) && IovaMath.le(start, p.last())) {
                return true;
            }
        }
        return false;
    }

    @Override
    void destroy() {
        AccessOps.detachQuietly(this);
    }
}
