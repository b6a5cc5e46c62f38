package org.iopersist.kernel.iommufd;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * The ids of one iommufd context, as Linux's {@code xa_alloc} with {@code XA_FLAGS_ALLOC1}: the
 * lowest free id at least 1, up to 2^31 - 1. Creation has two phases: {@link #reserve} takes the id
 * with no object visible behind it (lookups answer ENOENT), then {@link #finalizeObject} publishes it
 * once creation can no longer fail, or {@link #abort} gives the id back.
 *
 * <p>Lookups take a short-term reference ({@link #getObject}, released by {@link #putObject}), as
 * {@code iommufd_get_object}/{@code iommufd_put_object} do: an ioctl holds the objects it named
 * until it returns, so a racing DESTROY answers EBUSY instead of freeing them under it.
 *
 * <p>Lock: this object's monitor (Linux's xa lock); it is also {@code destroy_wait}, the wait queue a
 * kernel-side destroy sleeps on until short-term references drain.
 */
final class ObjectTable {
    /** How long a kernel-side destroy waits for lookups in flight, as Linux's 10 s. */
    private static final long SHORTTERM_WAIT_MS = 10_000;

    private final TreeMap<Integer, IommufdObject> slots = new TreeMap<>(); // null value = reserved
    private int published;
    /** ictx->vfio_ioas: the IOAS the VFIO type1 ioctls work on, or null; guarded by this (the xa lock). */
    private Ioas vfioIoas;

    private final FailPoints fail;

    ObjectTable(final FailPoints fail) {
        this.fail = fail;
    }

    /**
     * _iommufd_object_alloc: the object's kzalloc (a fail_nth site, ENOMEM), then xa_alloc of its
     * id, which is not one (its node allocation is retried until it cannot fail under fail_nth).
     */
    int reserve() {
        fail.kzalloc("iommufd object");
        return reserveId();
    }

    private synchronized int reserveId() {
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

    /** iommufd_object_finalize: publishes {@code object} under its reserved id. */
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

    /** iommufd_object_abort: gives back an id reserved for an object never published. */
    synchronized void abort(final int id) {
        if (slots.containsKey(id) && slots.get(id) == null) {
            slots.remove(id);
        }
    }

    /**
     * iommufd_object_abort_and_destroy: undoes an object that was fully set up but never published.
     */
    void abortAndDestroy(final int id, final IommufdObject object) {
        object.destroy();
        abort(id);
    }

    /**
     * iommufd_get_object: the object {@code id} of {@code type} (ANY matches all) with a short-term
     * reference, which the caller releases with {@link #putObject} before it returns.
     *
     * @throws KernelException ENOENT if there is none, it is not yet published, or it is being destroyed
     *                         (and where fail_nth makes iommufd_get_object fail)
     */
    <T extends IommufdObject> T getObject(final int id, final ObjectType type, final Class<T> cls) {
        fail.point(Errno.ENOENT, "iommufd_get_object");
        return lookup(id, type, cls);
    }

    private synchronized <T extends IommufdObject> T lookup(final int id, final ObjectType type, final Class<T> cls) {
        final IommufdObject o = slots.get(id);
        if (o == null || (type != ObjectType.ANY && o.type() != type) || !cls.isInstance(o) || !o.lock()) {
            throw new KernelException(Errno.ENOENT, "no " + (type == ObjectType.ANY ? "object" : type) + " with id " + id);
        }
        return cls.cast(o);
    }

    /** iommufd_put_object: drops the short-term reference {@link #getObject} or {@link IommufdObject#lock} took. */
    void putObject(final IommufdObject o) {
        // Users first, then short-term, so that a waiting destroy never sees a spurious user with no
        // short-term user left.
        o.users.decrementAndGet();
        if (o.shorttermUsers.decrementAndGet() == 0) {
            synchronized (this) {
                notifyAll();
            }
        }
    }

    /**
     * IOMMU_DESTROY (iommufd_object_remove without REMOVE_WAIT_SHORTTERM): removes {@code id} if
     * the table holds the only reference; an ioctl using it, or any holder in the graph, makes it EBUSY.
     *
     * @throws KernelException ENOENT if absent or not yet published; EBUSY if anything else holds it
     */
    IommufdObject destroy(final int id) {
        return remove(null, id, false);
    }

    /**
     * iommufd_object_destroy_user: the kernel-side owner (the binding driver, the access's creator)
     * drops its reference and the object goes, once the lookups in flight are done with it.
     *
     * @return false if a long-term user remains (a caller bug in Linux; the object stays until close)
     */
    boolean destroyUser(final IommufdObject o) {
        try {
            remove(o, o.id(), true);
            return true;
        } catch (KernelException e) {
            return false;
        }
    }

    /**
     * iommufd_object_put_and_try_destroy (an auto HWPT losing a device): drops the caller's
     * reference and destroys the object if the table's is then the last; otherwise it stays, and
     * close destroys it.
     */
    void putAndTryDestroy(final IommufdObject o) {
        try {
            remove(o, o.id(), false);
        } catch (KernelException e) {
            // Still in use: whoever holds it now puts it, or close destroys it.
        }
    }

    /**
     * iommufd_object_remove. With {@code toDestroy}, the caller's {@code users} reference is
     * dropped here, under the lock. With {@code waitShortterm}, lookups in flight are waited for
     * first (10 s, then EBUSY).
     */
    private IommufdObject remove(final IommufdObject toDestroy, final int id, final boolean waitShortterm) {
        boolean zeroedShortterm = false;
        if (waitShortterm) {
            if (!decrementAndWaitShortterm(toDestroy)) {
                toDestroy.users.decrementAndGet(); // the caller's reference goes anyway; close cleans up
                throw new KernelException(Errno.EBUSY, toDestroy.type() + " " + id + " still has short-term users");
            }
            zeroedShortterm = true;
        }
        final IommufdObject obj;
        synchronized (this) {
            obj = slots.get(id);
            if (toDestroy != null) {
                toDestroy.users.decrementAndGet();
                if (obj != toDestroy) {
                    throw new IllegalStateException(toDestroy.type() + " " + id + " is not in the table");
                }
            } else if (obj == null) {
                throw new KernelException(Errno.ENOENT, "no object with id " + id);
            }
            if (!obj.users.compareAndSet(1, 0)) {
                if (zeroedShortterm) {
                    obj.shorttermUsers.set(1); // the table's short-term reference again
                }
                throw new KernelException(Errno.EBUSY, obj.type() + " " + id + " has " + (obj.users() - 1) + " other users");
            }
            slots.remove(id);
            published--;
            if (obj == vfioIoas) {
                vfioIoas = null; // as iommufd_object_remove: the compat IOAS goes with its object
            }
        }
        // users is zero: a short-term user left can only be racing its putObject.
        if (!zeroedShortterm && !decrementAndWaitShortterm(obj)) {
            throw new IllegalStateException(obj.type() + " " + id + " kept a short-term user with no users");
        }
        obj.destroy();
        return obj;
    }

    /** iommufd_object_dec_wait_shortterm: drops the table's short-term reference and waits for the rest. */
    private boolean decrementAndWaitShortterm(final IommufdObject o) {
        if (o.shorttermUsers.decrementAndGet() == 0) {
            return true;
        }
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(SHORTTERM_WAIT_MS);
        synchronized (this) {
            while (o.shorttermUsers.get() != 0) {
                final long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                if (left <= 0) {
                    o.shorttermUsers.incrementAndGet();
                    return false;
                }
                try {
                    wait(left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    o.shorttermUsers.incrementAndGet();
                    return false;
                }
            }
        }
        return true;
    }

    /**
     * Removes an object whose last long-term user just went, if the table's reference is the only
     * one left; used at close, leaf first.
     */
    private boolean tryDestroy(final IommufdObject o) {
        synchronized (this) {
            if (slots.get(o.id()) != o || !o.users.compareAndSet(1, 0)) {
                return false;
            }
            slots.remove(o.id());
            published--;
            if (o == vfioIoas) {
                vfioIoas = null;
            }
        }
        o.destroy();
        return true;
    }

    /**
     * get_compat_ioas: the VFIO compatibility IOAS with a short-term reference (put by the caller).
     *
     * @throws KernelException ENODEV if there is none (or it is being destroyed)
     */
    synchronized Ioas compatIoas() {
        if (vfioIoas == null || !vfioIoas.lock()) {
            throw new KernelException(Errno.ENODEV, "no VFIO compatibility IOAS (IOMMU_VFIO_IOAS SET first)");
        }
        return vfioIoas;
    }

    /** IOMMU_VFIO_IOAS SET ({@code ioas} held by the caller) or CLEAR ({@code null}). */
    synchronized void setCompatIoas(final Ioas ioas) {
        vfioIoas = ioas;
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
