package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.iommufd.MockIommu;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuHwInfo;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;

/**
 * What {@code tools/testing/selftests/iommu/iommufd_utils.h} gives every case of the selftest, over
 * the syscall socket: a kernel booted with {@code iommufd.selftest=1}, a process holding an iommufd
 * ({@code self->fd}), the global {@code buffer} (16 pages, MAP_SHARED|MAP_ANONYMOUS at a 2 MiB aligned
 * address, as the selftest's constructor maps it), the helpers as methods of the same name, and
 * {@code teardown_iommufd}: close, reopen, and MD_CHECK_REFS finds no pin left on the buffer; once the
 * process has exited the kernel's books are back where the boot left them
 * ({@link KernelRig#assertBooksBalanced}). A
 * WARN the mock IOMMU raised fails the case too, as it would show in Linux's log.
 *
 * <p>Helpers return the ioctl's value ({@code -errno} on failure), as the C helpers return -1 with
 * errno; {@link #ok} and {@link #err} assert on it.
 */
public abstract class SelftestFixture {
    public static final long PAGE_SIZE = 4096;
    public static final long MOCK_PAGE_SIZE = PAGE_SIZE / 2;
    public static final long MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE;
    public static final long HUGEPAGE_SIZE = Syscall.HUGE_PAGE_SIZE;
    public static final long BUFFER_SIZE = PAGE_SIZE * 16;
    public static final long MOCK_APERTURE_START = IommuTestCmd.MOCK_APERTURE_START;
    public static final long MOCK_APERTURE_LAST = IommuTestCmd.MOCK_APERTURE_LAST;
    /** Where the global buffer lives: posix_memalign(HUGEPAGE_SIZE) then mmap(MAP_FIXED) over it. */
    static final long BUFFER_VA = 0x7e00_0000_0000L;

    @TempDir
    Path tmp;
    protected KernelRig rig;
    protected SyscallServer server;
    protected KernelClient c;
    /** self->fd. */
    protected int fd = -1;
    /** The selftest's global {@code buffer}. */
    protected long buffer;

    /** The machine's memory: enough for the fixture's buffers (the file is sparse). */
    protected long machineMemory() {
        return 256L << 20;
    }

    /** FIXTURE_SETUP after /dev/iommu is open. */
    protected void setUpFixture() {
    }

    @BeforeEach
    final void boot() throws Exception {
        rig = KernelRig.boot(tmp.resolve("m"), MachineConfig.small().withMemorySize(machineMemory()), "iommufd.selftest=1");
        server = rig.kernel.serve(tmp.resolve("k.sock"));
        c = KernelClient.connect(server.path(), tmp.resolve("m").resolve("memory"));
        buffer = c.mmap(BUFFER_VA, BUFFER_SIZE, Syscall.PROT_READ | Syscall.PROT_WRITE,
                Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS | Syscall.MAP_FIXED, -1, 0);
        fd = c.open("/dev/iommu", Syscall.O_RDWR);
        assertNotEquals(-1, fd);
        setUpFixture();
    }

    /** FIXTURE_TEARDOWN's extra steps, before teardown_iommufd. */
    protected void tearDownFixture() {
    }

    @AfterEach
    final void teardown() {
        try {
            tearDownFixture();
            teardownIommufd();
            assertEquals(0, rig.kernel.iommu().busDriver(MockIommu.class).warnings(), "WARNs from the mock IOMMU (see the kernel log)");
            // Every process exits (closing the server ends any other the case connected): every pin,
            // frame, DID and object they held goes back (issue 16's invariant).
            c.close();
            c = null;
            server.close();
            server = null;
            rig.assertBooksBalanced("after " + getClass().getSimpleName());
        } finally {
            if (c != null) {
                c.close();
            }
            if (server != null) {
                server.close();
            }
            rig.close();
        }
    }

    /** teardown_iommufd: close the fd, then a fresh context sees no pin left on the buffer. */
    private void teardownIommufd() {
        if (fd == -1) {
            return;
        }
        assertEquals(0, c.syscall(Syscall.CLOSE, fd));
        final int fresh = c.open("/dev/iommu", Syscall.O_RDWR);
        assertEquals(0, checkRefsRaw(fresh, buffer, BUFFER_SIZE, 0), "pins left on the buffer after close");
        assertEquals(0, c.syscall(Syscall.CLOSE, fresh));
    }

