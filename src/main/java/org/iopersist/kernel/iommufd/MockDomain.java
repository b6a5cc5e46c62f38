package org.iopersist.kernel.iommufd;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommu.DomainOps;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;

/**
 * The selftest's mock paging domain ({@code mock_iommu_domain} in {@code selftest.c}): no page
 * table, just one entry per 2 KiB IO page ({@code MOCK_IO_PAGE_SIZE}, half a CPU page, so iommufd's
 * sub-page arithmetic is exercised) holding the PFN and flags, as the mock's xarray does. Its
 * aperture is {@code [16 MiB, 2 GiB - 1]}. The entries remember which map call began and ended at
 * them, so an unmap that does not cover whole maps is caught (a WARN, counted by the driver), as
 * {@code mock_domain_unmap_pages} checks.
 *
 * <p>{@link #map} and {@link #unmap} split their range the way the iommu core's
 * {@code __iommu_map}/{@code __iommu_unmap} do ({@code iommu_pgsize}) and hand each piece to the
 * mock's {@code map_pages}/{@code unmap_pages}; with a {@code MOCK_FLAGS_DEVICE_HUGE_IOVA} device
 * the domain also takes 1 MiB pages.
 *
 * <p>Lock: this object's monitor.
 */
final class MockDomain implements DomainOps, DomainOps.DirtyOps {
    static final long MOCK_IO_PAGE_SIZE = 2048;
    static final long MOCK_HUGE_PAGE_SIZE = 512 * MOCK_IO_PAGE_SIZE;
    static final long MOCK_APERTURE_START = 1L << 24;
    static final long MOCK_APERTURE_LAST = (1L << 31) - 1;

    // An entry: the PFN in 2 KiB units, and flags in the top bits (0 = no entry).
    private static final long PRESENT = 1L << 63;
    private static final long START_IOVA = 1L << 62;
    private static final long LAST_IOVA = 1L << 61;
    private static final long DIRTY_IOVA = 1L << 60;
    private static final long HUGE_IOVA = 1L << 59;
    private static final long PFN_MASK = (1L << 52) - 1;
    private static final int CHUNK_SHIFT = 9; // 512 entries, 1 MiB of IOVA, per chunk
    private static final int CHUNK = 1 << CHUNK_SHIFT;

    private final MockIommu iommu;
    private final long pgsizeBitmap;
    private final boolean hasDirtyOps;
    private final Map<Long, long[]> chunks = new TreeMap<>(); // guarded by this; index >> 9 -> entries
    private boolean dirtyTracking; // guarded by this (MOCK_DIRTY_TRACK)

    MockDomain(final MockIommu iommu, final boolean hugeIova, final boolean dirtyOps) {
        this.iommu = iommu;
        this.pgsizeBitmap = MOCK_IO_PAGE_SIZE | (hugeIova ? MOCK_HUGE_PAGE_SIZE : 0);
        this.hasDirtyOps = dirtyOps;
    }

    @Override
    public long apertureStart() {
        return MOCK_APERTURE_START;
    }

    @Override
    public long apertureLast() {
        return MOCK_APERTURE_LAST;
    }

    @Override
    public long pgsizeBitmap() {
        return pgsizeBitmap;
    }

    @Override
    public List<ReservedRegion> reservedRegions() {
        return List.of();
    }

    @Override
    public DirtyOps dirtyOps() {
        return hasDirtyOps ? this : null;
    }

    private long entry(final long index) {
        final long[] c = chunks.get(index >>> CHUNK_SHIFT);
        return c == null ? 0 : c[(int) (index & (CHUNK - 1))];
    }

    private void store(final long index, final long value) {
        long[] c = chunks.get(index >>> CHUNK_SHIFT);
        if (c == null) {
            if (value == 0) {
                return;
            }
            c = new long[CHUNK];
            chunks.put(index >>> CHUNK_SHIFT, c);
        }
        c[(int) (index & (CHUNK - 1))] = value;
    }

