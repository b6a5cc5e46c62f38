package org.iopersist.kernel.iommufd.persist;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdObject;

/**
 * What tests read of a kernel's persistent iommufd contexts, through the registry's own fields
 * (there is no uAPI for contexts not yet restored or already reopened).
 */
public final class PersistedIommufds {
    private PersistedIommufds() {
    }

    private static PersistentContexts of(final Kernel k) {
        return k.persistedContexts().contexts;
    }

    /** Persistent ids of the contexts restored from a handover and not reopened yet. */
    public static List<Integer> restoredIds(final Kernel k) {
        final PersistentContexts c = of(k);
        synchronized (c) {
            return List.copyOf(c.restored.keySet());
        }
    }

    /** Persistent ids of the contexts made persistent in this boot, or reopened. */
    public static List<Integer> liveIds(final Kernel k) {
        final PersistentContexts c = of(k);
        synchronized (c) {
            return List.copyOf(c.live.keySet());
        }
    }

    /** Every object of persistent context {@code pid} as {@code id:TYPE}, by id: what a live update must keep. */
    public static List<String> objectsById(final Kernel k, final int pid) {
        final PersistentContexts c = of(k);
        final IommufdCtx ctx;
        synchronized (c) {
            ctx = c.live.containsKey(pid) ? c.live.get(pid) : c.restored.get(pid);
        }
        final List<String> out = new ArrayList<>();
        for (IommufdObject o : ctx.objects()) {
            out.add(o.id() + ":" + o.type());
        }
        return out;
    }
}
