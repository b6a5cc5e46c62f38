package org.iopersist.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineMain;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.testing.ChildJvm;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Both designs on one machine through one real kexec: the machine, kernel 1 and kernel 2 are
 * separate processes. VMM A follows the seed RFC (guestmemfs RAM, a persistent iommufd, finalize,
 * sysfs reopen) with device 0; VMM B runs the IOMMU series' selftest
 * ({@code tools/testing/selftests/iommu/iommufd_liveupdate.c}: a sealed memfd mapped by file at
 * 4 GiB, a HWPT of its own, marked, and memfd, iommufd and cdev preserved in a session, closed and
 * preserved again) with device 1. Both devices DMA throughout; after the kexec each VMM takes its
 * state back its own way, and neither device saw a fault or lost a record.
 */
class RfcAndLuoThroughOneKexecTest {
    private static final long MIB = 1L << 20;
    private static final long SZ_4G = 1L << 32;
    private static final String CMDLINE = "guestmemfs=64M liveupdate.finish_timeout=0";
    private static final long STATE_TOKEN = 0;
    private static final long IOMMUFD_TOKEN = 0x123456;
    private static final long CDEV_TOKEN = 0x654321;
    private static final long HWPT_TOKEN = 0x789012;
    private static final long MEMFD_TOKEN = 0x890123;
    private static final String STATE_SESSION = "state-iommufd-cdev";
    private static final String IOMMUFD_SESSION = "iommufd-test-cdev";

    @TempDir
    Path dir;

