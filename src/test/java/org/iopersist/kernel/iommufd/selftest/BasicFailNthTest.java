package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.init.Accounting;
import org.iopersist.testing.FailNth;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuIoasMapFile;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * FIXTURE(basic_fail_nth) of {@code iommufd_fail_nth.c}: each TEST_FAIL_NTH body runs once as it is,
 * then again with the 1st, 2nd, 3rd... injectable site after its {@code fail_nth_enable()} failing
 * ({@code /proc/thread-self/fail-nth} of the fixture's process), until a run reaches fewer sites than
 * the count. Between runs the fixture is torn down and set up again, as the harness does.
 *
 * <p>What Linux's harness asserts, asserted here: the plain run and the last run (the one the count
 * outlasted) return 0, fewer than 400 runs, and each teardown closes cleanly and finds no pin left on
 * the buffers (MD_CHECK_REFS); a run with a failure injected may answer any errno, since the harness
 * looks for kernel splats, not answers. On top of that, what the model can check and Linux's log
 * would show: no WARN from the mock, the kernel's books ({@link Accounting}) back where the plain
 * run left them after each teardown, and each injected failure answered with the errno its site
 * gives in Linux (ENOMEM for an allocation, EFAULT for a user copy; {@code iommufd_should_fail()}
 * points answer ENOENT, EFAULT, ENOMEM or EINVAL). A run with a failure injected may also succeed,
 * where Linux absorbs the failure too (the body ignores its last unmap; an auto domain's attach
 * failing with EINVAL means "incompatible, try another"). Each case's sweep must reach exactly the
 * kinds of errno its Linux fault points give.
 */
class BasicFailNthTest extends SelftestFixture {
    /** iommufd_fail_nth.c's buffer: 2 MiB, and a memfd of the same size for map_file_domain. */
    static final long NTH_BUFFER_SIZE = 2L << 20;
    /** More sites than this means a body grew, not a bug (the C loop has no cap; 400 bounds the suite). */
    static final int MAX_ITERATIONS = 400;

    long nthBuffer;
    int mfd;
    /** Scratch user memory for the bodies' on-stack arrays (ranges, tmp, tmp_big, info). */
    long stack;
    /** self->access_id: the access fd, closed by the teardown if a body left it. */
    int accessId;
    FailNth nth;

    /** A body's {@code return -1}: the errno of the call that failed. */
    static final class Failed extends RuntimeException {
        final long errno;

        Failed(final long errno) {
            super(null, null, false, false);
            this.errno = errno;
        }
    }

    interface Body {
        void run() throws Exception;
    }

    @Override
    protected void setUpFixture() {
        ok(c.syscall(Syscall.CLOSE, fd)); // FIXTURE_SETUP: self->fd = -1; each body opens its own
        fd = -1;
        nthBuffer = mmap(NTH_BUFFER_SIZE, Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS);
        stack = mmap(64 * 1024, Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS);
        mfd = c.memfdCreate("fail-nth");
        c.ftruncate(mfd, NTH_BUFFER_SIZE);
        nth = new FailNth(c);
    }

    /** A call's result: -errno ends the body as its {@code return -1}. */
    private static long step(final long ret) {
        if (ret < 0) {
            throw new Failed(-ret);
        }
        return ret;
    }

    private void enable() {
        nth.enable();
    }

    private void openFd() {
        try {
            fd = c.open("/dev/iommu", Syscall.O_RDWR);
        } catch (ErrnoException e) {
            throw new Failed(e.errno());
        }
    }

    private int ioasAllocNth() {
        final MemorySegment s = struct(IommuIoasAlloc.SIZE);
        step(ioctl(Iommufd.IOMMU_IOAS_ALLOC, s));
        return IommuIoasAlloc.outIoasId(s);
    }

    private int[] mockDomainNth(final int ioas) {
        final long[] r = mockDomainRaw(ioas, 0);
        step(r[0]);
        return new int[] {(int) r[1], (int) r[2], (int) r[3]};
    }

    private long mapNth(final int ioas, final long va, final long length) {
        return step(mapRaw(ioas, va, length, 0, RW));
    }

    private int createAccessNth(final int ioas, final int flags) {
        final MemorySegment s = testCmd(IommuTestCmd.IOMMU_TEST_OP_CREATE_ACCESS, ioas);
        IommuTestCmd.createAccessFlags(s, flags);
        step(test(s));
        accessId = IommuTestCmd.createAccessOutAccessFd(s);
        return accessId;
    }

    private void destroyAccessNth() {
        step(c.syscall(Syscall.CLOSE, accessId));
        accessId = 0;
    }

