package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.Random;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * FIXTURE(iommufd_ioas) of the selftest: an IOAS with no, one or two mock domains (or one with a
 * 16-byte temporary memory limit), each variant a subclass. Every TEST_F of the fixture is a method
 * of the same name; fork_gone, fork_present and alloc_hwpt_nested are in the ledger with their
 * reasons.
 */
abstract class IommufdIoasCases extends SelftestFixture {
    /** FIXTURE_VARIANT(iommufd_ioas). */
    record Variant(int mockDomains, int memoryLimit) {
    }

    abstract Variant variant();

    int ioasId;
    int stdevId;
    int hwptId;
    int deviceId;
    long baseIova;

    @Override
    protected void setUpFixture() {
        ioasId = ioasAlloc();
        if (variant().memoryLimit() == 0) {
            setDefaultMemoryLimit();
        } else {
            ok(setTempMemoryLimit(variant().memoryLimit()));
        }
        for (int i = 0; i != variant().mockDomains(); i++) {
            final int[] ids = mockDomain(ioasId);
            stdevId = ids[0];
            hwptId = ids[1];
            deviceId = ids[2];
            baseIova = MOCK_APERTURE_START;
        }
    }

    @Override
    protected void tearDownFixture() {
        setDefaultMemoryLimit();
    }

    // The helpers as the selftest's macros use them, on self->ioas_id.
    private long map(final long va, final long length) {
        return mapId(ioasId, va, length);
    }

    private void mapFixed(final long va, final long length, final long iova) {
        mapFixedId(ioasId, va, length, iova);
    }

    private void errMapFixed(final Errno e, final long va, final long length, final long iova) {
        err(e, mapRaw(ioasId, va, length, iova, FIXED_RW));
    }

    private void unmap(final long iova, final long length) {
        unmapId(ioasId, iova, length);
    }

    private void errUnmap(final Errno e, final long iova, final long length) {
        err(e, unmapRaw(ioasId, iova, length)[0]);
    }

