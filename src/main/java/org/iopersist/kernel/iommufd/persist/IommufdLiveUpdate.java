package org.iopersist.kernel.iommufd.persist;

import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.guestmemfs.Guestmemfs;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.PersistentIommufds;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.Plan;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.mm.FrameRefs;

/**
 * iommufd's part in a live update: the {@link LiveUpdateHandler} steps, each done by its own class.
 * <ul>
 *   <li>serialize: freeze the {@link PersistentContexts} and write them ({@link HandoverWriter});</li>
 *   <li>validate: read the blob into a plan ({@link HandoverValidator});</li>
 *   <li>adopt: build kernel-held contexts from the plan ({@link Restorer});</li>
 *   <li>after boot: show them in sysfs and hand each to its reopener ({@link PersistedSysfs});</li>
 *   <li>finish: free what nobody reopened.</li>
 * </ul>
 */
public final class IommufdLiveUpdate implements LiveUpdateHandler<Plan> {
    /** Opening a restored context's sysfs file: the kernel installs it as the given file. */
    @FunctionalInterface
    public interface Reopener {
        void publish(int persistentId, IommufdCtx ctx);
    }

    private final KernelLog log;
    private final IommuCore iommu;
    private final LiveUpdateHandler<Guestmemfs> guestmemfs;
    private final LiveUpdateHandler<? extends IommuDriver.HandoverPlan> iommuDriver;
    final PersistentContexts contexts;
    private final Restorer restorer;
    private final PersistedSysfs sysfs;
    private final TableScrub scrub;

    /**
     * @param guestmemfs  the handler whose plan is the mounted guestmemfs the areas live in
     * @param iommuDriver the handler whose plan holds the restored domains' tables
     */
    public IommufdLiveUpdate(final KernelLog log, final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final LiveUpdateHandler<Guestmemfs> guestmemfs, final LiveUpdateHandler<? extends IommuDriver.HandoverPlan> iommuDriver) {
        this.log = log;
        this.iommu = iommu;
        this.guestmemfs = guestmemfs;
        this.iommuDriver = iommuDriver;
        this.contexts = new PersistentContexts(log);
        this.restorer = new Restorer(log, memory, refs, iommu, contexts);
        this.scrub = new TableScrub(log);
        this.sysfs = new PersistedSysfs(log, contexts, scrub);
        contexts.onRebound(scrub::start);
    }

    /** Every persistent context the kernel knows: made persistent or reopened in this boot, or restored and held. */
    public List<IommufdCtx> persistentContexts() {
        return contexts.all();
    }

    /** What every iommufd context of this kernel reports to: the persistent ones' registry. */
    public PersistentIommufds contexts() {
        return contexts;
    }

    @Override
    public String name() {
        return IommufdHandover.NAME;
    }

    @Override
    public void bind(final LiveUpdate liveUpdate) {
        contexts.bind(liveUpdate);
    }

    // ------------------------------------------------------------------ outgoing

    @Override
    public byte[] serialize(final Kho kho) {
        return contexts.freeze(HandoverWriter::write);
    }

    @Override
    public void abort() {
        contexts.unfreeze();
    }

    // ------------------------------------------------------------------ incoming

    /** {@link HandoverValidator#validate} against guestmemfs's plan, this machine's devices and the driver's plan. */
    @Override
    public Plan validate(final IncomingHandover in) throws HandoverFormatException {
        return HandoverValidator.validate(in.kho(), in.plan(guestmemfs), iommu.devices(), in.plan(iommuDriver));
    }

    /** {@link Restorer#adopt}: the kernel holds each context until its VMM reopens it; {@link #publish} shows them. */
    @Override
    public void adopt(final Plan plan, final IncomingHandover in) {
        restorer.adopt(plan, in.plan(guestmemfs));
        for (int pid : contexts.restoredContexts().keySet()) {
            scrub.expect(pid);
        }
    }

    /**
     * Waits for the scrub of restored context {@code pid} ({@link TableScrub}); returns its line as
     * {@code /sys/kernel/iommufd_persisted/<pid>/scrub} shows it, or null on timeout.
     */
    public String awaitScrub(final int pid, final long timeout, final java.util.concurrent.TimeUnit unit)
            throws InterruptedException {
        return scrub.await(pid, timeout, unit) ? scrub.show(pid) : null;
    }

    /** {@link PersistedSysfs#publish}. */
    public void publish(final Sysfs fs, final Reopener reopener) {
        sysfs.publish(fs, reopener);
    }

    /** {@link PersistedSysfs#reopen}. */
    public IommufdCtx reopen(final int pid, final UserProcess opener) {
        return sysfs.reopen(pid, opener);
    }

    /** Restored contexts not reopened yet keep the live update unfinished. */
    @Override
    public boolean pending() {
        return !contexts.restoredContexts().isEmpty();
    }

    /**
     * Finish: every context nobody reopened goes. Its devices are detached (blocked), its domains
     * freed, its areas unpinned; its persistent id is free again.
     */
    @Override
    public void finish() {
        final List<IommufdCtx> left = List.copyOf(contexts.restoredContexts().values());
        for (IommufdCtx ctx : left) {
            ctx.unbindRestoredDevices(); // detaches: the device is blocked from now on
            log.info("iommufd: finish: persistent ctx %d was not reopened; freed", ctx.persistentId());
            ctx.put(); // the kernel's own reference: destroys every object
        }
    }
}
