package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.iommufd.MockIommu;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwptGetDirtyBitmap;
import org.iopersist.uapi.IommuHwptSetDirtyTracking;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * IOMMU_TEST_CMD itself, op by op, over the syscall socket: what each op answers and that the mock
 * domain lives in the real iommu core (a device probed on the mock bus, attached to a paging domain
 * the mock driver owns, released when its selftest object goes).
 */
class SelftestCmdTest extends SelftestFixture {
    @Test
    void mockDomainIsADeviceOfTheIommuCore() {
        final int ioas = ioasAlloc();
        final int[] ids = mockDomain(ioas);
        assertTrue(ids[0] > 0 && ids[1] > 0 && ids[2] > 0);
        assertEquals(ioas + 1, ids[0], "the selftest object's id is taken first");
        assertEquals(ioas + 2, ids[2], "then the device's");
        assertEquals(ioas + 3, ids[1], "then the auto HWPT's");
        final IommuDevice dev = IommuDevice.virtual(0);
        final IommuDomain d = rig.kernel.iommu().domainOf(dev);
        assertEquals(IommuDomain.Type.PAGING, d.type());
        assertSame(rig.kernel.iommu().busDriver(MockIommu.class), d.owner());
        assertEquals("iommufd_mock0", dev.toString());
        // The mock's geometry reaches the IOAS through iopt_table_add_domain.
        final MemorySegment r = struct(IommuIoasIovaRanges.SIZE);
        IommuIoasIovaRanges.ioasId(r, ioas);
        IommuIoasIovaRanges.numIovas(r, 0);
        err(Errno.EMSGSIZE, ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, r));
        assertEquals(MOCK_PAGE_SIZE, IommuIoasIovaRanges.outIovaAlignment(r));
        // Mapped pages reach the mock domain, byte for byte.
        final long iova = mapId(ioas, buffer, BUFFER_SIZE);
        ok(checkMapRaw(ids[1], iova, BUFFER_SIZE, buffer));
        err(Errno.EINVAL, checkMapRaw(ids[1], iova, BUFFER_SIZE, buffer + PAGE_SIZE));
        err(Errno.EINVAL, checkMapRaw(ids[1], iova + 1, MOCK_PAGE_SIZE, buffer));
        err(Errno.ENOENT, checkMapRaw(ioas, iova, MOCK_PAGE_SIZE, buffer), "an IOAS is no HWPT_PAGING");
        checkRefs(buffer, BUFFER_SIZE, 1);
        err(Errno.EIO, checkRefsRaw(fd, buffer, BUFFER_SIZE, 2));
        err(Errno.EINVAL, checkRefsRaw(fd, buffer + 1, PAGE_SIZE, 1));
        // The device object belongs to the selftest object: only destroying that removes it.
        err(Errno.EBUSY, destroyRaw(ids[2]));
        unmapId(ioas, iova, BUFFER_SIZE);
        checkRefs(buffer, BUFFER_SIZE, 0);
        destroy(ids[0]);
        assertNull(rig.kernel.iommu().domainOf(dev), "the device left the core");
        err(Errno.ENOENT, destroyRaw(ids[1]));
        destroy(ioas);
    }

    @Test
    void framingAndUnknownOps() {
        err(Errno.EOPNOTSUPP, test(testCmd(99, 0)));
        final MemorySegment small = struct(IommuTestCmd.MIN_SIZE - 1);
        err(Errno.EINVAL, c.ioctl(fd, IommuTestCmd.IOMMU_TEST_CMD, small));
        final MemorySegment exact = testCmd(99, 0);
        Iommufd.size(exact, (int) IommuTestCmd.MIN_SIZE);
        err(Errno.EOPNOTSUPP, test(exact));
        err(Errno.EINVAL, setTempMemoryLimit(11));
        ok(setTempMemoryLimit(12));
        setDefaultMemoryLimit();
        // No HWPT_NESTED exists here, so MD_CHECK_IOTLB finds nothing.
        err(Errno.ENOENT, test(testCmd(IommuTestCmd.IOMMU_TEST_OP_MD_CHECK_IOTLB, 1)));
        err(Errno.ENOENT, mockDomainRaw(77, 0)[0]);
        err(Errno.EINVAL, mockDomainRaw(ioasAlloc(), 1 << 5)[0]);
        assertNull(rig.kernel.iommu().domainOf(IommuDevice.virtual(0)), "a failed MOCK_DOMAIN leaves no device");
    }

    @Test
    void addReservedShowsAsAHole() {
        final int ioas = ioasAlloc();
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_ADD_RESERVED, ioas);
        IommuTestCmd.addReservedStart(s, PAGE_SIZE);
        IommuTestCmd.addReservedLength(s, PAGE_SIZE);
        ok(test(s));
        final long va = c.mmapAnonymous(PAGE_SIZE);
        final MemorySegment r = struct(IommuIoasIovaRanges.SIZE);
        IommuIoasIovaRanges.ioasId(r, ioas);
        IommuIoasIovaRanges.numIovas(r, 4);
        IommuIoasIovaRanges.allowedIovas(r, va);
        ok(ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, r));
        assertEquals(2, IommuIoasIovaRanges.numIovas(r));
        assertEquals(PAGE_SIZE - 1, c.memory().readLong(va + 8));
        assertEquals(2 * PAGE_SIZE, c.memory().readLong(va + 16));
        mapFixedId(ioas, buffer, PAGE_SIZE, 8 * PAGE_SIZE);
        IommuTestCmd.addReservedStart(s, 8 * PAGE_SIZE);
        err(Errno.EADDRINUSE, test(s));
        IommuTestCmd.id(s, 0);
        err(Errno.ENOENT, test(s));
    }

    @Test
    void accessOps() {
        final int ioas = ioasAlloc();
        final MemorySegment bad = testCmd(IommuTestCmd.IOMMU_TEST_OP_CREATE_ACCESS, ioas);
        IommuTestCmd.createAccessFlags(bad, 2);
        err(Errno.EOPNOTSUPP, test(bad));
        final MemorySegment none = testCmd(IommuTestCmd.IOMMU_TEST_OP_CREATE_ACCESS, 99);
        err(Errno.ENOENT, test(none));
        final int access = createAccess(ioas, IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
        assertEquals(fd + 1, access, "the access's fd is the lowest free");
        final long iova = mapId(ioas, buffer, BUFFER_SIZE);
        final int item = accessPages(access, iova, BUFFER_SIZE, buffer);
        checkRefs(buffer, BUFFER_SIZE, 1);
        err(Errno.EBADE, accessPagesRaw(access, iova, PAGE_SIZE, buffer + PAGE_SIZE, 0)[0]);
        err(Errno.EBADFD, accessPagesRaw(fd, iova, PAGE_SIZE, buffer, 0)[0]);
        err(Errno.EBADFD, accessPagesRaw(77, iova, PAGE_SIZE, buffer, 0)[0]);
        err(Errno.ENOMEM, accessPagesRaw(access, iova, (16L << 20) + 1, 0, 0)[0]);
        err(Errno.EOPNOTSUPP, accessPagesRaw(access, iova, PAGE_SIZE, 0, 4)[0]);
        err(Errno.ENOENT, accessPagesRaw(access, iova + BUFFER_SIZE, PAGE_SIZE, 0, 0)[0]);
        destroyAccessPages(access, item);
        err(Errno.ENOENT, destroyAccessPagesRaw(access, item));
        checkRefs(buffer, BUFFER_SIZE, 0);
        // ACCESS_RW both ways, through the IOAS.
        final long tmp = c.mmapAnonymous(PAGE_SIZE);
        c.memory().writeBytes(tmp, new byte[] {1, 2, 3, 4, 5});
        final MemorySegment rw = testCmd(IommuTestCmd.IOMMU_TEST_OP_ACCESS_RW, access);
        IommuTestCmd.accessRwIova(rw, iova + PAGE_SIZE - 2);
        IommuTestCmd.accessRwLength(rw, 5);
        IommuTestCmd.accessRwUptr(rw, tmp);
        IommuTestCmd.accessRwFlags(rw, IommuTestCmd.MOCK_ACCESS_RW_WRITE);
        ok(test(rw));
        assertEquals(3, c.memory().readBytes(buffer + PAGE_SIZE, 1)[0], "written across a page boundary");
        IommuTestCmd.accessRwFlags(rw, 0);
        IommuTestCmd.accessRwUptr(rw, tmp + 100);
        ok(test(rw));
        assertEquals(5, c.memory().readBytes(tmp + 104, 1)[0]);
        IommuTestCmd.accessRwFlags(rw, 1 << 1);
        err(Errno.EOPNOTSUPP, test(rw));
        IommuTestCmd.accessRwFlags(rw, 0);
        IommuTestCmd.accessRwLength(rw, 0);
        err(Errno.EINVAL, test(rw));
        // ACCESS_REPLACE_IOAS: pins go with the old IOAS.
        accessPages(access, iova, PAGE_SIZE, buffer);
        final int other = ioasAlloc();
        err(Errno.ENOENT, accessReplaceIoasRaw(access, 99));
        ok(accessReplaceIoasRaw(access, other));
        checkRefs(buffer, PAGE_SIZE, 0);
        err(Errno.ENOENT, accessPagesRaw(access, iova, PAGE_SIZE, 0, 0)[0]);
        err(Errno.EBUSY, destroyRaw(other));
        destroyAccess(access);
        destroy(other);
    }

    @Test
    void dirtyOps() {
        final int ioas = ioasAlloc();
        final int[] ids = mockDomain(ioas);
        final long[] info = getHwInfoRaw(ids[2], 0, 0);
        ok(info[0]);
        assertEquals(IommuTestCmd.IOMMU_HW_INFO_TYPE_SELFTEST, (int) info[1]);
        assertEquals(8, info[2]);
        assertEquals(1, info[3], "IOMMU_HW_CAP_DIRTY_TRACKING");
        final int hwpt = hwptAlloc(ids[2], ioas, Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        final long iova = MOCK_APERTURE_START;
        mapFixedId(ioas, buffer, BUFFER_SIZE, iova);
        final long bitmap = c.mmapAnonymous(PAGE_SIZE);
        final MemorySegment d = testCmd(IommuTestCmd.IOMMU_TEST_OP_DIRTY, hwpt);
        IommuTestCmd.dirtyIova(d, iova);
        IommuTestCmd.dirtyLength(d, BUFFER_SIZE);
        IommuTestCmd.dirtyPageSize(d, MOCK_PAGE_SIZE);
        IommuTestCmd.dirtyUptr(d, bitmap);
        err(Errno.EINVAL, test(d)); // tracking is off
        final MemorySegment t = struct(IommuHwptSetDirtyTracking.SIZE);
        IommuHwptSetDirtyTracking.hwptId(t, hwpt);
        IommuHwptSetDirtyTracking.flags(t, Iommufd.IOMMU_HWPT_DIRTY_TRACKING_ENABLE);
        ok(ioctl(Iommufd.IOMMU_HWPT_SET_DIRTY_TRACKING, t));
        c.memory().writeBytes(bitmap, new byte[] {(byte) 0x81, 0, 0, 1});
        ok(test(d));
        assertEquals(3, IommuTestCmd.dirtyOutNrDirty(d));
        c.memory().writeBytes(bitmap, new byte[4]);
        final MemorySegment g = struct(IommuHwptGetDirtyBitmap.SIZE);
        IommuHwptGetDirtyBitmap.hwptId(g, hwpt);
        IommuHwptGetDirtyBitmap.iova(g, iova);
        IommuHwptGetDirtyBitmap.length(g, BUFFER_SIZE);
        IommuHwptGetDirtyBitmap.pageSize(g, MOCK_PAGE_SIZE);
        IommuHwptGetDirtyBitmap.data(g, bitmap + 1);
        ok(ioctl(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, g));
        assertEquals((byte) 0x81, c.memory().readBytes(bitmap + 1, 1)[0]);
        assertEquals(1, c.memory().readBytes(bitmap + 4, 1)[0]);
        c.memory().writeBytes(bitmap, new byte[8]);
        ok(ioctl(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, g));
        assertEquals(0, c.memory().readLong(bitmap), "read and cleared");
        IommuHwptGetDirtyBitmap.length(g, BUFFER_SIZE + PAGE_SIZE);
        err(Errno.EINVAL, ioctl(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, g));
        IommuHwptGetDirtyBitmap.length(g, -iova + MOCK_PAGE_SIZE);
        err(Errno.EOVERFLOW, ioctl(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, g));
        IommuHwptGetDirtyBitmap.length(g, BUFFER_SIZE);
        IommuHwptGetDirtyBitmap.flags(g, 2);
        err(Errno.EOPNOTSUPP, ioctl(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, g));
        IommuHwptGetDirtyBitmap.flags(g, 0);
        IommuHwptGetDirtyBitmap.hwptId(g, ids[1]);
        err(Errno.EOPNOTSUPP, ioctl(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, g), "the auto HWPT has no dirty tracking");
        IommuHwptSetDirtyTracking.hwptId(t, ioas);
        err(Errno.ENOENT, ioctl(Iommufd.IOMMU_HWPT_SET_DIRTY_TRACKING, t));
        // A NO_DIRTY device cannot join a dirty-tracking domain, nor allocate one.
        err(Errno.EINVAL, mockDomainRaw(hwpt, IommuTestCmd.MOCK_FLAGS_DEVICE_NO_DIRTY)[0]);
        final int[] noDirty = mockDomainFlags(ioasAlloc(), IommuTestCmd.MOCK_FLAGS_DEVICE_NO_DIRTY);
        assertEquals(0, getHwInfoRaw(noDirty[2], 0, 0)[3]);
        err(Errno.EOPNOTSUPP, hwptAllocRaw(noDirty[2], ioas, Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
        unmapId(ioas, iova, BUFFER_SIZE);
        destroy(hwpt);
    }

    private static void err(final Errno want, final long ret, final String why) {
        assertTrue(ret < 0, why);
        assertEquals(want, Errno.of((int) -ret), why);
    }

    @Test
    void hugeTlbMappingsAreContiguous2MiBPages() {
        final long va = mmap(2 * HUGEPAGE_SIZE, Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS | Syscall.MAP_HUGETLB | Syscall.MAP_POPULATE);
        assertEquals(0, va % HUGEPAGE_SIZE);
        final long p0 = c.memory().physOf(va);
        assertEquals(0, p0 % HUGEPAGE_SIZE);
        assertEquals(p0 + HUGEPAGE_SIZE - PAGE_SIZE, c.memory().physOf(va + HUGEPAGE_SIZE - PAGE_SIZE));
        assertNotEquals(-1, va);
        c.munmap(va, 2 * HUGEPAGE_SIZE);
    }
}
