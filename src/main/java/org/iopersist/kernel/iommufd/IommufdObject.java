package org.iopersist.kernel.iommufd;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * What every iommufd object has: an id in its context, a type, and two counts, as Linux's
 * {@code struct iommufd_object}.
 * <ul>
 *   <li>{@code users}: every reference, long-term and short-term. The object table holds one;
 *       every holder listed in the reference graph (a HWPT holds its IOAS, an attached device its
 *       HWPT, ...) holds one more, and so does every ioctl that looked the object up. DESTROY
 *       succeeds only when the table's is the last.</li>
 *   <li>{@code shorttermUsers}: the table's one, plus one per lookup in flight
 *       ({@link ObjectTable#getObject} until {@link ObjectTable#putObject}). A kernel-side destroy
 *       (device unbind, access destroy) waits for these to drain instead of failing.</li>
 * </ul>
 */
public abstract sealed class IommufdObject permits Ioas, HwptPaging, IommufdDevice, Access, SelftestObject {
    private final ObjectType type;
    private int id;
    /** The table's reference is the first; see {@link ObjectTable#remove}. */
    final AtomicInteger users = new AtomicInteger(1);
    /** The table's reference is the first; lookups in flight add theirs. */
    final AtomicInteger shorttermUsers = new AtomicInteger(1);

    protected IommufdObject(final ObjectType type) {
        this.type = type;
    }

    public final ObjectType type() {
        return type;
    }

    public final int id() {
        return id;
    }

    final void setId(final int newId) {
        this.id = newId;
    }

    final int users() {
        return users.get();
    }

    /**
     * iommufd_lock_obj: takes a short-term reference (one {@code users} and one
     * {@code shorttermUsers}), unless the object is being destroyed. Released by
     * {@link ObjectTable#putObject}. Linux needs the xa lock or a reference here so that the
     * object is not freed under it; a Java object cannot be, so only increment-if-not-zero decides
     * whether a racing destroy won.
     */
    final boolean lock() {
        if (!incrementNotZero(users)) {
            return false;
        }
        if (!incrementNotZero(shorttermUsers)) {
            users.decrementAndGet();
            return false;
        }
        return true;
    }

    private static boolean incrementNotZero(final AtomicInteger count) {
        for (int v = count.get(); v != 0; v = count.get()) {
            if (count.compareAndSet(v, v + 1)) {
                return true;
            }
        }
        return false;
    }

    /** Called once, after the object left the table with no other users. Never fails. */
    abstract void destroy();
}
