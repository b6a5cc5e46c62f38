package org.iopersist.kernel.iommufd.persist;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.guestmemfs.Guestmemfs;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommufd.HwptPaging;
import org.iopersist.kernel.iommufd.Ioas;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdDevice;
import org.iopersist.kernel.iommufd.IoptArea;
import org.iopersist.kernel.iommufd.IoptPages;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.AreaPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.CtxPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.DevicePlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.HwptPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.IoasPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.PagesPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.Plan;
import org.iopersist.kernel.mm.FrameRefs;

/**
 * adopt: builds the validated contexts. Objects keep their ids, areas their (already preserved)
 * pins, HWPTs stand for the restored domains, devices stay attached. The kernel holds each context
 * until its VMM reopens it ({@link PersistedSysfs}) or finish frees it.
 */
final class Restorer {
    private final KernelLog log;
    private final PhysicalMemory memory;
    private final FrameRefs refs;
    private final IommuCore iommu;
    private final PersistentContexts contexts;

    Restorer(final KernelLog log, final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final PersistentContexts contexts) {
        this.log = log;
        this.memory = memory;
        this.refs = refs;
        this.iommu = iommu;
        this.contexts = contexts;
    }

    /** Builds every context of {@code plan} over {@code fs}, the guestmemfs its areas live in. */
    void adopt(final Plan plan, final Guestmemfs fs) {
        for (CtxPlan cp : plan.contexts()) {
            contexts.reserveRestored(cp.persistentId());
            final IommufdCtx ctx = IommufdCtx.restore(memory, refs, iommu, contexts, cp.ownerUid(), cp.persistentId(),
                    cp.accountMode());
            final Map<Integer, Ioas> ioasById = new HashMap<>();
            for (IoasPlan ip : cp.ioas()) {
                ioasById.put(ip.id(), Ioas.restore(ctx, ip.id(), ioasState(ip, fs)));
            }
            final Map<Integer, HwptPaging> hwptById = new HashMap<>();
            for (HwptPlan hp : cp.hwpts()) {
                hwptById.put(hp.id(), HwptPaging.restore(ctx, hp.id(), ioasById.get(hp.ioas()), hp.domainKey(), hp.auto()));
            }
            for (DevicePlan dp : cp.devices()) {
                IommufdDevice.restore(ctx, dp.id(), dp.dev(), hwptById.get(dp.hwpt()));
            }
            contexts.addRestored(cp.persistentId(), ctx);
            log.info("iommufd: restored persistent ctx %d (owner uid %d): %d objects", cp.persistentId(), cp.ownerUid(),
                    ctx.objectCount());
        }
    }

    /** The IOAS as planned: its pages opened on the guestmemfs inodes, each area over its pages. */
    private Ioas.State ioasState(final IoasPlan ip, final Guestmemfs fs) {
        return ioasState(ip, pp -> IoptPages.restoreGuestmem(fs.openInode(pp.ino()), pp.offset(), pp.length(), refs));
    }

    /** The IOAS as planned, its pages made by {@code open} (from guestmemfs inodes, or a session's files). */
    static Ioas.State ioasState(final IoasPlan ip, final java.util.function.Function<PagesPlan, IoptPages> open) {
        final List<IoptPages> pages = new ArrayList<>();
        for (PagesPlan pp : ip.pages()) {
            pages.add(open.apply(pp));
        }
        final List<IoptArea> areas = new ArrayList<>();
        for (AreaPlan ap : ip.areas()) {
            areas.add(new IoptArea(ap.iova(), ap.iova() + ap.length() - 1, ap.prot(), pages.get(ap.pages()),
                    ap.offset() - ip.pages().get(ap.pages()).offset()));
        }
        return new Ioas.State(ip.alignment(), ip.hugePages(), ip.allowed(), areas);
    }
}