    /**
     * iommu_pgsize: the page size for the next piece of {@code [iova, iova + size)} at {@code phys},
     * and how many such pages; returns {pgsize, count}.
     */
    private long[] pgsize(final long iova, final long phys, final long size) {
        final long addrMerge = iova | phys;
        long sizes = pgsizeBitmap & (Long.highestOneBit(size) | (Long.highestOneBit(size) - 1));
        if (addrMerge != 0) {
            sizes &= Long.lowestOneBit(addrMerge) | (Long.lowestOneBit(addrMerge) - 1);
        }
        final long pgsize = Long.highestOneBit(sizes);
        long span = size;
        final long bigger = pgsizeBitmap & ~(pgsize | (pgsize - 1));
        if (bigger != 0) {
            final long next = Long.lowestOneBit(bigger);
            if (((iova ^ phys) & (next - 1)) == 0) {
                final long offset = next - (addrMerge & (next - 1));
                if (offset + next <= size) {
                    span = offset;
                }
            }
        }
        return new long[] {pgsize, span / pgsize};
    }

    /** __iommu_map: the range in pieces of one page size, each one map_pages call. EINVAL if not 2 KiB aligned. */
    @Override
    public synchronized void map(final long iova, final long phys, final long size, final int prot) {
        if (((iova | phys | size) & (MOCK_IO_PAGE_SIZE - 1)) != 0 || size == 0) {
            throw new KernelException(Errno.EINVAL, String.format("mock map iova=0x%x phys=0x%x size=0x%x not 2 KiB aligned",
                    iova, phys, size));
        }
        long done = 0;
        try {
            while (done < size) {
                final long[] p = pgsize(iova + done, phys + done, size - done);
                mapPages(iova + done, phys + done, p[0], p[1]);
                done += p[0] * p[1];
            }
        } catch (RuntimeException e) {
            if (done > 0) {
                unmap(iova, done); // __iommu_map undoes the pieces it mapped
            }
            throw e;
        }
    }

    /**
     * mock_domain_map_pages: the first entry marks a start, the last an end; entries of a huge call
     * say so. Its iommufd_should_fail point (ENOENT) stands for the xarray's allocations, which fault
     * injection does not reach reliably.
     */
    private void mapPages(final long iova, final long phys, final long pgsize, final long pgcount) {
        iommu.fail().point(Errno.ENOENT, "mock_domain_map_pages");
        final long total = pgsize * pgcount;
        for (long cur = 0; cur < total; cur += MOCK_IO_PAGE_SIZE) {
            long flags = PRESENT;
            if (cur == 0) {
                flags |= START_IOVA;
            }
            if (cur + MOCK_IO_PAGE_SIZE == total) {
                flags |= LAST_IOVA;
            }
            if (pgsize != MOCK_IO_PAGE_SIZE) {
                flags |= HUGE_IOVA;
            }
            final long index = (iova + cur) / MOCK_IO_PAGE_SIZE;
            if (entry(index) != 0) {
                iommu.warn(String.format("mock map over a present entry at IOVA 0x%x", iova + cur));
            }
            store(index, flags | ((phys + cur) / MOCK_IO_PAGE_SIZE));
        }
    }

    /** __iommu_unmap: every entry in the range goes; returns the range's size (absent entries count too). */
    @Override
    public synchronized long unmap(final long iova, final long size) {
        if (((iova | size) & (MOCK_IO_PAGE_SIZE - 1)) != 0) {
            iommu.warn(String.format("mock unmap iova=0x%x size=0x%x not 2 KiB aligned", iova, size));
            return 0;
        }
        long done = 0;
        while (done < size) {
            final long[] p = pgsize(iova + done, iova + done, size - done);
            unmapPages(iova + done, p[0] * p[1]);
            done += p[0] * p[1];
        }
        return size;
    }

    /**
     * mock_domain_unmap_pages: iommufd unmaps only whole maps, so the first entry must have begun a
     * map and the last ended one (not checked with huge pages, where the core's page-size switches
     * break calls in the middle of a map).
     */
    private void unmapPages(final long iova, final long length) {
        final boolean check = (pgsizeBitmap & MOCK_HUGE_PAGE_SIZE) == 0;
        for (long cur = 0; cur < length; cur += MOCK_IO_PAGE_SIZE) {
            final long index = (iova + cur) / MOCK_IO_PAGE_SIZE;
            final long ent = entry(index);
            store(index, 0);
            if (check && ent != 0 && cur == 0 && (ent & START_IOVA) == 0) {
                iommu.warn(String.format("mock unmap at IOVA 0x%x starts inside a map", iova));
            }
            if (check && ent != 0 && cur + MOCK_IO_PAGE_SIZE == length && (ent & LAST_IOVA) == 0) {
                iommu.warn(String.format("mock unmap ending at IOVA 0x%x ends inside a map", iova + cur));
            }
        }
    }

