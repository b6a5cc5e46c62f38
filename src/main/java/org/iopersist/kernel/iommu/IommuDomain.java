package org.iopersist.kernel.iommu;

import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * An iommu domain as the core hands it out: the blocking domain, or a paging domain backed by a
 * driver's {@link DomainOps}. The core counts a paging domain's devices; one with devices cannot be
 * freed.
 */
public final class IommuDomain {
    public static final int READ = 1;
    public static final int WRITE = 2;
    /** Allocation flag: the domain will be preserved across a live update. */
    public static final int PERSISTENT = 1;

    public enum Type { BLOCKED, PAGING }

    private final Type type;
    private final int flags;
    private final DomainOps ops;
    /** The driver that made it (domain->owner): only its devices may attach. Null for the blocking domain. */
    private final IommuDriver owner;
    private int users;
    private boolean freed;

    IommuDomain(final Type type, final int flags, final DomainOps opsOrNull, final IommuDriver owner) {
        this.type = type;
        this.flags = flags;
        this.ops = opsOrNull;
        this.owner = owner;
    }

    /** The driver that allocated this domain; null for the blocking domain. */
    public IommuDriver owner() {
        return owner;
    }

    public Type type() {
        return type;
    }

    public boolean persistent() {
        return (flags & PERSISTENT) != 0;
    }

    public int flags() {
        return flags;
    }

    /** The driver's domain; only paging domains have one. */
    public DomainOps ops() {
        if (ops == null) {
            throw new KernelException(Errno.EINVAL, "the blocking domain has no page table");
        }
        return ops;
    }

    public List<ReservedRegion> reservedRegions() {
        return ops == null ? List.of() : ops.reservedRegions();
    }

    public long apertureLast() {
        return ops().apertureLast();
    }

    public long apertureStart() {
        return ops().apertureStart();
    }

    public long pgsizeBitmap() {
        return ops().pgsizeBitmap();
    }

    public void map(final long iova, final long phys, final long size, final int prot) {
        live().map(iova, phys, size, prot);
    }

    public long unmap(final long iova, final long size) {
        return live().unmap(iova, size);
    }

    public long iovaToPhys(final long iova) {
        return live().iovaToPhys(iova);
    }

    private DomainOps live() {
        if (freed) {
            throw new IllegalStateException("use of a freed domain");
        }
        return ops();
    }

    synchronized int users() {
        return users;
    }

    synchronized void addUser() {
        users++;
    }

    synchronized void removeUser() {
        users--;
    }

    synchronized void markFreed() {
        freed = true;
    }

    @Override
    public String toString() {
        return type == Type.BLOCKED ? "blocked" : "paging" + (persistent() ? "(persistent)" : "");
    }
}
