package org.iopersist.kernel.iommufd;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An IO address space: the IOVA bookkeeping ({@link IoPagetable}) of what userspace mapped, which
 * every domain attached to it mirrors.
 *
 * <p>Lock order: {@code domainsLock -> iovaLock} (Linux's domains_rwsem -> iova_rwsem).
 */
public final class Ioas extends IommufdObject {
    // guarded by iovaLock
    final IoPagetable<Area> iopt = new IoPagetable<>();
    final ReentrantReadWriteLock iovaLock = new ReentrantReadWriteLock();

    Ioas() {
        super(ObjectType.IOAS);
    }

    /** One mapped range: its IOVA interval and what backs it. */
    record Area(long start, long last, int prot) implements IoPagetable.Span {
    }

    /**
     * IOMMU_OPTION_HUGE_PAGES: disabling is refused (EINVAL) while the IOAS has both domains and
     * areas, and raises the alignment to PAGE_SIZE, failing with EADDRINUSE if an area is not
     * aligned to it. Caller holds iovaLock for writing.
     */
    void setLargePages(final boolean enabled) {
        assert iovaLock.isWriteLockedByCurrentThread();
        if (enabled == !iopt.largePagesDisabled()) {
            return;
        }
        if (!enabled && domainCount() > 0 && !iopt.isEmpty()) {
            throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EINVAL,
                    "cannot disable large pages with domains and areas");
        }
        final long alignment = computeAlignment(!enabled);
        if (alignment > iopt.iovaAlignment()) {
            for (Area a : iopt.areas().values()) {
                if (a.start() % alignment != 0 || (a.last() + 1) % alignment != 0) {
                    throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EADDRINUSE,
                            "area " + Long.toHexString(a.start()) + " not aligned to 0x" + Long.toHexString(alignment));
                }
            }
        }
        iopt.setLargePagesDisabled(!enabled);
        iopt.setIovaAlignment(alignment);
    }

    /** iopt_calculate_iova_alignment: the largest minimum page size of domains and accesses. */
    long computeAlignment(final boolean largePagesDisabled) {
        long alignment = 1;
        if (largePagesDisabled) {
            alignment = Math.max(alignment, IoPagetable.PAGE_SIZE);
        }
        return alignment;
    }

    /** Domains attached (none until HWPTs exist). */
    int domainCount() {
        return 0;
    }

    @Override
    void destroy() {
        iovaLock.writeLock().lock();
        try {
            for (Area a : iopt.areas().values().toArray(new Area[0])) {
                iopt.removeArea(a);
            }
        } finally {
            iovaLock.writeLock().unlock();
        }
    }
}
