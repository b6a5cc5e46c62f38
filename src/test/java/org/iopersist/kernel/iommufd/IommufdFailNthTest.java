package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.init.Accounting;
import org.iopersist.testing.FailNth;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.IommuHwInfo;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@code tools/testing/selftests/iommu/iommufd_fail_nth.c} on the model, plus the VFIO cdev and
 * persistence scenarios: each scenario runs once as it is, then again with its 1st, 2nd, 3rd…
 * injectable site failing ({@code /proc/thread-self/fail-nth}: every frame and VT-d table page
 * allocated, the slab allocations and {@code iommufd_should_fail()} points Linux has, every user
 * copy), until a run reaches fewer sites than the count. Each run is a fresh
 * process; each injected run must:
 * <ul>
 *   <li>fail, if it fails, with a Linux errno (a kernel that throws anything else cuts the process off);</li>
 *   <li>leave the context usable: a new IOAS maps and unmaps on the same fd, every process is
 *       charged exactly the pages its areas pin, and every device is blocked or attached as the
 *       kernel says, in hardware too;</li>
 *   <li>leak nothing: once the process has exited, the kernel's books ({@link Accounting}: frames,
 *       user frames, DIDs, DMA owners, attached devices, guestmemfs pins, persistent contexts) are
 *       back at the baseline.</li>
 * </ul>
 * The selftest's {@code access_*} cases use the test-only IOMMU_TEST_CMD; the in-kernel access API
 * is swept by {@link #access_pin_domain} with the test thread acting as the process.
 */
class IommufdFailNthTest extends IommufdAbiFixture {
    static final long BUFFER_SIZE = 2L << 20;
    /** iommufd_fail_nth.c's limit: more sites than this means the scenario grew, not a bug. */
    static final int MAX_ITERATIONS = 400;

    /** The FIXTURE(basic_fail_nth) state of one run, and the process it runs in. */
    final class Run {
        final KernelClient p;
        final FailNth nth;
        final long buffer;
        final int mfd;
        IommufdHandle iommufd;
        boolean persistent;
        long guestVa;
        int guestFd = -1;

        Run() throws Exception {
            p = KernelClient.connect(server.path(), tmp.resolve("m").resolve("memory"));
            nth = new FailNth(p);
            buffer = p.mmapAnonymous(BUFFER_SIZE);
            mfd = p.memfdCreate("fail-nth");
            p.ftruncate(mfd, BUFFER_SIZE);
        }

        void enable() {
            nth.enable();
        }

        IommufdHandle openIommufd() {
            iommufd = IommufdHandle.open(p);
            return iommufd;
        }

        /** _test_cmd_mock_domain: a device opened, bound and attached to {@code pt}; returns it. */
        VfioDeviceHandle mockDomain(final int index, final int pt) {
            final VfioDeviceHandle d = VfioDeviceHandle.open(p, index);
            d.bind(iommufd);
            d.attach(pt);
            return d;
        }
    }

    interface Scenario {
        void run(Run r) throws Exception;
    }

    /** What one sweep saw: runs, where failures were injected, and which errnos came back. */
    record Sweep(int iterations, Map<FaultInjection.Site, Long> sites, Map<Errno, Integer> errnos) {
    }

    Accounting baseline;

    @Override
    String cmdline() {
        return "guestmemfs=32M liveupdate.finish_timeout=0";
    }

    @BeforeEach
    void quiet() {
        c.close(fd); // the fixture's own context: each run opens what it needs in a process of its own
        baseline = rig.kernel.accounting();
    }

    /**
     * TEST_FAIL_NTH's loop, with the checks each run ends with. A first plain run warms what a boot
     * allocates once and keeps (a bus's context table, the preserved-memory tracker's bitmaps); the
     * books after it are the baseline every later run, the plain one again included, must return to.
     */
    Sweep sweep(final String name, final Scenario scenario) throws Exception {
        final Run warm = new Run();
        scenario.run(warm);
        checkUsable(name + " warm-up", warm);
        cleanUp(warm);
        baseline = rig.kernel.accounting();
        final Map<FaultInjection.Site, Long> sites = new EnumMap<>(FaultInjection.Site.class);
        final Map<Errno, Integer> errnos = new TreeMap<>();
        for (int iteration = 0; ; iteration++) {
            assertTrue(iteration < MAX_ITERATIONS, name + ": more than " + MAX_ITERATIONS + " injection sites");
            final Map<FaultInjection.Site, Long> before = injected();
            final Run r = new Run();
            r.nth.iteration(iteration);
            Errno failed = null;
            try {
                scenario.run(r);
            } catch (ErrnoException e) {
                failed = e.error();
                assertNotNull(failed, name + " at n=" + iteration + ": errno " + e.errno() + " is not a Linux errno (" + e + ")");
            }
            final boolean fired = iteration > 0 && r.nth.readAndDisable();
            final String at = name + " at n=" + iteration;
            if (!fired) {
                assertEquals(null, failed, at + ": a run with no failure injected must succeed");
            } else if (failed != null) {
                errnos.merge(failed, 1, Integer::sum);
            }
            checkUsable(at, r);
            cleanUp(r);
            final List<String> leaks = rig.kernel.accounting().leaksAgainst(baseline);
            assertEquals(List.of(), leaks, at + ": the books after the process exited; " + rig.lastInjection());
            final Map<FaultInjection.Site, Long> after = injected();
            for (FaultInjection.Site s : FaultInjection.Site.values()) {
                sites.merge(s, after.get(s) - before.get(s), Long::sum);
            }
            if (iteration > 0 && !fired) {
                final Sweep sw = new Sweep(iteration, sites, errnos);
                System.out.println("fail-nth " + name + ": " + sw);
                return sw;
            }
        }
    }


    private Map<FaultInjection.Site, Long> injected() {
        final Map<FaultInjection.Site, Long> m = new EnumMap<>(FaultInjection.Site.class);
        for (FaultInjection.Site s : FaultInjection.Site.values()) {
            m.put(s, rig.kernel.faults().injected(s));
        }
        return m;
    }

    /** The context still works, the pins add up, and the hardware agrees with the kernel on every device. */
    private void checkUsable(final String at, final Run r) {
        assertEquals(List.of(), rig.kernel.accounting().pinMismatches(), at + ": pinned pages");
        assertEquals(List.of(), DeviceStates.halfStates(rig.kernel), at + ": devices");
        if (r.iommufd == null) {
            return;
        }
        if (r.persistent && rig.kernel.liveUpdate().finalized()) {
            r.p.writeFile("/sys/kernel/kho/finalize", "0"); // a run that stopped between finalize and its abort
        }
        final int ioas = r.iommufd.ioasAlloc();
        final long iova = 0x4000_0000L;
        if (r.persistent) {
            // After persistence only guest memory maps; the run may have failed before it had any.
            if (r.guestFd >= 0) {
                r.iommufd.mapFileFixed(ioas, r.guestFd, 0, BUFFER_SIZE, iova);
                assertEquals(BUFFER_SIZE, r.iommufd.unmap(ioas, iova, BUFFER_SIZE), at);
            }
        } else {
            r.iommufd.mapFixed(ioas, r.buffer, BUFFER_SIZE, iova);
            assertEquals(BUFFER_SIZE, r.iommufd.unmap(ioas, iova, BUFFER_SIZE), at);
        }
        r.iommufd.destroy(ioas);
    }

    /** Process exit (every file released), and the guest RAM file a run made goes too. */
    private void cleanUp(final Run r) throws java.io.IOException {
        r.p.close();
        try (KernelClient root = KernelClient.connect(server.path(), tmp.resolve("m").resolve("memory"))) {
            if (root.listDir("/guestmemfs").contains("fail-nth")) {
                root.unlink("/guestmemfs/fail-nth");
            }
        }
    }

    // ------------------------------------------------------------------ iommufd_fail_nth.c

    /** basic: ioas.c (IOAS_ALLOC, IOVA_RANGES, ALLOW_IOVAS, MAP, COPY, UNMAP and an unmap of nothing). */
    @Test
    void basic() throws Exception {
        final Sweep s = sweep("basic", r -> {
            r.enable();
            final IommufdHandle fd = r.openIommufd();
            final int ioas = fd.ioasAlloc();
            fd.iovaRanges(ioas);
            fd.allowIovas(ioas, List.of(new IommufdHandle.AllowedRange(16 * 1024, BUFFER_SIZE + 16 * 1024 * 600 - 1)));
            final long iova = fd.map(ioas, r.buffer, BUFFER_SIZE);
            copyAuto(r, ioas, iova, 10 * 16);
            fd.unmap(ioas, iova, BUFFER_SIZE);
            try {
                fd.unmap(ioas, iova, BUFFER_SIZE); // the failure path of no IOVA to unmap
            } catch (ErrnoException expected) {
                // ENOENT, as the selftest ignores
            }
        });
        assertTrue(s.sites().get(FaultInjection.Site.USER_COPY) > 5, s.toString());
    }

    /** map_domain: iopt_area_fill_domains() and iopt_area_fill_domain(), through a device's auto domain. */
    @Test
    void map_domain() throws Exception {
        final Sweep s = sweep("map_domain", r -> {
            final IommufdHandle fd = r.openIommufd();
            final int ioas = fd.ioasAlloc();
            r.enable();
            VfioDeviceHandle d = r.mockDomain(0, ioas);
            fd.map(ioas, r.buffer, 262144);
            d.close();
            d = r.mockDomain(0, ioas);
        });
        assertTrue(s.sites().get(FaultInjection.Site.TABLE_PAGE) > 0, s.toString());
        assertTrue(s.errnos().containsKey(Errno.ENOMEM), s.toString());
    }

    /** map_file_domain: the same with IOAS_MAP_FILE of a memfd. */
    @Test
    void map_file_domain() throws Exception {
        final Sweep s = sweep("map_file_domain", r -> {
            final IommufdHandle fd = r.openIommufd();
            final int ioas = fd.ioasAlloc();
            r.enable();
            VfioDeviceHandle d = r.mockDomain(0, ioas);
            fd.mapFileFixed(ioas, r.mfd, 0, 262144, 0x10_0000L);
            d.close();
            d = r.mockDomain(0, ioas);
        });
        assertTrue(s.sites().get(FaultInjection.Site.FRAME) > 0, "memfd pages and table chunks: " + s);
    }

    /** map_two_domains: a map filling two domains (the second device has its own HWPT), then both re-attached. */
    @Test
    void map_two_domains() throws Exception {
        sweep("map_two_domains", r -> {
            final IommufdHandle fd = r.openIommufd();
            final int ioas = fd.ioasAlloc();
            VfioDeviceHandle d0 = r.mockDomain(0, ioas);
            r.enable();
            VfioDeviceHandle d1 = VfioDeviceHandle.open(r.p, 1);
            d1.bind(fd);
            final int hwpt = fd.hwptAlloc(d1.devId(), ioas);
            d1.attach(hwpt);
            fd.map(ioas, r.buffer, 262144);
            d0.close();
            d1.close();
            fd.destroy(hwpt);
            d0 = r.mockDomain(0, ioas);
            d1 = r.mockDomain(1, ioas);
        });
    }

    /** access_pin_domain: iopt_pages pinned by an in-kernel access while a domain maps them. */
    @Test
    void access_pin_domain() throws Exception {
        sweep("access_pin_domain", r -> {
            final IommufdHandle fd = r.openIommufd();
            final int ioas = fd.ioasAlloc();
            r.mockDomain(0, ioas);
            final long iova = fd.map(ioas, r.buffer, BUFFER_SIZE);
            final IommufdCtx ctx = ((IommufdFile) server.process(r.p.pid()).fds().get(fd.fd())).ctx();
            final Access a = Access.create(ctx, new Access.Ops() {
                @Override
                public boolean needsPinPages() {
                    return true;
                }

                @Override
                public void unmap(final long at, final long length) {
                    // the run unpins before it unmaps
                }
            });
            try {
                Access.attach(a, ioas);
                r.enable();
                // The driver runs in the process's context, as an ioctl of its would.
                rig.kernel.faults().callAs(server.process(r.p.pid()).failNth(), () -> {
                    Access.pinPages(a, iova, BUFFER_SIZE, true);
                    Access.rw(a, iova, MemorySegment.ofArray(new byte[8192]), true);
                    Access.unpinPages(a, iova, BUFFER_SIZE);
                    return null;
                });
            } catch (org.iopersist.kernel.KernelException e) {
                throw new ErrnoException(e.errno().number, e.getMessage());
            } finally {
                Access.destroy(a);
            }
        });
    }

    /** device: bind and attach, GET_HW_INFO, HWPT_ALLOC, then replace to another IOAS and to the HWPT. */
    @Test
    void device() throws Exception {
        sweep("device", r -> {
            final IommufdHandle fd = r.openIommufd();
            final int ioas = fd.ioasAlloc();
            final int ioas2 = fd.ioasAlloc();
            fd.mapFixed(ioas, r.buffer, PAGE, 0x10_0000L);
            fd.mapFixed(ioas2, r.buffer, PAGE, 0x10_0000L);
            r.enable();
            final VfioDeviceHandle d = r.mockDomain(0, ioas);
            final var l = IommuHwInfo.LAYOUT;
            final MemorySegment info = struct(l);
            set32(info, l, "dev_id", d.devId());
            final long ret = r.p.ioctl(fd.fd(), Iommufd.IOMMU_GET_HW_INFO, info);
            if (ret < 0) {
                throw new ErrnoException((int) -ret, "IOMMU_GET_HW_INFO");
            }
            final int hwpt = fd.hwptAlloc(d.devId(), ioas);
            d.attach(ioas2); // VFIO_DEVICE_ATTACH_IOMMUFD_PT on an attached device replaces
            d.attach(hwpt);
        });
    }

    // ------------------------------------------------------------------ persistence

    /**
     * A persistent context over guest RAM with a device, then finalize (every subsystem serializes,
     * the KHO tree is written) and abort: a failure anywhere in finalize undoes all of it.
     */
    @Test
    void persistent_finalize() throws Exception {
        final Sweep s = sweep("persistent_finalize", r -> {
            r.persistent = true;
            final IommufdHandle fd = r.openIommufd();
            r.enable();
            fd.makePersistent();
            final GuestRam ram = GuestRam.create(r.p, "fail-nth", BUFFER_SIZE);
            r.guestFd = ram.fd();
            final int ioas = fd.ioasAlloc();
            fd.mapFixed(ioas, ram.va(), BUFFER_SIZE, 0);
            r.mockDomain(0, ioas);
            r.p.writeFile("/sys/kernel/kho/finalize", "1");
            r.p.writeFile("/sys/kernel/kho/finalize", "0");
        });
        assertTrue(s.iterations() > 10, s.toString());
    }

    @Test
    void failNthFileAsLinuxServesIt() throws Exception {
        final Run r = new Run();
        try {
            assertEquals("0\n", r.p.readFile("/proc/thread-self/fail-nth"));
            // C notation and a newline, as kstrtouint takes them; then off again through the tid's path.
            r.p.writeFile("/proc/thread-self/fail-nth", "0x7fffffff\n");
            r.p.writeFile("/proc/self/task/" + r.p.pid() + "/fail-nth", "0");
            assertEquals("0\n", r.p.readFile("/proc/self/task/" + r.p.pid() + "/fail-nth"));
            assertEquals(Errno.ENOENT, org.junit.jupiter.api.Assertions.assertThrows(ErrnoException.class,
                    () -> r.p.open("/proc/self/task/1/fail-nth", Syscall.O_RDWR)).error(), "not this task's");
            final int f = r.p.open("/proc/thread-self/fail-nth", Syscall.O_RDWR);
            for (String bad : List.of("", "x", "-1", "1 2", "0x")) {
                r.p.memory().writeBytes(r.p.scratch() + 4096, bad.getBytes(java.nio.charset.StandardCharsets.US_ASCII));
                assertEquals(-Errno.EINVAL.number, r.p.syscall(Syscall.PWRITE64, f, r.p.scratch() + 4096, bad.length(), 0), bad);
            }
            r.p.memory().writeBytes(r.p.scratch() + 4096, "4294967296".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
            assertEquals(-Errno.ERANGE.number, r.p.syscall(Syscall.PWRITE64, f, r.p.scratch() + 4096, 10, 0));
            // The 4th site after the write: the open's getname buffer, its path copy and its struct
            // file are the first three, the read's copy to user the 4th.
            r.p.memory().writeBytes(r.p.scratch() + 4096, "4".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
            assertEquals(1, r.p.syscall(Syscall.PWRITE64, f, r.p.scratch() + 4096, 1, 0));
            final int g = r.p.open("/proc/thread-self/fail-nth", Syscall.O_RDONLY);
            assertEquals(-Errno.EFAULT.number, r.p.syscall(Syscall.PREAD64, g, r.p.scratch() + 4096, 16, 0), "the read fired it");
            assertEquals(2, r.p.syscall(Syscall.PREAD64, g, r.p.scratch() + 4096, 16, 0));
            assertEquals("0\n", new String(r.p.memory().readBytes(r.p.scratch() + 4096, 2), java.nio.charset.StandardCharsets.US_ASCII));
        } finally {
            r.p.close();
        }
    }

    /** IOAS_COPY within {@code ioas} to an IOVA the kernel picks, as the selftest's copy_cmd. */
    private static void copyAuto(final Run r, final int ioas, final long srcIova, final long length) {
        final var l = org.iopersist.uapi.IommuIoasCopy.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE);
        set32(s, l, "dst_ioas_id", ioas);
        set32(s, l, "src_ioas_id", ioas);
        set64(s, l, "length", length);
        set64(s, l, "src_iova", srcIova);
        final long ret = r.p.ioctl(r.iommufd.fd(), Iommufd.IOMMU_IOAS_COPY, s);
        if (ret < 0) {
            throw new ErrnoException((int) -ret, "IOMMU_IOAS_COPY");
        }
    }
}