    /** FIXTURE_TEARDOWN then teardown_iommufd: the access fd, the iommufd, and no pin left on the buffers. */
    private void teardownRun(final String at) {
        if (accessId != 0) {
            assertEquals(0, c.syscall(Syscall.CLOSE, accessId), at);
            accessId = 0;
        }
        if (fd == -1) {
            return;
        }
        assertEquals(0, c.syscall(Syscall.CLOSE, fd), at);
        fd = -1;
        final int fresh = c.open("/dev/iommu", Syscall.O_RDWR);
        assertEquals(0, checkRefsRaw(fresh, nthBuffer, NTH_BUFFER_SIZE, 0), at + ": pins left on the buffer");
        assertEquals(0, checkRefsRaw(fresh, buffer, BUFFER_SIZE, 0), at + ": pins left on the global buffer");
        assertEquals(0, c.syscall(Syscall.CLOSE, fresh), at);
    }

    /** Runs of one body, where failures were injected, the errnos its injected runs ended with, and how many succeeded anyway. */
    record Sweep(int iterations, Map<FaultInjection.Site, Integer> sites, Map<Errno, Integer> errnos, int absorbed) {
    }

    /** What each kind of site answers in Linux; {@code iommufd_should_fail()} points choose among four. */
    static final Map<FaultInjection.Site, Set<Errno>> ANSWERS = Map.of(
            FaultInjection.Site.SLAB, EnumSet.of(Errno.ENOMEM),
            FaultInjection.Site.FRAME, EnumSet.of(Errno.ENOMEM),
            FaultInjection.Site.TABLE_PAGE, EnumSet.of(Errno.ENOMEM),
            FaultInjection.Site.USER_COPY, EnumSet.of(Errno.EFAULT),
            FaultInjection.Site.IOMMUFD, EnumSet.of(Errno.ENOENT, Errno.EFAULT, Errno.ENOMEM, Errno.EINVAL));

    /** The site a run's injected failure fired at (one per run), or null. */
    private FaultInjection.Site firedSite(final long[] before) {
        FaultInjection.Site fired = null;
        for (FaultInjection.Site site : FaultInjection.Site.values()) {
            if (rig.kernel.faults().injected(site) != before[site.ordinal()]) {
                assertEquals(null, fired, "two failures injected in one run");
                fired = site;
            }
        }
        return fired;
    }

    private long[] injectedNow() {
        final long[] n = new long[FaultInjection.Site.values().length];
        for (FaultInjection.Site site : FaultInjection.Site.values()) {
            n[site.ordinal()] = rig.kernel.faults().injected(site);
        }
        return n;
    }

    /** TEST_FAIL_NTH's loop: fail_nth_first, the plain run, then fail_nth_next until nothing fires. */
    Sweep sweep(final String name, final Set<Errno> linuxErrnos, final Body body) throws Exception {
        body.run(); // ASSERT_EQ(0, test_nth_...(...)) at iteration 0
        teardownRun(name + " plain run");
        final Accounting baseline = rig.kernel.accounting();
        final Map<Errno, Integer> errnos = new TreeMap<>();
        final Map<FaultInjection.Site, Integer> sites = new EnumMap<>(FaultInjection.Site.class);
        int absorbed = 0;
        for (int iteration = 1; ; iteration++) {
            assertTrue(iteration < MAX_ITERATIONS, name + ": more than " + MAX_ITERATIONS + " injection sites");
            final String at = name + " at n=" + iteration;
            nth.iteration(iteration);
            final long[] before = injectedNow();
            Errno failed = null;
            try {
                body.run();
            } catch (Failed f) {
                failed = Errno.of((int) f.errno);
                assertNotNull(failed, at + ": errno " + f.errno + " is not a Linux errno");
            }
            final boolean fired = nth.readAndDisable();
            final FaultInjection.Site site = firedSite(before);
            if (!fired) {
                assertEquals(null, failed, at + ": a run with no failure injected must succeed"); // ASSERT_EQ(0, test_result)
            } else {
                assertNotNull(site, at + ": the count ran out with no site failing");
                sites.merge(site, 1, Integer::sum);
                if (failed == null) {
                    absorbed++; // as Linux absorbs some: the body ignores its last unmap, an auto domain's EINVAL means "try another"
                } else {
                    errnos.merge(failed, 1, Integer::sum);
                    assertTrue(ANSWERS.get(site).contains(failed), at + ": a failure injected at " + site + " answered " + failed
                            + "; " + rig.lastInjection());
                }
            }
            teardownRun(at);
            assertEquals(List.of(), rig.kernel.accounting().leaksAgainst(baseline), at + ": the books after teardown; "
                    + rig.lastInjection());
            if (!fired) {
                nth.iteration(0);
                final Sweep s = new Sweep(iteration, sites, errnos, absorbed);
                System.out.println("fail-nth " + name + ": " + s);
                assertEquals(linuxErrnos, errnos.keySet(), name + ": the errnos its Linux fault points give; " + s);
                return s;
            }
        }
    }


