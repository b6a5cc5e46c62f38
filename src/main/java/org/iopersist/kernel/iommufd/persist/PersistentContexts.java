package org.iopersist.kernel.iommufd.persist;

import java.util.HashMap;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.function.Function;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.PersistentIommufds;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Iommufd;

/**
 * Every persistent iommufd context of this boot, by persistent id: the live ones (made persistent
 * by their VMM, or reopened), and the restored ones, re-hydrated from the handover and held by the
 * kernel until their VMM reopens them or finish frees them. Also whether a live update is frozen.
 *
 * <p>Lock: this object's monitor. Sysfs reads take sysfs's lock, then this one; nothing here calls
 * into sysfs while holding it.
 */
final class PersistentContexts implements PersistentIommufds {
    private final KernelLog log;
    private final PersistentIds ids = new PersistentIds();
    /** Made persistent in this boot, or reopened; guarded by this. */
    final Map<Integer, IommufdCtx> live = new TreeMap<>();
    /** Restored and not reopened yet; guarded by this. */
    final Map<Integer, IommufdCtx> restored = new TreeMap<>();
    private java.util.function.BiConsumer<Integer, IommufdCtx> onRebound = (pid, ctx) -> { }; // guarded by this
    /** Where each restored context's directory was published; it goes when the context does. */
    private final Map<Integer, Sysfs> sysfsOf = new HashMap<>();
    private boolean frozen;
    private LiveUpdate core; // set once, at registration

    PersistentContexts(final KernelLog log) {
        this.log = log;
    }

    synchronized void bind(final LiveUpdate liveUpdate) {
        this.core = liveUpdate;
    }

    synchronized LiveUpdate core() {
        return core;
    }

    // ------------------------------------------------------------------ PersistentIommufds

    @Override
    public synchronized int register(final IommufdCtx ctx) {
        final int id = ids.allocate();
        live.put(id, ctx);
        return id;
    }

    @Override
    public void unregister(final int id, final IommufdCtx ctx) {
        final Sysfs published;
        synchronized (this) {
            if (!live.remove(id, ctx) && !restored.remove(id, ctx)) {
                return;
            }
            ids.release(id);
            published = sysfsOf.remove(id);
        }
        // Outside this lock: reading an attribute takes sysfs's lock, then this one.
        if (published != null) {
            published.remove(Iommufd.persistedDir(id));
        }
    }

    synchronized java.util.List<IommufdCtx> all() {
        final java.util.List<IommufdCtx> out = new java.util.ArrayList<>(live.values());
        out.addAll(restored.values());
        return out;
    }

    @Override
    public synchronized boolean frozen() {
        return frozen;
    }

    @Override
    public void abortFinalize(final String why) {
        log.info("iommufd: %s: aborting the finalize", why);
        if (core() != null) {
            core().abortIfFinalized();
        }
    }

    // ------------------------------------------------------------------ the live update's steps

    /**
     * Freezes every persistent context and applies {@code serialize} to them all, by persistent id
     * (restored ones not reopened yet included: they are handed over again, unchanged), under this
     * lock so that no context comes or goes meanwhile.
     */
    synchronized <T> T freeze(final Function<SortedMap<Integer, IommufdCtx>, T> serialize) {
        frozen = true;
        final SortedMap<Integer, IommufdCtx> all = new TreeMap<>(live);
        all.putAll(restored);
        return serialize.apply(all);
    }

    synchronized void unfreeze() {
        frozen = false;
    }

    /** Takes {@code persistentId}, handed over by the previous kernel, for a context being restored. */
    synchronized void reserveRestored(final int persistentId) {
        ids.reserve(persistentId);
    }

    /** A restored context, held by the kernel until reopen or finish. */
    synchronized void addRestored(final int persistentId, final IommufdCtx ctx) {
        restored.put(persistentId, ctx);
    }

    /** The restored contexts nobody reopened yet, by persistent id. */
    synchronized SortedMap<Integer, IommufdCtx> restoredContexts() {
        return new TreeMap<>(restored);
    }

    synchronized void published(final int persistentId, final Sysfs sysfs) {
        sysfsOf.put(persistentId, sysfs);
    }

    /** What a reopen took: the context, and whether it was the last one waiting. */
    record Reopened(IommufdCtx ctx, boolean last) {
    }

    /**
     * Moves restored context {@code pid} to the live ones for {@code opener}: only its owner or root
     * (EACCES), once (EBUSY), and only one that exists (ENOENT).
     */
    synchronized Reopened reopen(final int pid, final UserProcess opener) {
        final IommufdCtx ctx = restored.get(pid);
        if (ctx == null) {
            throw new KernelException(live.containsKey(pid) ? Errno.EBUSY : Errno.ENOENT,
                    "persistent iommufd " + pid + (live.containsKey(pid) ? " was reopened already" : " does not exist"));
        }
        if (!opener.root() && opener.uid() != ctx.ownerUid()) {
            throw new KernelException(Errno.EACCES, "persistent iommufd " + pid + " belongs to uid " + ctx.ownerUid());
        }
        restored.remove(pid);
        live.put(pid, ctx);
        return new Reopened(ctx, restored.isEmpty());
    }

    @Override
    public void devicesRebound(final IommufdCtx ctx) {
        final java.util.function.BiConsumer<Integer, IommufdCtx> hook;
        synchronized (this) {
            hook = onRebound;
        }
        hook.accept(ctx.persistentId(), ctx);
    }

    /** What runs when a restored context has its devices back (the scrub). */
    synchronized void onRebound(final java.util.function.BiConsumer<Integer, IommufdCtx> hook) {
        this.onRebound = hook;
    }

    synchronized boolean isRestored(final int pid) {
        return restored.containsKey(pid);
    }
}
