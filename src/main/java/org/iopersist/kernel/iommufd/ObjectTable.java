package org.iopersist.kernel.iommufd;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * The ids of one iommufd context, as Linux's {@code xa_alloc} with {@code XA_FLAGS_ALLOC1}: the
 * lowest free id at least 1, up to 2^31 - 1. Creation has two phases: {@link #reserve} takes the id
 * with no object visible behind it (lookups answer ENOENT), then {@link #finalizeObject} publishes it
 * once creation can no longer fail, or {@link #abort} gives the id back.
 *
 * <p>Lock: this object's monitor (Linux's xa lock).
 */
final class ObjectTable {
    static final int MAX_ID = Integer.MAX_VALUE;

    private final TreeMap<Integer, IommufdObject> slots = new TreeMap<>(); // null value = reserved
    private int published;

    synchronized int reserve() {
        int id = 1;
        for (int used : slots.keySet()) {
            if (used != id) {
                break;
            }
            id++;
        }
        if (id <= 0) {
            throw new KernelException(Errno.ENOSPC, "iommufd object ids exhausted");
        }
        slots.put(id, null); // reserved: the id is taken, nothing is visible
        return id;
    }

    synchronized void finalizeObject(final int id, final IommufdObject object) {
        if (!slots.containsKey(id) || slots.get(id) != null) {
            throw new IllegalStateException("id " + id + " was not reserved");
        }
        object.setId(id);
        slots.put(id, object);
        published++;
    }

    /** Puts a re-hydrated object back under the id it had before the live update. */
    synchronized void insertRestored(final int id, final IommufdObject object) {
        if (slots.containsKey(id)) {
            throw new IllegalStateException("restored id " + id + " is taken");
        }
        object.setId(id);
        slots.put(id, object);
        published++;
    }

    synchronized void abort(final int id) {
        if (slots.containsKey(id) && slots.get(id) == null) {
            slots.remove(id);
        }
    }

    /** The object {@code id} of {@code type} (ANY matches all). @throws KernelException ENOENT */
    synchronized <T extends IommufdObject> T get(final int id, final ObjectType type, final Class<T> cls) {
        final IommufdObject o = slots.get(id);
        if (o == null || (type != ObjectType.ANY && o.type() != type) || !cls.isInstance(o) || o.users() == 0) {
            throw new KernelException(Errno.ENOENT, "no " + (type == ObjectType.ANY ? "object" : type) + " with id " + id);
        }
        return cls.cast(o);
    }

    /** The object {@code id} of any type, or null. */
    synchronized IommufdObject find(final int id) {
        return slots.get(id);
    }

    /**
     * IOMMU_DESTROY: removes {@code id} if the table holds the only reference.
     *
     * @throws KernelException ENOENT if absent or not yet published; EBUSY if anything else holds it
     */
    IommufdObject destroy(final int id) {
        final IommufdObject o;
        synchronized (this) {
            o = slots.get(id);
            if (o == null) {
                throw new KernelException(Errno.ENOENT, "no object with id " + id);
            }
            if (!o.users.compareAndSet(1, 0)) {
                throw new KernelException(Errno.EBUSY, o.type() + " " + id + " has " + (o.users() - 1) + " other users");
            }
            slots.remove(id);
            published--;
        }
        o.destroy();
        return o;
    }

    /** Removes an object whose last user just went (auto domains); no-op if others remain. */
    boolean tryDestroy(final IommufdObject o) {
        synchronized (this) {
            if (slots.get(o.id()) != o || !o.users.compareAndSet(1, 0)) {
                return false;
            }
            slots.remove(o.id());
            published--;
        }
        o.destroy();
        return true;
    }

    synchronized List<IommufdObject> objects() {
        final List<IommufdObject> out = new ArrayList<>();
        for (IommufdObject o : slots.values()) {
            if (o != null) {
                out.add(o);
            }
        }
        return out;
    }

    synchronized int count() {
        return published;
    }

    synchronized boolean empty() {
        return slots.isEmpty();
    }

    /**
     * Close of the context: destroy every object with no user but the table, repeatedly, leaf
     * first, until the table is empty (as iommufd_fops_release).
     */
    void destroyAll() {
        while (true) {
            boolean progress = false;
            for (IommufdObject o : objects()) {
                progress |= tryDestroy(o);
            }
            if (!progress) {
                final List<IommufdObject> left = objects();
                if (!left.isEmpty()) {
                    throw new IllegalStateException("iommufd close left objects with users: " + left);
                }
                return;
            }
        }
    }
}