    // ------------------------------------------------------------------ iommufd_fail_nth.c

    /** Cover ioas.c. */
    @Test
    void basic() throws Exception {
        final Sweep s = sweep("basic", EnumSet.of(Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT), () -> {
            enable();
            openFd();
            final int ioas = ioasAllocNth();
            final MemorySegment ranges = struct(IommuIoasIovaRanges.SIZE);
            IommuIoasIovaRanges.ioasId(ranges, ioas);
            IommuIoasIovaRanges.numIovas(ranges, 10);
            IommuIoasIovaRanges.allowedIovas(ranges, stack);
            step(ioctl(Iommufd.IOMMU_IOAS_IOVA_RANGES, ranges));
            final MemorySegment allow = struct(IommuIoasAllowIovas.SIZE);
            IommuIoasAllowIovas.ioasId(allow, ioas);
            IommuIoasAllowIovas.numIovas(allow, 1);
            IommuIoasAllowIovas.allowedIovas(allow, stack);
            c.memory().writeLong(stack, 16 * 1024);
            c.memory().writeLong(stack + 8, NTH_BUFFER_SIZE + 16 * 1024 * 600 - 1);
            step(ioctl(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, allow));
            final long iova = mapNth(ioas, nthBuffer, NTH_BUFFER_SIZE);
            final MemorySegment copy = struct(IommuIoasCopy.SIZE);
            IommuIoasCopy.flags(copy, RW);
            IommuIoasCopy.dstIoasId(copy, ioas);
            IommuIoasCopy.srcIoasId(copy, ioas);
            IommuIoasCopy.srcIova(copy, iova);
            IommuIoasCopy.length(copy, 10 * 16); // sizeof(ranges)
            step(ioctl(Iommufd.IOMMU_IOAS_COPY, copy));
            step(unmapRaw(ioas, iova, NTH_BUFFER_SIZE)[0]);
            unmapRaw(ioas, iova, NTH_BUFFER_SIZE); // the failure path of no IOVA to unmap
        });
        assertTrue(s.sites().get(FaultInjection.Site.SLAB) > 0, s.toString());
    }

    /** iopt_area_fill_domains() and iopt_area_fill_domain(). */
    @Test
    void map_domain() throws Exception {
        final Sweep s = sweep("map_domain", EnumSet.of(Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL), () -> {
            openFd();
            final int ioas = ioasAllocNth();
            step(setTempMemoryLimit(32));
            enable();
            int[] ids = mockDomainNth(ioas);
            mapNth(ioas, nthBuffer, 262144);
            step(destroyRaw(ids[0]));
            ids = mockDomainNth(ioas);
        });
        // The fill's reader pins in page lists of TEMP_MEMORY_LIMIT (32 bytes: 4 pages), each pin a point.
        assertTrue(s.sites().get(FaultInjection.Site.IOMMUFD) > 2 * 262144 / 4 / 4096, s.toString());
    }

    /** iopt_area_fill_domains() and iopt_area_fill_domain(), with IOMMU_IOAS_MAP_FILE of a memfd. */
    @Test
    void map_file_domain() throws Exception {
        final Sweep s = sweep("map_file_domain", EnumSet.of(Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL), () -> {
            openFd();
            final int ioas = ioasAllocNth();
            step(setTempMemoryLimit(32));
            enable();
            int[] ids = mockDomainNth(ioas);
            final MemorySegment m = struct(IommuIoasMapFile.SIZE);
            IommuIoasMapFile.flags(m, RW);
            IommuIoasMapFile.ioasId(m, ioas);
            IommuIoasMapFile.fd(m, mfd);
            IommuIoasMapFile.start(m, 0);
            IommuIoasMapFile.length(m, 262144);
            step(ioctl(Iommufd.IOMMU_IOAS_MAP_FILE, m));
            step(destroyRaw(ids[0]));
            ids = mockDomainNth(ioas);
        });
        assertTrue(s.sites().get(FaultInjection.Site.IOMMUFD) > 2 * 262144 / 4 / 4096, s.toString());
    }

