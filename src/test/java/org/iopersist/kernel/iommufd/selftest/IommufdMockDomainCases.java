package org.iopersist.kernel.iommufd.selftest;

import java.lang.foreign.MemorySegment;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * FIXTURE(iommufd_mock_domain) of the selftest: an IOAS with one or two mock domains, mapping from
 * 4 KiB pages or from 2 MiB huge pages (MAP_HUGETLB), each variant a subclass. ro_unshare is in the
 * ledger with its reason.
 */
abstract class IommufdMockDomainCases extends SelftestFixture {
    /** FIXTURE_VARIANT(iommufd_mock_domain). */
    record Variant(int mockDomains, boolean hugepages) {
    }

    abstract Variant variant();

    int ioasId;
    int hwptId;
    final int[] hwptIds = new int[2];
    final int[] stdevIds = new int[2];
    final int[] idevIds = new int[2];
    int mmapFlags;
    long mmapBufSize;

    @Override
    protected void setUpFixture() {
        ioasId = ioasAlloc();
        for (int i = 0; i != variant().mockDomains(); i++) {
            final int[] ids = mockDomain(ioasId);
            stdevIds[i] = ids[0];
            hwptIds[i] = ids[1];
            idevIds[i] = ids[2];
        }
        hwptId = hwptIds[0];
        mmapFlags = Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS;
        mmapBufSize = PAGE_SIZE * 8;
        if (variant().hugepages()) {
            // MAP_POPULATE will cause the kernel to fail mmap if THPs are not available.
            mmapFlags |= Syscall.MAP_HUGETLB | Syscall.MAP_POPULATE;
            mmapBufSize = HUGEPAGE_SIZE * 2;
        }
    }

    /** check_mock_iova: the kernel checks the user pages made it to the iommu_domain (both, with two). */
    private void checkMockIova(final long ptr, final long iova, final long length) {
        ok(checkMapRaw(hwptId, iova, length, ptr));
        if (hwptIds[1] != 0) {
            ok(checkMapRaw(hwptIds[1], iova, length, ptr));
        }
    }

    private long map(final long va, final long length) {
        return mapId(ioasId, va, length);
    }

    @Test
    void basic() {
        final long bufSize = mmapBufSize;
        // Simple one page map
        final long iova = map(buffer, PAGE_SIZE);
        checkMockIova(buffer, iova, PAGE_SIZE);
        final long buf = mmap(bufSize, mmapFlags);
        // EFAULT half way through mapping
        c.munmap(buf + bufSize / 2, bufSize / 2);
        err(Errno.EFAULT, mapRaw(ioasId, buf, bufSize, 0, RW));
        // EFAULT on first page
        c.munmap(buf, bufSize / 2);
        err(Errno.EFAULT, mapRaw(ioasId, buf, bufSize, 0, RW));
    }

    @Test
    void all_aligns() {
        final long testStep = variant().hugepages() ? mmapBufSize / 16 : MOCK_PAGE_SIZE;
        final long bufSize = mmapBufSize;
        final long buf = mmap(bufSize, mmapFlags);
        checkRefs(buf, bufSize, 0);
        // Map every combination of page size and alignment within a big region, less for the
        // hugepage case as it takes so long to finish.
        for (long start = 0; start < bufSize; start += testStep) {
            long end = variant().hugepages() ? bufSize : start + MOCK_PAGE_SIZE;
            for (; end < bufSize; end += MOCK_PAGE_SIZE) {
                final long length = end - start;
                final long iova = map(buf + start, length);
                checkMockIova(buf + start, iova, length);
                checkRefs(buf + start / PAGE_SIZE * PAGE_SIZE, end / PAGE_SIZE * PAGE_SIZE - start / PAGE_SIZE * PAGE_SIZE, 1);
                unmapId(ioasId, iova, length);
            }
        }
        checkRefs(buf, bufSize, 0);
        c.munmap(buf, bufSize);
    }

    @Test
    void all_aligns_copy() {
        final long testStep = variant().hugepages() ? mmapBufSize / 16 : MOCK_PAGE_SIZE;
        final long bufSize = mmapBufSize;
        final long buf = mmap(bufSize, mmapFlags);
        checkRefs(buf, bufSize, 0);
        for (long start = 0; start < bufSize; start += testStep) {
            long end = variant().hugepages() ? bufSize : start + MOCK_PAGE_SIZE;
            for (; end < bufSize; end += MOCK_PAGE_SIZE) {
                final long length = end - start;
                final long iova = map(buf + start, length);
                // Add and destroy a domain while the area exists
                final int oldId = hwptIds[1];
                final int[] mock = mockDomain(ioasId);
                hwptIds[1] = mock[1];
                checkMockIova(buf + start, iova, length);
                checkRefs(buf + start / PAGE_SIZE * PAGE_SIZE, end / PAGE_SIZE * PAGE_SIZE - start / PAGE_SIZE * PAGE_SIZE, 1);
                destroy(mock[0]);
                hwptIds[1] = oldId;
                unmapId(ioasId, iova, length);
            }
        }
        checkRefs(buf, bufSize, 0);
        c.munmap(buf, bufSize);
    }