    private MemorySegment addReserved(final long start, final long length) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_ADD_RESERVED, ioasId);
        IommuTestCmd.addReservedStart(s, start);
        IommuTestCmd.addReservedLength(s, length);
        return s;
    }

    /** IOMMU_IOAS_ALLOW_IOVAS over {@code ranges} (user memory, pairs of u64). */
    private MemorySegment allowCmd(final long rangesVa, final int num) {
        final MemorySegment s = struct(IommuIoasAllowIovas.SIZE);
        IommuIoasAllowIovas.ioasId(s, ioasId);
        IommuIoasAllowIovas.numIovas(s, num);
        IommuIoasAllowIovas.allowedIovas(s, rangesVa);
        return s;
    }

    private void setRange(final long rangesVa, final int i, final long start, final long last) {
        c.memory().writeLong(rangesVa + 16L * i, start);
        c.memory().writeLong(rangesVa + 16L * i + 8, last);
    }

    @Test
    void ioas_auto_destroy() {
    }

    @Test
    void ioas_destroy() {
        if (stdevId != 0) {
            // IOAS cannot be freed while a device has a HWPT using it
            err(Errno.EBUSY, destroyRaw(ioasId));
        } else {
            // Can allocate and manually free an IOAS table
            destroy(ioasId);
        }
    }

    @Test
    void hwpt_attach() {
        // Create a device attached directly to a hwpt
        if (stdevId != 0) {
            mockDomain(hwptId);
        } else {
            err(Errno.ENOENT, mockDomainRaw(hwptId, 0)[0]);
        }
    }

    @Test
    void ioas_area_destroy() {
        // Adding an area does not change ability to destroy
        mapFixed(buffer, PAGE_SIZE, baseIova);
        if (stdevId != 0) {
            err(Errno.EBUSY, destroyRaw(ioasId));
        } else {
            destroy(ioasId);
        }
    }

    @Test
    void ioas_area_auto_destroy() {
        // Can allocate and automatically free an IOAS table with many areas
        for (int i = 0; i != 10; i++) {
            mapFixed(buffer, PAGE_SIZE, baseIova + i * PAGE_SIZE);
        }
    }

    /** _test_cmd_get_hw_info's checks on what came back. */
    private void checkHwInfo(final long data, final int dataLen) {
        final long[] r = getHwInfoRaw(deviceId, data, dataLen);
        ok(r[0]);
        assertEquals(IommuTestCmd.IOMMU_HW_INFO_TYPE_SELFTEST, (int) r[1]);
        assertEquals(8, r[2], "the kernel's struct iommu_test_hw_info");
        if (dataLen > 8) {
            final byte[] trailing = c.memory().readBytes(data + 8, dataLen - 8);
            assertArrayEquals(new byte[dataLen - 8], trailing, "trailing bytes zeroed");
        }
        if (data != 0) {
            if (dataLen >= 8) {
                assertEquals(IommuTestCmd.IOMMU_HW_INFO_SELFTEST_REGVAL, (int) (c.memory().readLong(data) >>> 32));
            }
            if (dataLen >= 4) {
                assertEquals(0, (int) c.memory().readLong(data), "flags");
            }
        }
    }

    @Test
    void get_hw_info() {
        final long info = c.mmapAnonymous(PAGE_SIZE);
        c.memory().writeBytes(info, new byte[] {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1});
        if (deviceId != 0) {
            checkHwInfo(0, 0); // a zero-size user_buffer
            checkHwInfo(info, 8); // exact size
            checkHwInfo(info, 16); // larger: the kernel zeroes the trailing bytes
            checkHwInfo(info, 4); // smaller: the fields within the size still get updated
        } else {
            err(Errno.ENOENT, getHwInfoRaw(deviceId, info, 8)[0]);
            err(Errno.ENOENT, getHwInfoRaw(deviceId, info, 16)[0]);
        }
    }

    @Test
    void area() {
        // Unmap fails if nothing is mapped
        for (int i = 0; i != 10; i++) {
            errUnmap(Errno.ENOENT, i * PAGE_SIZE, PAGE_SIZE);
        }
        // Unmap works
        for (int i = 0; i != 10; i++) {
            mapFixed(buffer, PAGE_SIZE, baseIova + i * PAGE_SIZE);
        }
        for (int i = 0; i != 10; i++) {
            unmap(baseIova + i * PAGE_SIZE, PAGE_SIZE);
        }
        // Split fails
        mapFixed(buffer, PAGE_SIZE * 2, baseIova + 16 * PAGE_SIZE);
        errUnmap(Errno.ENOENT, baseIova + 16 * PAGE_SIZE, PAGE_SIZE);
        errUnmap(Errno.ENOENT, baseIova + 17 * PAGE_SIZE, PAGE_SIZE);
        // Over map fails
        errMapFixed(Errno.EEXIST, buffer, PAGE_SIZE * 2, baseIova + 16 * PAGE_SIZE);
        errMapFixed(Errno.EEXIST, buffer, PAGE_SIZE, baseIova + 16 * PAGE_SIZE);
        errMapFixed(Errno.EEXIST, buffer, PAGE_SIZE, baseIova + 17 * PAGE_SIZE);
        errMapFixed(Errno.EEXIST, buffer, PAGE_SIZE * 2, baseIova + 15 * PAGE_SIZE);
        errMapFixed(Errno.EEXIST, buffer, PAGE_SIZE * 3, baseIova + 15 * PAGE_SIZE);
        // unmap all works
        unmap(0, -1L);
        // Unmap all succeeds on an empty IOAS
        unmap(0, -1L);
    }

    @Test
    void unmap_fully_contained_areas() {
        // Give no_domain some space to rewind base_iova
        baseIova += 4 * PAGE_SIZE;
        for (int i = 0; i != 4; i++) {
            mapFixed(buffer, 8 * PAGE_SIZE, baseIova + i * 16 * PAGE_SIZE);
        }
        // Unmap not fully contained area doesn't work
        errUnmap(Errno.ENOENT, baseIova - 4 * PAGE_SIZE, 8 * PAGE_SIZE);
        errUnmap(Errno.ENOENT, baseIova + 3 * 16 * PAGE_SIZE + 8 * PAGE_SIZE - 4 * PAGE_SIZE, 8 * PAGE_SIZE);
        // Unmap fully contained areas works
        final long[] r = unmapRaw(ioasId, baseIova - 4 * PAGE_SIZE, 3 * 16 * PAGE_SIZE + 8 * PAGE_SIZE + 4 * PAGE_SIZE);
        ok(r[0]);
        assertEquals(32 * PAGE_SIZE, r[1]);
    }

    /** 1UL << (ffs(length) - 1): the lowest set bit. */
    private static long lowBit(final long length) {
        return Long.lowestOneBit(length);
    }

    @Test
    void area_auto_iova() {
        final MemorySegment testCmd = addReserved(PAGE_SIZE * 4, PAGE_SIZE * 100);
        final long ranges = c.mmapAnonymous(PAGE_SIZE);
        final MemorySegment allowCmd = allowCmd(ranges, 1);
        final long[] iovas = new long[10];
        // Simple 4k pages
        for (int i = 0; i != 10; i++) {
            iovas[i] = map(buffer, PAGE_SIZE);
        }
        for (int i = 0; i != 10; i++) {
            unmap(iovas[i], PAGE_SIZE);
        }
        // Kernel automatically aligns IOVAs properly
        for (int i = 0; i != 10; i++) {
            final long length = PAGE_SIZE * (i + 1);
            if (stdevId != 0) {
                iovas[i] = map(buffer, length);
            } else {
                iovas[i] = map(1L << 31, length);
            }
            assertEquals(0, iovas[i] % lowBit(length));
        }
        for (int i = 0; i != 10; i++) {
            unmap(iovas[i], PAGE_SIZE * (i + 1));
        }
        // Avoids a reserved region
        ok(test(testCmd));
        for (int i = 0; i != 10; i++) {
            final long length = PAGE_SIZE * (i + 1);
            iovas[i] = map(buffer, length);
            assertEquals(0, iovas[i] % lowBit(length));
            assertFalse(iovas[i] > PAGE_SIZE * 4 && iovas[i] < PAGE_SIZE * 4 + PAGE_SIZE * 100);
        }
        for (int i = 0; i != 10; i++) {
            unmap(iovas[i], PAGE_SIZE * (i + 1));
        }
        // Allowed region intersects with a reserved region
        setRange(ranges, 0, PAGE_SIZE, PAGE_SIZE * 600);
        err(Errno.EADDRINUSE, ioctl(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, allowCmd));
        // Allocate from an allowed region
        final long start;
        final long last;
        if (stdevId != 0) {
            start = MOCK_APERTURE_START + PAGE_SIZE;
            last = MOCK_APERTURE_START + PAGE_SIZE * 600 - 1;
        } else {
            start = PAGE_SIZE * 200;
            last = PAGE_SIZE * 600 - 1;
        }
        setRange(ranges, 0, start, last);
        ok(ioctl(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, allowCmd));
        for (int i = 0; i != 10; i++) {
            final long length = PAGE_SIZE * (i + 1);
            iovas[i] = map(buffer, length);
            assertEquals(0, iovas[i] % lowBit(length));
            assertTrue(iovas[i] >= start);
            assertTrue(iovas[i] <= last);
            assertTrue(iovas[i] + length > start);
            assertTrue(iovas[i] + length <= last + 1);
        }
        for (int i = 0; i != 10; i++) {
            unmap(iovas[i], PAGE_SIZE * (i + 1));
        }
    }

    @Test
    void area_allowed() {
        final MemorySegment testCmd = addReserved(PAGE_SIZE * 4, PAGE_SIZE * 100);
        final long ranges = c.mmapAnonymous(PAGE_SIZE);
        final MemorySegment allowCmd = allowCmd(ranges, 1);
        // Reserved intersects an allowed
        setRange(ranges, 0, baseIova, baseIova + PAGE_SIZE * 600);
        ok(ioctl(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, allowCmd));
        IommuTestCmd.addReservedStart(testCmd, baseIova + PAGE_SIZE);
        IommuTestCmd.addReservedLength(testCmd, PAGE_SIZE);
        err(Errno.EADDRINUSE, test(testCmd));
        IommuIoasAllowIovas.numIovas(allowCmd, 0);
        ok(ioctl(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, allowCmd));
        // Allowed intersects a reserved
        ok(test(testCmd));
        IommuIoasAllowIovas.numIovas(allowCmd, 1);
        setRange(ranges, 0, baseIova, baseIova + PAGE_SIZE * 600);
        err(Errno.EADDRINUSE, ioctl(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, allowCmd));
    }

    /**
     * An IOMMU_IOAS_COPY command. The selftest of this era passes only FIXED_IOVA; Linux later
     * required READABLE or WRITEABLE on a copy (EINVAL) and added WRITEABLE to its copies, which
     * this kernel follows.
     */
    private MemorySegment copyCmd(final int dst, final int src, final long length) {
        final MemorySegment s = struct(IommuIoasCopy.SIZE);
        IommuIoasCopy.flags(s, Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA | Iommufd.IOMMU_IOAS_MAP_WRITEABLE);
        IommuIoasCopy.dstIoasId(s, dst);
        IommuIoasCopy.srcIoasId(s, src);
        IommuIoasCopy.length(s, length);
        return s;
    }

    @Test
    void copy_area() {
        final MemorySegment copyCmd = copyCmd(ioasId, ioasId, PAGE_SIZE);
        mapFixed(buffer, PAGE_SIZE, baseIova);
        // Copy inside a single IOAS
        IommuIoasCopy.srcIova(copyCmd, baseIova);
        IommuIoasCopy.dstIova(copyCmd, baseIova + PAGE_SIZE);
        ok(ioctl(Iommufd.IOMMU_IOAS_COPY, copyCmd));
        // Copy between IOAS's
        IommuIoasCopy.srcIova(copyCmd, baseIova);
        IommuIoasCopy.dstIova(copyCmd, 0);
        IommuIoasCopy.dstIoasId(copyCmd, ioasAlloc());
        ok(ioctl(Iommufd.IOMMU_IOAS_COPY, copyCmd));
    }

    @Test
    void iova_ranges() {
        final MemorySegment testCmd = addReserved(PAGE_SIZE, PAGE_SIZE);
        final long ranges = buffer;
        final MemorySegment rangesCmd = struct(IommuIoasIovaRanges.SIZE);
        IommuIoasIovaRanges.ioasId(rangesCmd, ioasId);
        IommuIoasIovaRanges.numIovas(rangesCmd, (int) (BUFFER_SIZE / 16));
        IommuIoasIovaRanges.allowedIovas(rangesCmd, ranges);
        // Range can be read
        ok(ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, rangesCmd));
        assertEquals(1, IommuIoasIovaRanges.numIovas(rangesCmd));
        if (stdevId == 0) {
            assertEquals(0, c.memory().readLong(ranges));
            assertEquals(-1L, c.memory().readLong(ranges + 8));
            assertEquals(1, IommuIoasIovaRanges.outIovaAlignment(rangesCmd));
        } else {
            assertEquals(MOCK_APERTURE_START, c.memory().readLong(ranges));
            assertEquals(MOCK_APERTURE_LAST, c.memory().readLong(ranges + 8));
            assertEquals(MOCK_PAGE_SIZE, IommuIoasIovaRanges.outIovaAlignment(rangesCmd));
        }
        // Buffer too small
        c.memory().writeBytes(ranges, new byte[(int) BUFFER_SIZE]);
        IommuIoasIovaRanges.numIovas(rangesCmd, 0);
        err(Errno.EMSGSIZE, ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, rangesCmd));
        assertEquals(1, IommuIoasIovaRanges.numIovas(rangesCmd));
        assertEquals(0, c.memory().readLong(ranges));
        assertEquals(0, c.memory().readLong(ranges + 8));
        // 2 ranges
        ok(test(testCmd));
        IommuIoasIovaRanges.numIovas(rangesCmd, (int) (BUFFER_SIZE / 16));
        ok(ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, rangesCmd));
        if (stdevId == 0) {
            assertEquals(2, IommuIoasIovaRanges.numIovas(rangesCmd));
            assertEquals(0, c.memory().readLong(ranges));
            assertEquals(PAGE_SIZE - 1, c.memory().readLong(ranges + 8));
            assertEquals(PAGE_SIZE * 2, c.memory().readLong(ranges + 16));
            assertEquals(-1L, c.memory().readLong(ranges + 24));
        } else {
            assertEquals(1, IommuIoasIovaRanges.numIovas(rangesCmd));
            assertEquals(MOCK_APERTURE_START, c.memory().readLong(ranges));
            assertEquals(MOCK_APERTURE_LAST, c.memory().readLong(ranges + 8));
        }
        // Buffer too small
        c.memory().writeBytes(ranges, new byte[(int) BUFFER_SIZE]);
        IommuIoasIovaRanges.numIovas(rangesCmd, 1);
        if (stdevId == 0) {
            err(Errno.EMSGSIZE, ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, rangesCmd));
            assertEquals(2, IommuIoasIovaRanges.numIovas(rangesCmd));
            assertEquals(0, c.memory().readLong(ranges));
            assertEquals(PAGE_SIZE - 1, c.memory().readLong(ranges + 8));
        } else {
            ok(ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, rangesCmd));
            assertEquals(1, IommuIoasIovaRanges.numIovas(rangesCmd));
            assertEquals(MOCK_APERTURE_START, c.memory().readLong(ranges));
            assertEquals(MOCK_APERTURE_LAST, c.memory().readLong(ranges + 8));
        }
        assertEquals(0, c.memory().readLong(ranges + 16));
        assertEquals(0, c.memory().readLong(ranges + 24));
    }

    @Test
    void access_domain_destory() {
        final long bufSize = 2 * HUGEPAGE_SIZE;
        final long buf = mmap(bufSize, Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS | Syscall.MAP_HUGETLB | Syscall.MAP_POPULATE);
        mapFixed(buf, bufSize, baseIova);
        final int access = createAccess(ioasId, IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
        final int pages = accessPages(access, baseIova + PAGE_SIZE, PAGE_SIZE, buf + PAGE_SIZE);
        // Causes a complicated unpin across a huge page boundary
        if (stdevId != 0) {
            destroy(stdevId);
        }
        destroyAccessPages(access, pages);
        destroyAccess(access);
        c.munmap(buf, bufSize);
    }

    @Test
    void access_pin() {
        final int access = createAccess(ioasId, IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
        for (long npages = 1; npages < BUFFER_SIZE / PAGE_SIZE; npages++) {
            final long length = npages * PAGE_SIZE;
            // Single map/unmap
            mapFixed(buffer, BUFFER_SIZE, MOCK_APERTURE_START);
            destroyAccessPages(access, accessPages(access, MOCK_APERTURE_START, length, buffer));
            // Double user
            final int first = accessPages(access, MOCK_APERTURE_START, length, buffer);
            final int second = accessPages(access, MOCK_APERTURE_START, length, buffer);
            destroyAccessPages(access, second);
            destroyAccessPages(access, first);
            // Add/remove a domain with a user
            final int pages = accessPages(access, MOCK_APERTURE_START, length, buffer);
            final int[] mock = mockDomain(ioasId);
            ok(checkMapRaw(mock[1], MOCK_APERTURE_START, BUFFER_SIZE, buffer));
            destroy(mock[0]);
            destroyAccessPages(access, pages);
            unmap(MOCK_APERTURE_START, BUFFER_SIZE);
        }
        destroyAccess(access);
    }

    @Test
    void access_pin_unmap() {
        final int access = createAccess(ioasId, IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
        mapFixed(buffer, BUFFER_SIZE, MOCK_APERTURE_START);
        final int pages = accessPages(access, MOCK_APERTURE_START, BUFFER_SIZE, buffer);
        // Trigger the unmap op
        unmap(MOCK_APERTURE_START, BUFFER_SIZE);
        // kernel removed the item for us
        err(Errno.ENOENT, destroyAccessPagesRaw(access, pages));
    }

    /**
     * check_access_rw: every unaligned offset around a page boundary and every length up to 63
     * bytes, read then written through the access, compared with the buffer; then the whole buffer.
     */
    private void checkAccessRw(final int access, final long iova, final int defFlags) {
        final Random rand = new Random(iova ^ defFlags);
        final byte[] whole = new byte[(int) BUFFER_SIZE];
        rand.nextBytes(whole);
        c.memory().writeBytes(buffer, whole);
        final long tmp = c.mmapAnonymous(PAGE_SIZE); // uint16_t tmp[32]
        final MemorySegment cmd = testCmd(IommuTestCmd.IOMMU_TEST_OP_ACCESS_RW, access);
        IommuTestCmd.accessRwUptr(cmd, tmp);
        final byte[] random = new byte[64];
        for (long at = iova + PAGE_SIZE - 50; at < iova + PAGE_SIZE + 50; at++) {
            IommuTestCmd.accessRwIova(cmd, at);
            for (int length = 1; length < 64; length++) {
                IommuTestCmd.accessRwLength(cmd, length);
                IommuTestCmd.accessRwFlags(cmd, defFlags);
                ok(test(cmd));
                assertArrayEquals(c.memory().readBytes(buffer + (at - iova), length), c.memory().readBytes(tmp, length));
                rand.nextBytes(random);
                c.memory().writeBytes(tmp, random);
                IommuTestCmd.accessRwFlags(cmd, defFlags | IommuTestCmd.MOCK_ACCESS_RW_WRITE);
                ok(test(cmd));
                assertArrayEquals(c.memory().readBytes(buffer + (at - iova), length), c.memory().readBytes(tmp, length));
            }
        }
        // Multi-page test
        final long tmp2 = c.mmapAnonymous(BUFFER_SIZE);
        IommuTestCmd.accessRwIova(cmd, iova);
        IommuTestCmd.accessRwLength(cmd, BUFFER_SIZE);
        IommuTestCmd.accessRwFlags(cmd, defFlags);
        IommuTestCmd.accessRwUptr(cmd, tmp2);
        ok(test(cmd));
        assertArrayEquals(c.memory().readBytes(buffer, (int) BUFFER_SIZE), c.memory().readBytes(tmp2, (int) BUFFER_SIZE));
        c.munmap(tmp2, BUFFER_SIZE);
        c.munmap(tmp, PAGE_SIZE);
    }

    @Test
    void access_rw() {
        final int access = createAccess(ioasId, 0);
        final long iova = map(buffer, BUFFER_SIZE);
        checkAccessRw(access, iova, 0);
        checkAccessRw(access, iova, IommuTestCmd.MOCK_ACCESS_RW_SLOW_PATH);
        unmap(iova, BUFFER_SIZE);
        destroyAccess(access);
    }

    @Test
    void access_rw_unaligned() {
        final int access = createAccess(ioasId, 0);
        // Unaligned pages
        final long iova = baseIova + MOCK_PAGE_SIZE;
        mapFixed(buffer, BUFFER_SIZE, iova);
        checkAccessRw(access, iova, 0);
        unmap(iova, BUFFER_SIZE);
        destroyAccess(access);
    }

    @Test
    void ioas_option_huge_pages() {
        final MemorySegment cmd = struct(IommuOption.SIZE);
        IommuOption.optionId(cmd, Iommufd.IOMMU_OPTION_HUGE_PAGES);
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_GET);
        IommuOption.val64(cmd, 3);
        IommuOption.objectId(cmd, ioasId);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        assertEquals(1, IommuOption.val64(cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_SET);
        IommuOption.val64(cmd, 0);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_GET);
        IommuOption.val64(cmd, 3);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        assertEquals(0, IommuOption.val64(cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_SET);
        IommuOption.val64(cmd, 2);
        err(Errno.EINVAL, ioctl(Iommufd.IOMMU_OPTION, cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_SET);
        IommuOption.val64(cmd, 1);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
    }

    @Test
    void ioas_iova_alloc() {
        for (long length = 1; length != PAGE_SIZE * 2; length++) {
            if (variant().mockDomains() != 0 && length % MOCK_PAGE_SIZE != 0) {
                err(Errno.EINVAL, mapRaw(ioasId, buffer, length, 0, RW));
            } else {
                final long iova = map(buffer, length);
                unmap(iova, length);
            }
        }
    }

    @Test
    void ioas_align_change() {
        final MemorySegment cmd = struct(IommuOption.SIZE);
        IommuOption.optionId(cmd, Iommufd.IOMMU_OPTION_HUGE_PAGES);
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_SET);
        IommuOption.objectId(cmd, ioasId);
        IommuOption.val64(cmd, 0); // 0 means everything must be aligned to PAGE_SIZE
        // We cannot upgrade the alignment using OPTION_HUGE_PAGES when a domain and map are present.
        if (variant().mockDomains() != 0) {
            return;
        }
        // We can upgrade to PAGE_SIZE alignment when things are aligned right
        mapFixed(buffer, PAGE_SIZE, MOCK_APERTURE_START);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        // Misalignment is rejected at map time
        errMapFixed(Errno.EINVAL, buffer + MOCK_PAGE_SIZE, PAGE_SIZE, MOCK_APERTURE_START + PAGE_SIZE);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        // Reduce alignment
        IommuOption.val64(cmd, 1);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        // Confirm misalignment is rejected during alignment upgrade
        mapFixed(buffer + MOCK_PAGE_SIZE, PAGE_SIZE, MOCK_APERTURE_START + PAGE_SIZE);
        IommuOption.val64(cmd, 0);
        err(Errno.EADDRINUSE, ioctl(Iommufd.IOMMU_OPTION, cmd));
        unmap(MOCK_APERTURE_START + PAGE_SIZE, PAGE_SIZE);
        unmap(MOCK_APERTURE_START, PAGE_SIZE);
    }

    @Test
    void copy_sweep() {
        final int dstIoasId = ioasAlloc();
        final MemorySegment copyCmd = copyCmd(dstIoasId, ioasId, MOCK_PAGE_SIZE);
        IommuIoasCopy.dstIova(copyCmd, MOCK_APERTURE_START);
        final long lastIova = variant().mockDomains() != 0 ? MOCK_APERTURE_START + BUFFER_SIZE - 1
                : MOCK_APERTURE_START + BUFFER_SIZE - 2;
        mapFixed(buffer, lastIova - MOCK_APERTURE_START + 1, MOCK_APERTURE_START);
        for (long iova = MOCK_APERTURE_START - PAGE_SIZE; iova <= lastIova; iova += 511) {
            IommuIoasCopy.srcIova(copyCmd, iova);
            if (iova < MOCK_APERTURE_START || iova + MOCK_PAGE_SIZE - 1 > lastIova) {
                err(Errno.ENOENT, ioctl(Iommufd.IOMMU_IOAS_COPY, copyCmd));
            } else {
                ok(ioctl(Iommufd.IOMMU_IOAS_COPY, copyCmd));
                unmapId(dstIoasId, IommuIoasCopy.dstIova(copyCmd), MOCK_PAGE_SIZE);
            }
        }
        destroy(dstIoasId);
    }
}
