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

    // guarded by domainsLock, then iovaLock for the areas' fill state
    final java.util.List<IoasDomain> domains = new java.util.ArrayList<>();
    /** Accesses attached (iopt->access_list); guarded by iovaLock. */
    final java.util.List<Access> accesses = new java.util.ArrayList<>();
    final ReentrantReadWriteLock domainsLock = new ReentrantReadWriteLock();

    /**
     * One mapped range: its IOVA interval, the pages behind it and where in them it starts.
     *
     * @param start     first IOVA
     * @param last      last IOVA (inclusive)
     * @param prot      IOMMU_READ | IOMMU_WRITE
     * @param pages     the shared page range (this area holds one reference)
     * @param startByte byte index into {@code pages} of the area's first byte
     */
    record Area(long start, long last, int prot, IoptPages pages, long startByte) implements IoPagetable.Span {
        long length() {
            return last - start + 1;
        }

        /** Maps the whole area into {@code d}, one call per physically contiguous run. */
        void fill(final IoasDomain d) {
            final long firstIndex = startByte >>> 12;
            final long lastIndex = (startByte + length() - 1) >>> 12;
            final long iovaBase = start - (startByte & (IoPagetable.PAGE_SIZE - 1));
            for (long i = firstIndex; i <= lastIndex; ) {
                final long run = pages.contiguousPages(i, lastIndex - i + 1);
                d.map(iovaBase + ((i - firstIndex) << 12), pages.frame(i), run << 12, prot);
                i += run;
            }
        }

        void unfill(final IoasDomain d) {
            final long iovaBase = start - (startByte & (IoPagetable.PAGE_SIZE - 1));
            final long pagesSpanned = ((startByte + length() - 1) >>> 12) - (startByte >>> 12) + 1;
            d.unmap(iovaBase, pagesSpanned << 12);
        }
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
        for (IoasDomain d : domains) {
            alignment = Math.max(alignment, d.minPageSize());
        }
        for (Access a : accesses) {
            alignment = Math.max(alignment, a.alignment());
        }
        if (largePagesDisabled) {
            alignment = Math.max(alignment, IoPagetable.PAGE_SIZE);
        }
        return alignment;
    }

    /** Domains attached. */
    int domainCount() {
        return domains.size();
    }

    /**
     * Publishes a new area: pins its pages if any domain needs them and fills every domain; on
     * failure nothing of it stays. Caller holds domainsLock (read) and iovaLock (write).
     */
    void addArea(final Area a) {
        if (a.pages().guestmem() != null) {
            // Each area pins exactly the file range it maps, whatever domains come and go.
            a.pages().guestmem().pin(a.pages().fileOffset(a.startByte()), a.length());
        }
        try {
            addAreaPinned(a);
        } catch (RuntimeException e) {
            if (a.pages().guestmem() != null) {
                a.pages().guestmem().unpin(a.pages().fileOffset(a.startByte()), a.length());
            }
            throw e;
        }
    }

    private void addAreaPinned(final Area a) {
        iopt.insertArea(a);
        if (domains.isEmpty()) {
            return;
        }
        try {
            a.pages().pin();
        } catch (RuntimeException e) {
            iopt.removeArea(a);
            throw e;
        }
        int filled = 0;
        try {
            for (; filled < domains.size(); filled++) {
                a.fill(domains.get(filled));
            }
        } catch (RuntimeException e) {
            // The failing domain may hold part of the area: unmap tolerates holes.
            for (int i = 0; i <= filled && i < domains.size(); i++) {
                a.unfill(domains.get(i));
            }
            a.pages().unpin();
            iopt.removeArea(a);
            throw e;
        }
    }

    /** Removes an area from every domain and the tree, dropping its pin and pages reference. */
    void removeArea(final Area a) {
        if (!domains.isEmpty()) {
            for (IoasDomain d : domains) {
                a.unfill(d);
            }
            a.pages().unpin();
        }
        iopt.removeArea(a);
        if (a.pages().guestmem() != null) {
            a.pages().guestmem().unpin(a.pages().fileOffset(a.startByte()), a.length());
        }
        a.pages().put();
    }

    /**
     * iopt_table_add_domain: reserves what the domain cannot translate, raises the alignment to its
     * smallest page (EADDRINUSE if an area is not aligned to it), pins every area if this is the
     * first domain, and fills it. On failure nothing changes.
     */
    void addDomain(final IoasDomain d) {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            final long alignment = Math.max(computeAlignment(iopt.largePagesDisabled()), d.minPageSize());
            for (Area a : iopt.areas().values()) {
                if (a.start() % alignment != 0 || (a.last() + 1) % alignment != 0) {
                    throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EADDRINUSE, String.format(
                            "area [0x%x, 0x%x] is not aligned to the domain's page size 0x%x", a.start(), a.last(), alignment));
                }
            }
            try {
                for (IovaRange r : d.reservedRanges()) {
                    iopt.reserve(r.start(), r.last(), d);
                }
            } catch (RuntimeException e) {
                iopt.unreserve(d);
                throw e;
            }
            final java.util.List<Area> filled = new java.util.ArrayList<>();
            try {
                for (Area a : iopt.areas().values()) {
                    if (domains.isEmpty()) {
                        a.pages().pin();
                    }
                    filled.add(a);
                    a.fill(d);
                }
            } catch (RuntimeException e) {
                for (Area a : filled) {
                    a.unfill(d);
                    if (domains.isEmpty()) {
                        a.pages().unpin();
                    }
                }
                iopt.unreserve(d);
                throw e;
            }
            domains.add(d);
            iopt.setIovaAlignment(alignment);
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    /**
     * A restored domain that already maps every area (its tables survived the kexec): reserve and
     * account as {@link #addDomain} does, but map nothing.
     */
    void adoptDomain(final IoasDomain d) {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            for (IovaRange r : d.reservedRanges()) {
                iopt.reserve(r.start(), r.last(), d);
            }
            if (domains.isEmpty()) {
                for (Area a : iopt.areas().values()) {
                    a.pages().pin();
                }
            }
            domains.add(d);
            iopt.setIovaAlignment(Math.max(iopt.iovaAlignment(), d.minPageSize()));
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    /** iopt_table_remove_domain: empties the domain, unpins when it was the last, drops its reservations. */
    void removeDomain(final IoasDomain d) {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            if (!domains.remove(d)) {
                return;
            }
            for (Area a : iopt.areas().values()) {
                a.unfill(d);
                if (domains.isEmpty()) {
                    a.pages().unpin();
                }
            }
            iopt.unreserve(d);
            iopt.setIovaAlignment(computeAlignment(iopt.largePagesDisabled()));
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    /** iopt_add_access: raises the alignment if the access pins pages (EADDRINUSE if an area is not aligned). */
    void addAccess(final Access a) {
        iovaLock.writeLock().lock();
        try {
            final long alignment = Math.max(computeAlignment(iopt.largePagesDisabled()), a.alignment());
            for (Area area : iopt.areas().values()) {
                if (area.start() % alignment != 0 || (area.last() + 1) % alignment != 0) {
                    throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EADDRINUSE,
                            "area 0x" + Long.toHexString(area.start()) + " is not aligned for a pinning access");
                }
            }
            accesses.add(a);
            iopt.setIovaAlignment(alignment);
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    void removeAccess(final Access a) {
        iovaLock.writeLock().lock();
        try {
            accesses.remove(a);
            iopt.setIovaAlignment(computeAlignment(iopt.largePagesDisabled()));
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    /** Accesses pinning part of {@code [start, last]}. Caller holds iovaLock. */
    java.util.List<Access> accessesPinning(final long start, final long last) {
        final java.util.List<Access> out = new java.util.ArrayList<>();
        for (Access a : accesses) {
            if (a.pins(start, last)) {
                out.add(a);
            }
        }
        return out;
    }

    /** Reserves a device's regions for as long as it is attached here (owner = the device). */
    void reserveForDevice(final Object device, final java.util.List<IovaRange> ranges) {
        iovaLock.writeLock().lock();
        try {
            try {
                for (IovaRange r : ranges) {
                    iopt.reserve(r.start(), r.last(), device);
                }
            } catch (RuntimeException e) {
                iopt.unreserve(device);
                throw e;
            }
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    void unreserveForDevice(final Object device) {
        iovaLock.writeLock().lock();
        try {
            iopt.unreserve(device);
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    @Override
    void destroy() {
        // Destroy never fails: every area goes, its pages are unpinned and released.
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            for (Area a : iopt.areas().values().toArray(new Area[0])) {
                removeArea(a);
            }
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }
}
