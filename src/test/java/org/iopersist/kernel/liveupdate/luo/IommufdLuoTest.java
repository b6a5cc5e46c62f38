package org.iopersist.kernel.liveupdate.luo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * iommufd and VFIO in LUO sessions (the IOMMU and VFIO series, and beyond them: a retrieved iommufd
 * that works): the HWPT mark, the preserve rules and their errno, the freezes they bring, and a
 * kexec with devices doing DMA throughout, after which the VMM retrieves its iommufd, device and
 * RAM, finishes, and maps, unmaps and attaches again.
 */
class IommufdLuoTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=64M liveupdate.finish_timeout=0";
    private static final long HWPT_TOKEN = 0x789012;
    private static final long IOMMUFD_TOKEN = 0x123456;
    private static final long CDEV_TOKEN = 0x654321;
    private static final long MEMFD_TOKEN = 0x890123;

    @TempDir
    Path dir;

    /** A 512 MiB machine with kernel A booted on it. */
    private KernelRig boot() {
        return KernelRig.boot(dir.resolve("m"), MachineConfig.small().withMemorySize(512 * MIB), CMDLINE);
    }

    private static int errno(final Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    /** The series selftest's set-up: a sealed memfd mapped by file at 4 GiB, a HWPT of its own, the device attached, marked. */
    private static LuoVm setUp(final KernelClient c, final int device) {
        final LuoVm vm = LuoVm.create(c, "buffer", 16 * MIB, device, 1, HWPT_TOKEN);
        assertEquals(vm.hwpt(), vm.attached());
        return vm;
    }

    private static void preserve(final SessionHandle session, final LuoVm vm) {
        vm.preserveIn(session, MEMFD_TOKEN, IOMMUFD_TOKEN, CDEV_TOKEN);
    }

    @Test
    void theMarkTakesAUniqueTokenAndPreservingChecksEveryArea() throws Exception {
        try (KernelRig rig = boot()) {
            final Kernel k = rig.kernel;
            try (KernelClient c = rig.connect(k)) {
                final LuoVm vm = setUp(c, 0);
                final IommufdHandle fd = vm.iommufd();
                assertEquals(Errno.ENOENT.number, errno(() -> fd.markPreserve(vm.ioas(), 1)), "an IOAS is not a HWPT_PAGING");
                assertEquals(Errno.ENOENT.number, errno(() -> fd.markPreserve(99, 1)));
                assertEquals(Errno.EADDRINUSE.number, errno(() -> fd.markPreserve(vm.hwpt(), HWPT_TOKEN)), "its own token again");
                final int other = fd.hwptAlloc(vm.dev().devId(), vm.ioas());
                assertEquals(Errno.EADDRINUSE.number, errno(() -> fd.markPreserve(other, HWPT_TOKEN)), "another HWPT's token");
                fd.markPreserve(other, 2);
                fd.destroy(other); // no unmark, but a marked HWPT may be destroyed before the preserve

                final LiveupdateHandle luo = LiveupdateHandle.open(c);
                final SessionHandle session = luo.createSession("iommufd-test-cdev");
                // The series selftest's order of failures: the device before its iommufd, the iommufd before its memfd.
                assertEquals(Errno.EINVAL.number, errno(() -> session.preserveFd(vm.dev().fd(), CDEV_TOKEN)),
                        "cannot preserve cdev without iommufd");
                assertEquals(Errno.ENOENT.number, errno(() -> session.preserveFd(fd.fd(), IOMMUFD_TOKEN)),
                        "cannot preserve iommufd without memfd");
                session.preserveFd(vm.ram().fd(), MEMFD_TOKEN);
                session.preserveFd(fd.fd(), IOMMUFD_TOKEN);
                session.preserveFd(vm.dev().fd(), CDEV_TOKEN);
                final IommuDomain domain = k.iommu().domainOf(k.iommu().devices().get(0));
                assertEquals(Errno.EBUSY.number, errno(() -> fd.mapFileFixed(vm.ioas(), vm.ram().fd(), 0, MIB, 64 * MIB)),
                        "the IOAS is immutable");
                assertEquals(Errno.EBUSY.number, errno(() -> fd.unmap(vm.ioas(), 0, 16 * MIB)));
                assertEquals(Errno.EBUSY.number, errno(() -> fd.markPreserve(vm.hwpt(), 3)), "marks come before the preserve");
                assertEquals(Errno.EBUSY.number, errno(() -> fd.destroy(vm.hwpt())), "a preserved HWPT is held");
                assertEquals(Errno.EBUSY.number, errno(() -> vm.dev().detach()), "a preserved device's attachment is frozen");
                // Close and preserve again, as the selftest does: closing unpreserved everything.
                session.close();
                fd.mapFileFixed(vm.ioas(), vm.ram().fd(), 0, MIB, 64 * MIB);
                fd.unmap(vm.ioas(), 64 * MIB, MIB);
                assertEquals(domain, k.iommu().domainOf(k.iommu().devices().get(0)));
                final SessionHandle again = luo.createSession("iommufd-test-cdev");
                again.preserveFd(vm.ram().fd(), MEMFD_TOKEN);
                again.preserveFd(fd.fd(), IOMMUFD_TOKEN);
                final SessionHandle other2 = luo.createSession("other");
                assertEquals(Errno.EINVAL.number, errno(() -> other2.preserveFd(vm.dev().fd(), CDEV_TOKEN)),
                        "its iommufd is preserved, but in another session");
                again.preserveFd(vm.dev().fd(), CDEV_TOKEN);
                again.close();
                other2.close();

                // The other rules: an anonymous mapping, an unsealed memfd, a persistent (RFC) context.
                final SessionHandle third = luo.createSession("third");
                final IommufdHandle anon = IommufdHandle.open(c);
                final VfioDeviceHandle d1 = VfioDeviceHandle.open(c, 1);
                final int a = anon.ioasAlloc();
                anon.map(a, c.mmapAnonymous(MIB), MIB);
                anon.markPreserve(anon.hwptAlloc(d1.bind(anon), a), 7);
                assertEquals(Errno.EINVAL.number, errno(() -> third.preserveFd(anon.fd(), 1)), "not a MAP_FILE mapping");
                d1.close();
                final int unsealed = c.memfdCreate("unsealed", Syscall.MFD_ALLOW_SEALING);
                c.ftruncate(unsealed, MIB);
                final IommufdHandle u = IommufdHandle.open(c);
                final int ua = u.ioasAlloc();
                u.mapFileFixed(ua, unsealed, 0, MIB, 0);
                u.markPreserve(u.hwptAlloc(VfioDeviceHandle.open(c, 1).bind(u), ua), 8);
                c.fcntl(unsealed, Syscall.F_ADD_SEALS, GuestRam.MEMFD_SEALS); // too late: the seals at map time count
                third.preserveFd(unsealed, 2);
                assertEquals(Errno.EINVAL.number, errno(() -> third.preserveFd(u.fd(), 3)), "the memfd was not sealed when mapped");
                final IommufdHandle rfc = IommufdHandle.open(c);
                rfc.makePersistent();
                assertEquals(Errno.EINVAL.number, errno(() -> third.preserveFd(rfc.fd(), 4)), "the RFC's persistent context");
                third.close();
            }
            rig.server(k).close();
        }
    }

    @Test
    void theDevicesKeepDoingDmaThroughTheKexecAndTheRetrievedIommufdWorksAfterFinish() throws Exception {
        try (KernelRig rig = boot()) {
            final Machine m = rig.machine;
            final Kernel a = rig.kernel;
            final KernelClient vmm = rig.connect(a);
            final LuoVm vm = setUp(vmm, 0);
            final DeviceBar bar = rig.bar(0);
            bar.start(WorkloadSettings.writeVerify(MIB, MIB, 512, 1)); // IOVA = GPA
            bar.awaitSeq(300);
            preserve(LiveupdateHandle.open(vmm).createSession("vm0"), vm);
            final long pgd = a.iommu().domainOf(a.iommu().devices().get(0)).ops().handoverKey();
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec(); // no finalize: the reboot freezes the session
            final var dts = Handovers.checkWithDtc(m.board());
            assertTrue(dts.get("LUO").contains("compatible = \"iommufd-v1\"") && dts.get("LUO").contains("vfio-pci-v1"),
                    dts.get("LUO"));
            final long during = bar.counters().ops();

            final Kernel b = rig.bootNext();
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
            assertEquals(pgd, b.iommu().domainOf(b.iommu().devices().get(0)).ops().handoverKey(), "the same tables");
            bar.awaitSeq(bar.counters().nextSeq() + 300);
            assertTrue(bar.counters().ops() > during, "DMA went on through the kexec: " + bar.counters() + " " + during);
            try (KernelClient v2 = rig.connect(b)) {
                assertEquals(Errno.EBUSY.number, errno(() -> v2.open(Vfio.cdevPath(0), Syscall.O_RDWR)),
                        "a preserved device is had only through RETRIEVE_FD until finish");
                final SessionHandle r = LiveupdateHandle.open(v2).retrieveSession("vm0");
                final VfioDeviceHandle dev = VfioDeviceHandle.of(v2, 0, r.retrieveFd(CDEV_TOKEN), vm.dev().devId());
                final IommufdHandle iommufd = IommufdHandle.of(v2, r.retrieveFd(IOMMUFD_TOKEN));
                final GuestRam ram = GuestRam.ofMemfd(v2, r.retrieveFd(MEMFD_TOKEN));
                final IommufdHandle fresh = IommufdHandle.open(v2);
                assertEquals(Errno.EINVAL.number, errno(() -> dev.bind(fresh)), "the retrieved device is bound already");
                assertEquals(Errno.EADDRINUSE.number, errno(() -> iommufd.markPreserve(vm.hwpt(), HWPT_TOKEN)),
                        "the HWPT is back under its token, with its old id");
                assertEquals(Errno.EBUSY.number, errno(() -> iommufd.unmap(vm.ioas(), 0, 16 * MIB)),
                        "immutable until the session finishes");
                r.finish();
                // After finish, the iommufd is an ordinary one: map, unmap, replace, detach, attach.
                iommufd.mapFileFixed(vm.ioas(), ram.fd(), 0, MIB, 64 * MIB);
                assertEquals(MIB, iommufd.unmap(vm.ioas(), 64 * MIB, MIB));
                final int h2 = iommufd.hwptAlloc(dev.devId(), vm.ioas());
                bar.stop();
                assertEquals(h2, dev.attach(h2), "replace");
                dev.detach();
                assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(b.iommu().devices().get(0)));
                assertEquals(vm.hwpt(), dev.attach(vm.hwpt()), "attached again to the restored HWPT");
                final DeviceCounters counters = bar.counters();
                assertEquals(0, counters.faults(), counters.toString());
                assertEquals(0, counters.corrupt(), counters.toString());
                final RecordChecker.Report rep = new RecordChecker(m.board().memory()).check(bar.window(),
                        iova -> ram.physOf(iova));
                assertTrue(rep.clean(), rep.toString());
                assertTrue(b.liveUpdate().incoming().finished(), "the last finish finished the update");
                dev.close();
                iommufd.close();
            }
            rig.server(b).close();
        }
    }

    @Test
    void ofTwoSessionsTheOneNobodyRetrievesIsFreedAtFinishAndItsDeviceBlocked() throws Exception {
        try (KernelRig rig = boot()) {
            final KernelClient vmm = rig.connect(rig.kernel);
            final LuoVm vm0 = setUp(vmm, 0);
            final LuoVm vm1 = setUp(vmm, 1);
            final LiveupdateHandle luo = LiveupdateHandle.open(vmm);
            preserve(luo.createSession("vm0"), vm0);
            preserve(luo.createSession("vm1"), vm1);
            final long ram1 = vmm.memory().physOf(vm1.ram().va());
            final DeviceBar bar1 = rig.bar(1);
            bar1.start(WorkloadSettings.writeVerify(MIB, MIB, 512, 2));
            bar1.awaitSeq(200);
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();
            final Kernel b = rig.bootNext();
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
            try (KernelClient v2 = rig.connect(b)) {
                final SessionHandle r = LiveupdateHandle.open(v2).retrieveSession("vm0");
                r.retrieveFd(CDEV_TOKEN);
                r.retrieveFd(IOMMUFD_TOKEN);
                r.retrieveFd(MEMFD_TOKEN);
                r.finish();
                assertFalse(b.liveUpdate().incoming().finished(), "vm1 is pending");
                assertNotEquals(b.iommu().blockedDomain(), b.iommu().domainOf(b.iommu().devices().get(1)), "still translating");
                assertEquals(1 + 1, b.frameRefs().count(ram1), "the memfd's and the pin's");
                v2.writeFile("/sys/kernel/liveupdate/finish", "1");
                assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(b.iommu().devices().get(1)), "vm1's device is blocked");
                assertEquals(0, b.frameRefs().count(ram1), "vm1's RAM is free");
                final long faults = bar1.counters().faults();
                Thread.sleep(20);
                assertTrue(bar1.counters().faults() > faults, "its DMA now faults: it is blocked");
                bar1.stop();
                assertEquals(0, b.luo().incomingSessions().stream().filter("vm1"::equals).count());
                assertEquals(List.of("vm0"), b.luo().incomingSessions());
            }
            rig.server(b).close();
        }
    }

    @Test
    void aSessionClosedBeforeTheKexecLeavesItsDeviceBlockedAfterIt() throws Exception {
        try (KernelRig rig = boot()) {
            final KernelClient vmm = rig.connect(rig.kernel);
            final LuoVm vm = setUp(vmm, 0);
            final LiveupdateHandle luo = LiveupdateHandle.open(vmm);
            final SessionHandle s = luo.createSession("vm0");
            preserve(s, vm);
            s.close();
            luo.createSession("keeps-the-handover"); // an empty session: the kexec still hands over
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();
            final Kernel b = rig.bootNext();
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(b.iommu().devices().get(0)),
                    "its session was closed: the device was blocked at the kexec");
            assertFalse(rig.bar(0).busMaster(), "and lost bus mastering");
        }
    }

    @Test
    void theMarkIoctlFollowsIommufdFraming() throws Exception {
        try (KernelRig rig = boot()) {
            try (KernelClient c = rig.connect(rig.kernel)) {
                final int fd = c.open(Iommufd.DEV_PATH, Syscall.O_RDWR);
                final java.lang.foreign.MemorySegment st = java.lang.foreign.MemorySegment.ofArray(new long[2]);
                Iommufd.size(st, 12);
                assertEquals(-Errno.EINVAL.number, c.ioctl(fd, Iommufd.IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, st),
                        "shorter than offsetofend(hwpt_token)");
                Iommufd.size(st, 16);
                assertEquals(-Errno.ENOENT.number, c.ioctl(fd, Iommufd.IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, st));
            }
            rig.server(rig.kernel).close();
        }
    }
}
