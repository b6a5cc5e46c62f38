package org.iopersist.kernel.iommufd;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * What every iommufd object has: an id in its context, a type, and {@code users}, the count of
 * long-term references. The object table holds one; every holder listed in the reference graph
 * (a HWPT holds its IOAS, an attached device its HWPT, ...) holds one more. DESTROY succeeds only
 * when the table's is the last.
 */
public abstract sealed class IommufdObject permits Ioas, HwptPaging, IommufdDevice, Access {
    private final ObjectType type;
    private int id;
    /** The table's reference is the first; see {@link ObjectTable#destroy}. */
    final AtomicInteger users = new AtomicInteger(1);

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

    public final int users() {
        return users.get();
    }

    /** Called once, after the object left the table with no other users. Never fails. */
    abstract void destroy();
}
