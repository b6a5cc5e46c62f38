package org.iopersist.kernel.iommu.intel;

import java.util.List;
import java.util.concurrent.locks.ReentrantLock;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommu.DomainOps;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;

/**
 * A second-level paging domain (Linux's {@code struct dmar_domain}): a table of {@link #levels}
 * levels rooted at {@link #pgd}, and the domain id it has on each unit it is attached through.
 *
 * <p>Every access to the tables goes through its {@link PageTableWalker}, under {@link #lock} (but
 * {@link #iovaToPhys}, which needs none). Entries are single 64-bit stores, so a walking device sees
 * either the old or the new entry. Unmap gathers the IOVA span it cleared and the table pages it
 * emptied, invalidates the IOTLB of every unit the domain is attached through, waits, and only then
 * frees the pages: until that wait returns, a device may still be walking them.
 */
final class DmarDomain implements DomainOps {
    private static final long SZ_2M = 1L << 21;
    private static final long SZ_1G = 1L << 30;

    final int levels;
    final int flags;
    final long pgd;
    private final IntelIommuDriver driver;
    /** Where this domain's table pages come from; a handover lists its chunks. */
    private final TablePagePool pages;
    private final long apertureLast;
    private final long physLimit;
    private final boolean leaf2M;
    private final boolean leaf1G;
    private final ReentrantLock lock = new ReentrantLock();
    /** Per unit index: the domain id (0: not attached there) and how many devices use it. */
    private final int[] did;
    private final int[] users;
    private final PageTableWalker walker;
    // Reused under the lock so the unmap path allocates nothing in steady state.
    private final PageTableWalker.Gather gather = new PageTableWalker.Gather();
    private boolean freed;
    /** Its tables go into the next handover: allocated so (the RFC), or preserved later by LUO. */
    private volatile boolean persistent;

    DmarDomain(final IntelIommuDriver driver, final IntelIommu home, final int flags) {
        this(driver, home, flags, home.levels, -1, null);
    }

    /** A domain over an existing table (adopted from a handover) when {@code pgdOrNew} ≥ 0. */
    private DmarDomain(final IntelIommuDriver driver, final IntelIommu home, final int flags, final int levels,
            final long pgdOrNew, final TablePagePool pagesOrNew) {
        this.driver = driver;
        this.pages = pagesOrNew != null ? pagesOrNew : new TablePagePool(driver.memory(), driver.frames());
        this.flags = flags;
        this.levels = levels;
        this.apertureLast = (1L << Math.min(12 + 9 * levels, home.cap.mgaw())) - 1;
        this.physLimit = 1L << home.haw;
        this.leaf2M = home.cap.supports2M();
        this.leaf1G = home.cap.supports1G();
        this.did = new int[driver.unitCount()];
        this.users = new int[driver.unitCount()];
        this.pgd = pgdOrNew >= 0 ? pgdOrNew : pages.allocZeroedPage();
        this.walker = new PageTableWalker(driver.memory(), pages, pgd, levels, leaf2M, leaf1G);
        this.persistent = (flags & org.iopersist.kernel.iommu.IommuDomain.PERSISTENT) != 0;
    }

    /**
     * A persistent domain re-hydrated from a handover: the live table at {@code pgd}, already pointed
     * at by context entries with these domain ids. {@code dids[u]} is 0 where it is not attached.
     */
    static DmarDomain adopt(final IntelIommuDriver driver, final IntelIommu home, final int flags, final int levels,
            final long pgd, final TablePagePool pages, final int[] dids, final int[] users) {
        final DmarDomain d = new DmarDomain(driver, home, flags, levels, pgd, pages);
        System.arraycopy(dids, 0, d.did, 0, dids.length);
        System.arraycopy(users, 0, d.users, 0, users.length);
        return d;
    }

    boolean persistent() {
        return persistent;
    }

    /** Set by the driver when LUO preserves (or stops preserving) this domain after its allocation. */
    void persistent(final boolean on) {
        persistent = on;
    }

    /** EBUSY while a finalized handover describes this domain's tables. */
    private void checkMutable() {
        if (persistent() && driver.frozen()) {
            throw new KernelException(Errno.EBUSY, "persistent domain is frozen for live update");
        }
    }