    // ------------------------------------------------------------------ assertions

    /** ASSERT_EQ(0, ...). */
    protected static void ok(final long ret) {
        assertEquals(0, ret, () -> "expected success, got " + (ret < 0 ? Errno.of((int) -ret) : ret));
    }

    /** EXPECT_ERRNO(errno, ...). */
    protected static void err(final Errno want, final long ret) {
        assertTrue(ret < 0, () -> "expected " + want + ", got " + ret);
        assertEquals(want, Errno.of((int) -ret));
    }

    // ------------------------------------------------------------------ raw structs

    /** A zeroed struct of {@code size} bytes with its {@code u32 size} set. */
    protected static MemorySegment struct(final long size) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((size + 7) / 8)]).asSlice(0, size);
        Iommufd.size(s, (int) size);
        return s;
    }

    protected long ioctl(final int cmd, final MemorySegment s) {
        return c.ioctl(fd, cmd, s);
    }

    /** An IOMMU_TEST_CMD struct for {@code op} on {@code id}. */
    protected static MemorySegment testCmd(final int op, final int id) {
        final MemorySegment s = struct(IommuTestCmd.SIZE);
        IommuTestCmd.op(s, op);
        IommuTestCmd.id(s, id);
        return s;
    }

    protected long test(final MemorySegment cmd) {
        return c.ioctl(fd, IommuTestCmd.IOMMU_TEST_CMD, cmd);
    }

    // ------------------------------------------------------------------ iommufd_utils.h

    /** _test_ioctl_ioas_alloc; the id (ASSERT_NE 0). */
    protected int ioasAlloc() {
        final MemorySegment s = struct(IommuIoasAlloc.SIZE);
        ok(ioctl(Iommufd.IOMMU_IOAS_ALLOC, s));
        final int id = IommuIoasAlloc.outIoasId(s);
        assertNotEquals(0, id);
        return id;
    }

    /** _test_ioctl_destroy. */
    protected long destroyRaw(final int id) {
        final MemorySegment s = struct(IommuDestroy.SIZE);
        IommuDestroy.id(s, id);
        return ioctl(Iommufd.IOMMU_DESTROY, s);
    }

    protected void destroy(final int id) {
        ok(destroyRaw(id));
    }

    /** _test_ioctl_ioas_map: {iova or -errno}; {@code iova} is used with FIXED_IOVA. */
    protected long mapRaw(final int ioas, final long va, final long length, final long iova, final int flags) {
        final MemorySegment s = struct(IommuIoasMap.SIZE);
        IommuIoasMap.flags(s, flags);
        IommuIoasMap.ioasId(s, ioas);
        IommuIoasMap.userVa(s, va);
        IommuIoasMap.length(s, length);
        IommuIoasMap.iova(s, iova);
        final long ret = ioctl(Iommufd.IOMMU_IOAS_MAP, s);
        return ret < 0 ? ret : IommuIoasMap.iova(s);
    }

    protected static final int RW = Iommufd.IOMMU_IOAS_MAP_WRITEABLE | Iommufd.IOMMU_IOAS_MAP_READABLE;
    protected static final int FIXED_RW = Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA | RW;

    /** test_ioctl_ioas_map_id: an automatic IOVA, returned. */
    protected long mapId(final int ioas, final long va, final long length) {
        final long iova = mapRaw(ioas, va, length, 0, RW);
        assertTrue(iova >= 0, () -> "map failed: " + Errno.of((int) -iova));
        return iova;
    }

    /** test_ioctl_ioas_map_fixed_id. */
    protected void mapFixedId(final int ioas, final long va, final long length, final long iova) {
        final long got = mapRaw(ioas, va, length, iova, FIXED_RW);
        assertEquals(iova, got, () -> got < 0 ? "map failed: " + Errno.of((int) -got) : "mapped elsewhere");
    }

    /** _test_ioctl_ioas_unmap: {ret, unmapped length}. */
    protected long[] unmapRaw(final int ioas, final long iova, final long length) {
        final MemorySegment s = struct(IommuIoasUnmap.SIZE);
        IommuIoasUnmap.ioasId(s, ioas);
        IommuIoasUnmap.iova(s, iova);
        IommuIoasUnmap.length(s, length);
        final long ret = ioctl(Iommufd.IOMMU_IOAS_UNMAP, s);
        return new long[] {ret, IommuIoasUnmap.length(s)};
    }

    protected void unmapId(final int ioas, final long iova, final long length) {
        ok(unmapRaw(ioas, iova, length)[0]);
    }

    /** _test_cmd_mock_domain(_flags): {ret, stdev_id, hwpt_id, idev_id}. */
    protected long[] mockDomainRaw(final int ptId, final int devFlags) {
        final MemorySegment s = testCmd(devFlags == 0 ? IommuTestCmd.IOMMU_TEST_OP_MOCK_DOMAIN
                : IommuTestCmd.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, ptId);
        IommuTestCmd.mockDomainFlagsDevFlags(s, devFlags);
        final long ret = test(s);
        return new long[] {ret, IommuTestCmd.mockDomainOutStdevId(s), IommuTestCmd.mockDomainOutHwptId(s),
            IommuTestCmd.mockDomainOutIdevId(s)};
    }

    /** test_cmd_mock_domain: {stdev_id, hwpt_id, idev_id}. */
    protected int[] mockDomain(final int ptId) {
        return mockDomainFlags(ptId, 0);
    }

    protected int[] mockDomainFlags(final int ptId, final int devFlags) {
        final long[] r = mockDomainRaw(ptId, devFlags);
        ok(r[0]);
        return new int[] {(int) r[1], (int) r[2], (int) r[3]};
    }

    /** _test_cmd_mock_domain_replace: {ret, hwpt id}. */
    protected long mockDomainReplaceRaw(final int stdevId, final int ptId) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdevId);
        IommuTestCmd.mockDomainReplacePtId(s, ptId);
        final long ret = test(s);
        return ret < 0 ? ret : IommuTestCmd.mockDomainReplacePtId(s);
    }

    protected void mockDomainReplace(final int stdevId, final int ptId) {
        final long r = mockDomainReplaceRaw(stdevId, ptId);
        assertTrue(r >= 0, () -> "replace failed: " + Errno.of((int) -r));
    }

    /** _test_cmd_hwpt_alloc with IOMMU_HWPT_DATA_NONE: the HWPT id, or -errno. */
    protected long hwptAllocRaw(final int devId, final int ptId, final int flags) {
        return hwptAllocRaw(devId, ptId, flags, 0, 0, 0);
    }

    protected long hwptAllocRaw(final int devId, final int ptId, final int flags, final int dataType, final long data,
            final int dataLen) {
        final MemorySegment s = struct(IommuHwptAlloc.SIZE);
        IommuHwptAlloc.flags(s, flags);
        IommuHwptAlloc.devId(s, devId);
        IommuHwptAlloc.ptId(s, ptId);
        IommuHwptAlloc.dataType(s, dataType);
        IommuHwptAlloc.dataLen(s, dataLen);
        IommuHwptAlloc.dataUptr(s, data);
        final long ret = ioctl(Iommufd.IOMMU_HWPT_ALLOC, s);
        return ret < 0 ? ret : IommuHwptAlloc.outHwptId(s);
    }

    protected int hwptAlloc(final int devId, final int ptId, final int flags) {
        final long r = hwptAllocRaw(devId, ptId, flags);
        assertTrue(r > 0, () -> "HWPT_ALLOC failed: " + Errno.of((int) -r));
        return (int) r;
    }

    /** check_refs on fd {@code onFd}: the ioctl's value. */
    protected long checkRefsRaw(final int onFd, final long va, final long length, final int refs) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_MD_CHECK_REFS, 0);
        IommuTestCmd.checkRefsLength(s, length);
        IommuTestCmd.checkRefsUptr(s, va);
        IommuTestCmd.checkRefsRefs(s, refs);
        return c.ioctl(onFd, IommuTestCmd.IOMMU_TEST_CMD, s);
    }

    /** check_refs. */
    protected void checkRefs(final long va, final long length, final int refs) {
        ok(checkRefsRaw(fd, va, length, refs));
    }

    /** IOMMU_TEST_OP_MD_CHECK_MAP on HWPT {@code hwptId}. */
    protected long checkMapRaw(final int hwptId, final long iova, final long length, final long va) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_MD_CHECK_MAP, hwptId);
        IommuTestCmd.checkMapIova(s, iova);
        IommuTestCmd.checkMapLength(s, length);
        IommuTestCmd.checkMapUptr(s, va);
        return test(s);
    }

    /** _test_cmd_create_access: the access fd. */
    protected int createAccess(final int ioasId, final int flags) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_CREATE_ACCESS, ioasId);
        IommuTestCmd.createAccessFlags(s, flags);
        ok(test(s));
        return IommuTestCmd.createAccessOutAccessFd(s);
    }

    /** _test_cmd_destroy_access: close(2) of the access fd. */
    protected void destroyAccess(final int accessFd) {
        ok(c.syscall(Syscall.CLOSE, accessFd));
    }

    /** _test_cmd_destroy_access_pages. */
    protected long destroyAccessPagesRaw(final int accessFd, final int accessPagesId) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, accessFd);
        IommuTestCmd.destroyAccessPagesAccessPagesId(s, accessPagesId);
        return test(s);
    }

    protected void destroyAccessPages(final int accessFd, final int accessPagesId) {
        ok(destroyAccessPagesRaw(accessFd, accessPagesId));
    }

    /** IOMMU_TEST_OP_ACCESS_PAGES: {ret, access_pages_id}. */
    protected long[] accessPagesRaw(final int accessFd, final long iova, final long length, final long uptr, final int flags) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_ACCESS_PAGES, accessFd);
        IommuTestCmd.accessPagesIova(s, iova);
        IommuTestCmd.accessPagesLength(s, length);
        IommuTestCmd.accessPagesUptr(s, uptr);
        IommuTestCmd.accessPagesFlags(s, flags);
        final long ret = test(s);
        return new long[] {ret, IommuTestCmd.accessPagesOutAccessPagesId(s)};
    }

    protected int accessPages(final int accessFd, final long iova, final long length, final long uptr) {
        final long[] r = accessPagesRaw(accessFd, iova, length, uptr, 0);
        ok(r[0]);
        return (int) r[1];
    }

    /** _test_cmd_access_replace_ioas. */
    protected long accessReplaceIoasRaw(final int accessFd, final int ioasId) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, accessFd);
        IommuTestCmd.accessReplaceIoasIoasId(s, ioasId);
        return test(s);
    }

    /** _test_ioctl_set_temp_memory_limit. */
    protected long setTempMemoryLimit(final int limit) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 0);
        IommuTestCmd.memoryLimitLimit(s, limit);
        return test(s);
    }

    /** test_ioctl_set_default_memory_limit. */
    protected void setDefaultMemoryLimit() {
        ok(setTempMemoryLimit(65536));
    }

    /** _test_cmd_get_hw_info into {@code data} (user memory, or 0) of {@code dataLen}: {ret, out_data_type, data_len, caps}. */
    protected long[] getHwInfoRaw(final int devId, final long data, final int dataLen) {
        final MemorySegment s = struct(IommuHwInfo.SIZE);
        IommuHwInfo.devId(s, devId);
        IommuHwInfo.dataLen(s, dataLen);
        IommuHwInfo.dataUptr(s, data);
        final long ret = ioctl(Iommufd.IOMMU_GET_HW_INFO, s);
        return new long[] {ret, IommuHwInfo.outDataType(s), IommuHwInfo.dataLen(s), IommuHwInfo.outCapabilities(s)};
    }

    /** A fresh anonymous mapping (the selftest's mmap(0, size, RW, flags, -1, 0)). */
    protected long mmap(final long size, final int flags) {
        return c.mmap(0, size, Syscall.PROT_READ | Syscall.PROT_WRITE, flags, -1, 0);
    }
}
