package org.iopersist.kernel.iommufd.persist;

import java.util.Map;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.SysfsAttribute;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdObject;
import org.iopersist.kernel.iommufd.ObjectType;
import org.iopersist.uapi.Iommufd;

/**
 * {@code /sys/kernel/iommufd_persisted/<id>/}: how a restarted VMM finds its restored context, and
 * the reopen its {@code iommufd} node performs. The last reopen finishes the live update.
 */
final class PersistedSysfs {
    private final KernelLog log;
    private final PersistentContexts contexts;
    private final TableScrub scrub;

    PersistedSysfs(final KernelLog log, final PersistentContexts contexts, final TableScrub scrub) {
        this.log = log;
        this.contexts = contexts;
        this.scrub = scrub;
    }

    /**
     * Shows every restored context as {@code /sys/kernel/iommufd_persisted/<id>/}, and lets
     * {@code reopener} install the node whose open hands it over.
     */
    void publish(final Sysfs sysfs, final IommufdLiveUpdate.Reopener reopener) {
        for (Map.Entry<Integer, IommufdCtx> e : contexts.restoredContexts().entrySet()) {
            publishDir(sysfs, e.getKey(), e.getValue());
            contexts.published(e.getKey(), sysfs);
            reopener.publish(e.getKey(), e.getValue());
        }
    }

    private void publishDir(final Sysfs sysfs, final int pid, final IommufdCtx ctx) {
        final String dir = Iommufd.persistedDir(pid);
        sysfs.mkdirs(dir);
        sysfs.add(dir, SysfsAttribute.readOnly("owner", () -> Integer.toString(ctx.ownerUid())));
        sysfs.add(dir, SysfsAttribute.readOnly("objects", () -> Integer.toString(ctx.objectCount())));
        sysfs.add(dir, SysfsAttribute.readOnly("ioas", () -> Long.toString(count(ctx, ObjectType.IOAS))));
        sysfs.add(dir, SysfsAttribute.readOnly("hwpt", () -> Long.toString(count(ctx, ObjectType.HWPT_PAGING))));
        sysfs.add(dir, SysfsAttribute.readOnly("devices", () -> Long.toString(count(ctx, ObjectType.DEVICE))));
        sysfs.add(dir, SysfsAttribute.readOnly("state", () -> contexts.isRestored(pid) ? "restored" : "reopened"));
        // The leaf-by-leaf check deferred from boot: pending, running, ok or mismatch (and why).
        sysfs.add(dir, SysfsAttribute.readOnly("scrub", () -> scrub.show(pid)));
        // Listed for ls; open(2) of this path reaches the device node that hands the context over.
        sysfs.add(dir, SysfsAttribute.readOnly("iommufd", () -> "persistent iommufd " + pid));
    }

    private static long count(final IommufdCtx ctx, final ObjectType type) {
        long n = 0;
        for (IommufdObject o : ctx.objects()) {
            if (o.type() == type) {
                n++;
            }
        }
        return n;
    }

    /**
     * Hands restored context {@code pid} to {@code opener}: only its owner or root (EACCES), once
     * (EBUSY). The pinned-page accounting moves to the opener; ids and attachments stay.
     */
    IommufdCtx reopen(final int pid, final UserProcess opener) {
        final PersistentContexts.Reopened r = contexts.reopen(pid, opener);
        r.ctx().changeProcess(opener);
        log.info("iommufd: persistent ctx %d reopened by pid %d", pid, opener.pid());
        if (!r.ctx().hasRestoredDevices()) {
            scrub.start(pid, r.ctx()); // no device to wait for
        }
        if (r.last() && contexts.core() != null) {
            log.info("iommufd: every persisted context was reopened");
            contexts.core().finishIfIdle(); // a LUO session still waiting keeps the update unfinished
        }
        return r.ctx();
    }
}