    /**
     * The chunks holding this domain's table pages ({@code phys | order}), how many pages are in use
     * and which ({@link TablePagePool#usage}): what a handover preserves and lists.
     */
    TableChunks tableChunks() {
        lock.lock();
        try {
            final long[] chunks = new long[pages.chunkCount()];
            for (int i = 0; i < chunks.length; i++) {
                chunks[i] = pages.chunk(i);
            }
            return new TableChunks(chunks, pages.pages(), pages.usage());
        } finally {
            lock.unlock();
        }
    }

    record TableChunks(long[] chunks, long pages, long[] usage) {
    }

    /**
     * The structure check of adopted tables that boot leaves to the scrub: a walk from the pgd must
     * reach each table page of the pool once, and no other page. Boot took the pool from the
     * handover's {@code table-usage} without reading a table.
     */
    @Override
    public String checkTables() {
        lock.lock();
        try {
            final TablePagePool.Incoming reached = pages.blank();
            final String[] bad = {null};
            walker.visitTables(new PageTableWalker.TableVisitor<RuntimeException>() {
                @Override
                public void table(final long phys, final int level) {
                    tables(phys, 1, level);
                }

                @Override
                public void tables(final long phys, final int count, final int level) {
                    final long at = bad[0] == null ? reached.mark(phys, count) : -1;
                    if (at >= 0) {
                        bad[0] = String.format("table page 0x%x is in none of the domain's chunks, or is reached twice", at);
                    }
                }
            });
            if (bad[0] == null && !reached.sameUsage(pages)) {
                bad[0] = String.format("the tables reach %d pages, not the %d table-usage marks in use", reached.pages(), pages.pages());
            }
            return bad[0];
        } finally {
            lock.unlock();
        }
    }

    @Override
    public long handoverKey() {
        return pgd;
    }

    @Override
    public long apertureLast() {
        return apertureLast;
    }

    @Override
    public long pgsizeBitmap() {
        return (1L << 12) | (leaf2M ? SZ_2M : 0) | (leaf1G ? SZ_1G : 0);
    }

    @Override
    public List<ReservedRegion> reservedRegions() {
        return List.of(ReservedRegion.INTERRUPT_WINDOW);
    }

    /** AW field of context entries pointing here. */
    int aw() {
        return levels - 2;
    }

    // ------------------------------------------------------------------ attachment bookkeeping

    /** Takes a reference on this domain's id on {@code unit}, allocating one on first use. */
    int acquireDid(final IntelIommu unit) {
        lock.lock();
        try {
            checkLive();
            if (!unit.cap.supportsLevels(levels) || unit.addressWidth() < Long.numberOfTrailingZeros(apertureLast + 1)
                    || (leaf2M && !unit.cap.supports2M()) || (leaf1G && !unit.cap.supports1G())) {
                throw new KernelException(Errno.EINVAL, String.format(
                        "domain (%d levels, 2M %b, 1G %b) does not fit VT-d unit %d", levels, leaf2M, leaf1G, unit.index));
            }
            if (users[unit.index]++ == 0) {
                did[unit.index] = unit.allocDid();
            }
            return did[unit.index];
        } finally {
            lock.unlock();
        }
    }

    /** Drops a reference taken by {@link #acquireDid}; the caller has already invalidated. */
    void releaseDid(final IntelIommu unit) {
        lock.lock();
        try {
            if (--users[unit.index] == 0) {
                unit.freeDid(did[unit.index]);
                did[unit.index] = 0;
            }
        } finally {
            lock.unlock();
        }
    }

    int didOn(final int unit) {
        return did[unit];
    }

    // ------------------------------------------------------------------ map