    /** mock_domain_iova_to_phys, or -1 with nothing there. */
    @Override
    public synchronized long iovaToPhys(final long iova) {
        final long ent = entry(iova / MOCK_IO_PAGE_SIZE);
        return ent == 0 ? -1 : (ent & PFN_MASK) * MOCK_IO_PAGE_SIZE + (iova & (MOCK_IO_PAGE_SIZE - 1));
    }

    @Override
    public synchronized void forEachLeaf(final LeafVisitor visitor) {
        for (Map.Entry<Long, long[]> c : chunks.entrySet()) {
            final long[] e = c.getValue();
            for (int i = 0; i < CHUNK; i++) {
                if (e[i] != 0) {
                    visitor.leaf(((c.getKey() << CHUNK_SHIFT) + i) * MOCK_IO_PAGE_SIZE, (e[i] & PFN_MASK) * MOCK_IO_PAGE_SIZE,
                            MOCK_IO_PAGE_SIZE, IoasDomain.IOMMU_READ | IoasDomain.IOMMU_WRITE);
                }
            }
        }
    }

    /** mock_domain_free: every entry must be gone (a WARN otherwise). */
    @Override
    public synchronized void free() {
        for (long[] c : chunks.values()) {
            for (long e : c) {
                if (e != 0) {
                    iommu.warn("mock domain freed with entries left");
                    return;
                }
            }
        }
    }

    // ------------------------------------------------------------------ dirty tracking

    /** mock_domain_set_dirty_tracking. */
    @Override
    public synchronized void setDirtyTracking(final boolean enable) {
        dirtyTracking = enable;
    }

    synchronized boolean dirtyTracking() {
        return dirtyTracking;
    }

    /**
     * mock_domain_read_and_clear_dirty: each entry present is an IOPTE of 2 KiB, or of 1 MiB if a
     * huge call made it; one dirty 2 KiB entry in it makes the whole IOPTE dirty.
     */
    @Override
    public synchronized void readAndClearDirty(final long iova, final long size, final boolean noClear,
            final DirtyRecorder recorder) {
        if (!dirtyTracking && recorder != null) {
            throw new KernelException(Errno.EINVAL, "dirty tracking is off");
        }
        final long end = iova + size;
        long cur = iova;
        do {
            final long ent = entry(cur / MOCK_IO_PAGE_SIZE);
            if (ent == 0) {
                cur += MOCK_IO_PAGE_SIZE;
                continue;
            }
            final long pgsize = (ent & HUGE_IOVA) != 0 ? MOCK_HUGE_PAGE_SIZE : MOCK_IO_PAGE_SIZE;
            final long head = cur & ~(pgsize - 1);
            if (testAndClearDirty(head, pgsize, noClear) && recorder != null) {
                recorder.record(cur, pgsize);
            }
            cur += pgsize;
        } while (Long.compareUnsigned(cur, end) < 0);
    }

    /** mock_test_and_clear_dirty. */
    private boolean testAndClearDirty(final long iova, final long pageSize, final boolean noClear) {
        boolean dirty = false;
        for (long cur = iova; cur < iova + pageSize - 1; cur += MOCK_IO_PAGE_SIZE) {
            final long index = cur / MOCK_IO_PAGE_SIZE;
            final long ent = entry(index);
            if (ent == 0 || (ent & DIRTY_IOVA) == 0) {
                continue;
            }
            dirty = true;
            if (!noClear) {
                store(index, ent & ~DIRTY_IOVA);
            }
        }
        return dirty;
    }

    /** IOMMU_TEST_OP_DIRTY's store: marks the entry at {@code index} (in units of the caller's page size) dirty. */
    synchronized boolean markDirty(final long index) {
        final long ent = entry(index);
        if (ent == 0) {
            return false;
        }
        store(index, ent | DIRTY_IOVA);
        return true;
    }

    /** The entry at {@code iova}: its physical address, or -1 (MD_CHECK_MAP). */
    synchronized long physAt(final long iova) {
        final long ent = entry(iova / MOCK_IO_PAGE_SIZE);
        return ent == 0 ? -1 : (ent & PFN_MASK) * MOCK_IO_PAGE_SIZE;
    }
}