    private static int errno(final Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    /** The series selftest's before_kexec, with device 1 and its memfd; returns the IOAS id. */
    private static int beforeKexec(final KernelClient c, final int memfd) {
        final LiveupdateHandle luo = LiveupdateHandle.open(c);
        final SessionHandle state = luo.createSession(STATE_SESSION); // create_state_file(..., next_stage 2)
        final int stateFd = c.memfdCreate("state");
        c.write(stateFd, "2".getBytes(StandardCharsets.UTF_8));
        state.preserveFd(stateFd, STATE_TOKEN);
        SessionHandle session = luo.createSession(IOMMUFD_SESSION);
        final IommufdHandle iommufd = IommufdHandle.open(c);
        final VfioDeviceHandle cdev = VfioDeviceHandle.open(c, 1);
        // setup_iommufd
        final int devId = cdev.bind(iommufd);
        final int ioas = iommufd.ioasAlloc();
        final int hwpt = iommufd.hwptAlloc(devId, ioas);
        assertEquals(hwpt, cdev.attach(hwpt));
        iommufd.mapFileFixed(ioas, memfd, 0, MIB, SZ_4G);
        iommufd.markPreserve(hwpt, HWPT_TOKEN);

        final SessionHandle s0 = session;
        assertEquals(Errno.EINVAL.number, errno(() -> s0.preserveFd(cdev.fd(), CDEV_TOKEN)), "Cannot preserve cdev without iommufd");
        assertEquals(Errno.ENOENT.number, errno(() -> s0.preserveFd(iommufd.fd(), IOMMUFD_TOKEN)),
                "Cannot preserve iommufd without preserving memfd");
        session.preserveFd(memfd, MEMFD_TOKEN);
        session.preserveFd(iommufd.fd(), IOMMUFD_TOKEN);
        session.preserveFd(cdev.fd(), CDEV_TOKEN);
        session.close();
        session = luo.createSession(IOMMUFD_SESSION);
        session.preserveFd(memfd, MEMFD_TOKEN);
        session.preserveFd(iommufd.fd(), IOMMUFD_TOKEN);
        session.preserveFd(cdev.fd(), CDEV_TOKEN);
        luo.close(); // close(luo_fd); daemonize_and_wait()
        return ioas;
    }

    @Test
    void anRfcVmmAndALuoVmmGoThroughOneKexecWithoutAFault() throws Exception {
        final Path m = dir.resolve("machine");
        final Path sock = dir.resolve("k.sock");
        try (ChildJvm machine = ChildJvm.start(dir.resolve("machine.log"), MachineMain.class, m.toString())) {
            machine.awaitLine("machine ready");
            Files.writeString(m.resolve("boot").resolve("cmdline"), CMDLINE);
            try (Board board = Board.open(m)) {
                final DeviceBar[] bars = {new DeviceBar(board.deviceBar(0)), new DeviceBar(board.deviceBar(1))};
                final int pid;
                final int devA;
                final int ioasB;
                try (ChildJvm kernel1 = ChildJvm.start(dir.resolve("kernel1.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel1.awaitLine("kernel ready " + sock + " cold");
                    // VMM A, the RFC's way.
                    final KernelClient a = KernelClient.connect(sock, m.resolve("memory"));
                    final GuestRam ram = GuestRam.create(a, "vm-a", 16 * MIB);
                    final IommufdHandle fdA = IommufdHandle.open(a);
                    pid = (int) fdA.makePersistent();
                    final int ioasA = fdA.ioasAlloc();
                    ram.mapForDma(fdA, ioasA, 1);
                    final VfioDeviceHandle d0 = VfioDeviceHandle.open(a, 0);
                    devA = d0.bind(fdA);
                    d0.attach(ioasA);
                    bars[0].start(WorkloadSettings.writeVerify(MIB, MIB, 512, 1));
                    // VMM B, the series selftest's way.
                    final KernelClient b = KernelClient.connect(sock, m.resolve("memory"));
                    final GuestRam memfd = GuestRam.createMemfd(b, "buffer", MIB); // create_sealed_memfd(SZ_1M)
                    ioasB = beforeKexec(b, memfd.fd());
                    bars[1].start(WorkloadSettings.writeVerify(SZ_4G, MIB, 512, 2));
                    for (DeviceBar bar : bars) {
                        bar.awaitSeq(500);
                    }
                    a.writeFile("/sys/kernel/kho/finalize", "1"); // the RFC's finalize: LUO's session freezes with it
                    try (KernelClient root = KernelClient.connect(sock, m.resolve("memory"))) {
                        root.kexecLoad(CMDLINE);
                        root.rebootKexec();
                    }
                    assertEquals(0, kernel1.waitFor(30), kernel1.output());
                }
                final long during = bars[1].counters().ops();
                Thread.sleep(100);
                assertTrue(bars[1].counters().ops() > during, "DMA goes on with no kernel at all");
                final var dts = Handovers.checkWithDtc(board);
                assertTrue(dts.containsKey("iommufd") && dts.containsKey("LUO"), "one handover carries both flows: " + dts.keySet());

                try (ChildJvm kernel2 = ChildJvm.start(dir.resolve("kernel2.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel2.awaitLine("kernel ready " + sock + " live_update");
                    // VMM B: the selftest's after_kexec, beyond the series (the iommufd comes back).
                    try (KernelClient b2 = KernelClient.connect(sock, m.resolve("memory"))) {
                        final LiveupdateHandle luo = LiveupdateHandle.open(b2);
                        final SessionHandle state = luo.retrieveSession(STATE_SESSION);
                        final int stateFd = state.retrieveFd(STATE_TOKEN);
                        b2.lseek(stateFd, 0, 0);
                        assertEquals("2", new String(b2.read(stateFd, 8), StandardCharsets.UTF_8), "restore_and_read_stage");
                        final SessionHandle session = luo.retrieveSession(IOMMUFD_SESSION);
                        final VfioDeviceHandle cdev = VfioDeviceHandle.of(b2, 1, session.retrieveFd(CDEV_TOKEN), 0);
                        final IommufdHandle iommufd = IommufdHandle.of(b2, session.retrieveFd(IOMMUFD_TOKEN));
                        final IommufdHandle fresh = IommufdHandle.open(b2);
                        assertEquals(Errno.EINVAL.number, errno(() -> cdev.bind(fresh)),
                                "the retrieved cdev is bound to the retrieved iommufd (the series, retrieving none, answers EPERM)");
                        final int memfd = session.retrieveFd(MEMFD_TOKEN);
                        final long va = b2.mmap(0, MIB, Syscall.PROT_READ, Syscall.MAP_SHARED, memfd, 0);
                        session.finish();
                        state.finish();
                        // VMM A: reopen through sysfs, bind again, same id.
                        try (KernelClient a2 = KernelClient.connect(sock, m.resolve("memory"))) {
                            final IommufdHandle reopened = IommufdHandle.of(a2, a2.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                            assertEquals(devA, VfioDeviceHandle.open(a2, 0).bind(reopened), "device 0 keeps its id");
                            final GuestRam ramA = GuestRam.open(a2, "vm-a");
                            assertEquals("1", a2.readFile("/sys/kernel/liveupdate/finish").trim(),
                                    "the last session's finish and the last reopen finished the update");
                            for (DeviceBar bar : bars) {
                                bar.awaitSeq(bar.counters().nextSeq() + 500);
                                bar.stop();
                            }
                            final RecordChecker checker = new RecordChecker(board.memory());
                            final RecordChecker.Report ra = checker.check(bars[0].window(), ramA::physOf);
                            final RecordChecker.Report rb = checker.check(bars[1].window(),
                                    iova -> b2.memory().physOf(va + (iova - SZ_4G)));
                            assertTrue(ra.clean(), "RFC: " + ra);
                            assertTrue(rb.clean(), "LUO: " + rb);
                            for (DeviceBar bar : bars) {
                                final DeviceCounters c = bar.counters();
                                assertEquals(0, c.faults(), c.toString());
                                assertEquals(0, c.corrupt(), c.toString());
                            }
                        }
                        // After finish the retrieved iommufd maps and unmaps again.
                        iommufd.mapFileFixed(ioasB, memfd, 0, MIB, 2 * SZ_4G);
                        assertEquals(MIB, iommufd.unmap(ioasB, 2 * SZ_4G, MIB));
                    }
                    kernel2.process().getOutputStream().close();
                    assertEquals(0, kernel2.waitFor(30), kernel2.output());
                    assertTrue(kernel2.output().contains("iommufd: restored persistent ctx " + pid), kernel2.output());
                    assertTrue(kernel2.output().contains("iommufd: restored from session '" + IOMMUFD_SESSION + "': 1 HWPTs, 1 IOAS"),
                            kernel2.output());
                }
            }
            machine.process().getOutputStream().close();
            assertEquals(0, machine.waitFor(30), machine.output());
        }
    }
}