    @Test
    void user_copy() {
        final MemorySegment copyCmd = struct(IommuIoasCopy.SIZE);
        // The later fix adds WRITEABLE to the selftest's copies (Linux requires READABLE or WRITEABLE).
        IommuIoasCopy.flags(copyCmd, Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA | Iommufd.IOMMU_IOAS_MAP_WRITEABLE);
        IommuIoasCopy.dstIoasId(copyCmd, ioasId);
        IommuIoasCopy.dstIova(copyCmd, MOCK_APERTURE_START);
        IommuIoasCopy.length(copyCmd, BUFFER_SIZE);
        final MemorySegment unmapCmd = struct(IommuIoasUnmap.SIZE);
        IommuIoasUnmap.ioasId(unmapCmd, ioasId);
        IommuIoasUnmap.iova(unmapCmd, MOCK_APERTURE_START);
        IommuIoasUnmap.length(unmapCmd, BUFFER_SIZE);

        // Pin the pages in an IOAS with no domains then copy to an IOAS with domains
        final int otherIoasId = ioasAlloc();
        IommuIoasCopy.srcIova(copyCmd, mapId(otherIoasId, buffer, BUFFER_SIZE));
        final int access = createAccess(otherIoasId, IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
        accessPages(access, IommuIoasCopy.srcIova(copyCmd), BUFFER_SIZE, buffer);
        IommuIoasCopy.srcIoasId(copyCmd, otherIoasId);
        ok(ioctl(Iommufd.IOMMU_IOAS_COPY, copyCmd));
        checkMockIova(buffer, MOCK_APERTURE_START, BUFFER_SIZE);

        // Now replace the ioas with a new one
        final int newIoasId = ioasAlloc();
        IommuIoasCopy.srcIova(copyCmd, mapId(newIoasId, buffer, BUFFER_SIZE));
        ok(accessReplaceIoasRaw(access, newIoasId));

        // Destroy the old ioas and cleanup copied mapping
        ok(ioctl(Iommufd.IOMMU_IOAS_UNMAP, unmapCmd));
        destroy(otherIoasId);

        // Then run the same test again with the new ioas
        final int pages = accessPages(access, IommuIoasCopy.srcIova(copyCmd), BUFFER_SIZE, buffer);
        IommuIoasCopy.srcIoasId(copyCmd, newIoasId);
        ok(ioctl(Iommufd.IOMMU_IOAS_COPY, copyCmd));
        checkMockIova(buffer, MOCK_APERTURE_START, BUFFER_SIZE);

        destroyAccessPages(access, pages);
        destroyAccess(access);
        destroy(newIoasId);
    }

    @Test
    void replace() {
        final int otherIoasId = ioasAlloc();
        mockDomainReplace(stdevIds[0], otherIoasId);
        // Replacing the IOAS causes the prior HWPT to be deallocated, thus we should get ENOENT
        // when we try to use it.
        if (variant().mockDomains() == 1) {
            err(Errno.ENOENT, mockDomainReplaceRaw(stdevIds[0], hwptIds[0]));
        }
        mockDomainReplace(stdevIds[0], otherIoasId);
        if (variant().mockDomains() >= 2) {
            mockDomainReplace(stdevIds[0], hwptIds[1]);
            mockDomainReplace(stdevIds[0], hwptIds[1]);
            mockDomainReplace(stdevIds[0], hwptIds[0]);
        }
        mockDomainReplace(stdevIds[0], ioasId);
        destroy(otherIoasId);
    }

    @Test
    void alloc_hwpt() {
        for (int i = 0; i != variant().mockDomains(); i++) {
            err(Errno.EOPNOTSUPP, hwptAllocRaw(idevIds[i], ioasId, ~Iommufd.IOMMU_HWPT_ALLOC_NEST_PARENT));
            final int hwpt0 = hwptAlloc(idevIds[i], ioasId, 0);
            final int hwpt1 = hwptAlloc(idevIds[i], ioasId, Iommufd.IOMMU_HWPT_ALLOC_NEST_PARENT);
            // Do a hw_pagetable rotation test
            mockDomainReplace(stdevIds[i], hwpt0);
            err(Errno.EBUSY, destroyRaw(hwpt0));
            mockDomainReplace(stdevIds[i], hwpt1);
            err(Errno.EBUSY, destroyRaw(hwpt1));
            mockDomainReplace(stdevIds[i], ioasId);
            destroy(hwpt1);
            final int stddev = mockDomain(hwpt0)[0];
            destroy(stddev);
            destroy(hwpt0);
        }
    }
}