    @Test
    void map_two_domains() throws Exception {
        sweep("map_two_domains", EnumSet.of(Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL), () -> {
            openFd();
            final int ioas = ioasAllocNth();
            step(setTempMemoryLimit(32));
            int[] a = mockDomainNth(ioas);
            enable();
            int[] b = mockDomainNth(ioas);
            mapNth(ioas, nthBuffer, 262144);
            step(destroyRaw(a[0]));
            step(destroyRaw(b[0]));
            a = mockDomainNth(ioas);
            b = mockDomainNth(ioas);
        });
    }

    @Test
    void access_rw() throws Exception {
        sweep("access_rw", EnumSet.of(Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL), () -> {
            openFd();
            final int ioas = ioasAllocNth();
            step(setTempMemoryLimit(32));
            final long iova = mapNth(ioas, nthBuffer, 262144);
            enable();
            createAccessNth(ioas, 0);
            final MemorySegment rw = testCmd(IommuTestCmd.IOMMU_TEST_OP_ACCESS_RW, accessId);
            IommuTestCmd.accessRwIova(rw, iova);
            IommuTestCmd.accessRwLength(rw, 32 * 2); // uint16_t tmp[32]
            IommuTestCmd.accessRwUptr(rw, stack);
            step(test(rw)); // READ
            for (int flags : new int[] {IommuTestCmd.MOCK_ACCESS_RW_WRITE, IommuTestCmd.MOCK_ACCESS_RW_SLOW_PATH,
                IommuTestCmd.MOCK_ACCESS_RW_SLOW_PATH | IommuTestCmd.MOCK_ACCESS_RW_WRITE}) {
                IommuTestCmd.accessRwFlags(rw, flags);
                step(test(rw));
            }
            final MemorySegment big = testCmd(IommuTestCmd.IOMMU_TEST_OP_ACCESS_RW, accessId);
            IommuTestCmd.accessRwIova(big, iova);
            IommuTestCmd.accessRwFlags(big, IommuTestCmd.MOCK_ACCESS_RW_SLOW_PATH);
            IommuTestCmd.accessRwLength(big, 4096 * 8); // uint64_t tmp_big[4096]
            IommuTestCmd.accessRwUptr(big, stack);
            step(test(big));
            destroyAccessNth();
        });
    }

    /** pages.c access functions. */
    @Test
    void access_pin() throws Exception {
        sweep("access_pin", EnumSet.of(Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL), () -> {
            openFd();
            final int ioas = ioasAllocNth();
            step(setTempMemoryLimit(32));
            final long iova = mapNth(ioas, nthBuffer, NTH_BUFFER_SIZE);
            createAccessNth(ioas, IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
            enable();
            pinUnpinAndDestroy(iova);
        });
    }

    /** iopt_pages_fill_xarray(). */
    @Test
    void access_pin_domain() throws Exception {
        sweep("access_pin_domain", EnumSet.of(Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL), () -> {
            openFd();
            final int ioas = ioasAllocNth();
            step(setTempMemoryLimit(32));
            final int[] ids = mockDomainNth(ioas);
            final long iova = mapNth(ioas, nthBuffer, NTH_BUFFER_SIZE);
            createAccessNth(ioas, IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
            enable();
            pinUnpinAndDestroy(iova);
            step(destroyRaw(ids[0]));
        });
    }

    private void pinUnpinAndDestroy(final long iova) {
        final long[] r = accessPagesRaw(accessId, iova, NTH_BUFFER_SIZE, nthBuffer, 0);
        step(r[0]);
        step(destroyAccessPagesRaw(accessId, (int) r[1]));
        destroyAccessNth();
    }

    /** device.c. */
    @Test
    void device() throws Exception {
        sweep("device", EnumSet.of(Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL), () -> {
            openFd();
            final int ioas = ioasAllocNth();
            final int ioas2 = ioasAllocNth();
            step(mapRaw(ioas, nthBuffer, PAGE_SIZE, MOCK_APERTURE_START, FIXED_RW));
            step(mapRaw(ioas2, nthBuffer, PAGE_SIZE, MOCK_APERTURE_START, FIXED_RW));
            enable();
            final int[] ids = mockDomainNth(ioas);
            step(getHwInfoRaw(ids[2], stack, 8)[0]); // struct iommu_test_hw_info
            final int hwpt = (int) step(hwptAllocRaw(ids[2], ioas, 0));
            step(mockDomainReplaceRaw(ids[0], ioas2));
            step(mockDomainReplaceRaw(ids[0], hwpt));
        });
    }
}
