package org.iopersist.kernel.iommufd.persist;

import java.util.BitSet;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * Persistent iommufd ids, unique across the kernel (not per context): the lowest free id ≥ 1.
 * The live update keeps an id reserved from kexec until its context is reopened or finish frees it.
 */
final class PersistentIds {
    /** Ids fit the u32 of sysfs names and handover properties; far more than any host needs. */
    static final int MAX = 1 << 20;
    private final BitSet used = new BitSet();

    synchronized int allocate() {
        final int id = used.nextClearBit(1);
        if (id >= MAX) {
            throw new KernelException(Errno.ENOSPC, "all " + MAX + " persistent iommufd ids are in use");
        }
        used.set(id);
        return id;
    }

    /** Reserves a specific id (one handed over by the previous kernel); EEXIST if taken. */
    synchronized void reserve(final int id) {
        if (id < 1 || id >= MAX) {
            throw new KernelException(Errno.EINVAL, "persistent id " + id + " out of range");
        }
        if (used.get(id)) {
            throw new KernelException(Errno.EEXIST, "persistent id " + id + " already in use");
        }
        used.set(id);
    }

    synchronized void release(final int id) {
        used.clear(id);
    }
}