    @Override
    public void map(final long iova, final long phys, final long size, final int prot) {
        if (size <= 0 || ((iova | phys | size) & 0xFFF) != 0) {
            throw new KernelException(Errno.EINVAL, String.format("map iova=0x%x phys=0x%x size=0x%x: not 4K aligned", iova, phys, size));
        }
        if ((prot & ~(IommuDomain.READ | IommuDomain.WRITE)) != 0 || prot == 0) {
            throw new KernelException(Errno.EINVAL, "map prot=0x" + Integer.toHexString(prot));
        }
        if (Long.compareUnsigned(iova, apertureLast) > 0 || Long.compareUnsigned(size - 1, apertureLast - iova) > 0) {
            throw new KernelException(Errno.EFAULT, String.format("map iova=0x%x size=0x%x beyond the %d-bit aperture",
                    iova, size, Long.numberOfTrailingZeros(apertureLast + 1)));
        }
        if (phys < 0 || size > physLimit || phys > physLimit - size) {
            throw new KernelException(Errno.EINVAL, String.format("map phys=0x%x size=0x%x beyond the host address width", phys, size));
        }
        final long leafBits = ((prot & IommuDomain.READ) != 0 ? SlPte.R : 0) | ((prot & IommuDomain.WRITE) != 0 ? SlPte.W : 0);
        lock.lock();
        try {
            checkLive();
            checkMutable();
            final long done = walker.map(iova, iova + size - 1, phys, leafBits);
            if (done != size) {
                if (done > 0) {
                    unmapLocked(iova, done); // nothing of a failed map stays behind
                }
                throw new KernelException(Errno.EADDRINUSE, String.format("map iova=0x%x: 0x%x is already mapped", iova, iova + done));
            }
        } finally {
            lock.unlock();
        }
    }

    // ------------------------------------------------------------------ unmap

    @Override
    public long unmap(final long iova, final long size) {
        if (size <= 0 || ((iova | size) & 0xFFF) != 0) {
            throw new KernelException(Errno.EINVAL, String.format("unmap iova=0x%x size=0x%x: not 4K aligned", iova, size));
        }
        if (Long.compareUnsigned(iova, apertureLast) > 0 || Long.compareUnsigned(size - 1, apertureLast - iova) > 0) {
            throw new KernelException(Errno.EINVAL, String.format("unmap iova=0x%x size=0x%x beyond the aperture", iova, size));
        }
        lock.lock();
        try {
            checkLive();
            checkMutable();
            final long leafStart = leafContaining(iova);
            if (leafStart >= 0 && leafStart != iova) {
                throw new KernelException(Errno.EINVAL, String.format("unmap iova=0x%x starts inside the leaf at 0x%x", iova, leafStart));
            }
            return unmapLocked(iova, size);
        } finally {
            lock.unlock();
        }
    }

    private long unmapLocked(final long iova, final long size) {
        final long bytes = walker.unmap(iova, iova + size - 1, gather);
        if (bytes > 0 || gather.pageCount() > 0) {
            final boolean leafOnly = gather.pageCount() == 0;
            for (int u = 0; u < did.length; u++) {
                if (did[u] != 0) {
                    driver.unit(u).flushIotlb(did[u], gather.start(), gather.last(), leafOnly);
                }
            }
        }
        // The invalidation above has completed: no walk can still reach these pages.
        for (int i = 0; i < gather.pageCount(); i++) {
            pages.free(gather.page(i));
        }
        gather.reset();
        return bytes;
    }

    /** Start of the present leaf that translates {@code iova}, or -1. */
    private long leafContaining(final long iova) {
        final long leaf = walker.lookup(iova);
        return leaf == 0 ? -1 : iova & -PageTableWalker.size(leaf);
    }

    @Override
    public long iovaToPhys(final long iova) {
        if (Long.compareUnsigned(iova, apertureLast) > 0) {
            return -1;
        }
        // intel_iommu_iova_to_phys: lock-free, the walker's lookup keeps no state.
        final long leaf = walker.lookup(iova);
        return leaf == 0 ? -1 : SlPte.address(leaf) | (iova & (PageTableWalker.size(leaf) - 1));
    }

    @Override
    public void forEachLeaf(final LeafVisitor visitor) {
        lock.lock();
        try {
            walker.forEachLeaf(visitor);
        } finally {
            lock.unlock();
        }
    }

    // ------------------------------------------------------------------ teardown

    @Override
    public void free() {
        lock.lock();
        try {
            checkLive();
            for (int u = 0; u < users.length; u++) {
                if (users[u] != 0) {
                    throw new KernelException(Errno.EBUSY, "domain still attached through VT-d unit " + u);
                }
            }
            checkMutable();
            pages.freeAll();
            freed = true;
            driver.forget(this);
        } finally {
            lock.unlock();
        }
    }

    private void checkLive() {
        if (freed) {
            throw new IllegalStateException("use of a freed VT-d domain");
        }
    }
}
