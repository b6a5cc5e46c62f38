package org.iopersist.kernel.iommufd;

import java.util.BitSet;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * Persistent iommufd ids, unique across the kernel (not per context): the lowest free id ≥ 1.
 * The live update keeps an id reserved from kexec until its context is reopened or finish frees it.
 */
public final class PersistentIds {
    /** Ids fit the u32 of sysfs names and handover properties; far more than any host needs. */
    public static final int MAX = 1 << 20;
    private final BitSet used = new BitSet();

    public synchronized int allocate() {
        final int id = used.nextClearBit(1);
        if (id >= MAX) {
            throw new KernelException(Errno.ENOSPC, "all " + MAX + " persistent iommufd ids are in use");
        }
        used.set(id);
        return id;
    }

    /** Reserves a specific id (one handed over by the previous kernel); EEXIST if taken. */
    public synchronized void reserve(final int id) {
        if (id < 1 || id >= MAX) {
            throw new KernelException(Errno.EINVAL, "persistent id " + id + " out of range");
        }
        if (used.get(id)) {
            throw new KernelException(Errno.EEXIST, "persistent id " + id + " already in use");
        }
        used.set(id);
    }

    public synchronized void release(final int id) {
        used.clear(id);
    }

    public synchronized boolean inUse(final int id) {
        return id > 0 && used.get(id);
    }
}
