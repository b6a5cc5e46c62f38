package org.iopersist.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The live update across real processes: the machine (memory, VT-d unit, devices doing DMA) is one
 * JVM, each kernel another, and the VMM this one. Kernel 1's process ends at the kexec; kernel 2
 * is a new JVM that can know only what the machine directory holds, and still re-hydrates the
 * VMM's iommufd while the devices, in their own process, never see a fault.
 */
class SeparateProcessesLiveUpdateTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=128M liveupdate.finish_timeout=0";

    @TempDir
    Path dir;

    @Test
    void aKernelProcessKexecsIntoANewOneWhileDevicesInTheMachineProcessKeepDoingDma() throws Exception {
        final Path m = dir.resolve("machine");
        final Path sock = dir.resolve("k.sock");
        try (ChildJvm machine = ChildJvm.start(dir.resolve("machine.log"), MachineMain.class, m.toString())) {
            machine.awaitLine("machine ready");
            Files.writeString(m.resolve("boot").resolve("cmdline"), CMDLINE);
            final int pid;
            final int[] devIds = new int[2];
            final DeviceBar[] bars = new DeviceBar[2];
            try (Board board = Board.open(m)) {
                try (ChildJvm kernel1 = ChildJvm.start(dir.resolve("kernel1.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel1.awaitLine("kernel ready " + sock + " cold");
                    final KernelClient vmm = KernelClient.connect(sock, m.resolve("memory"));
                    final GuestRam ram = GuestRam.create(vmm, "vm0-ram", 32 * MIB);
                    final IommufdHandle iommufd = IommufdHandle.open(vmm);
                    pid = (int) iommufd.makePersistent();
                    final int ioas = iommufd.ioasAlloc();
                    iommufd.mapFixed(ioas, ram.va(), ram.size(), 0);
                    for (int i = 0; i < 2; i++) {
                        final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, i);
                        devIds[i] = d.bind(iommufd);
                        d.attach(ioas);
                        // The guest's driver programs its device: the BAR lives in the machine's process.
                        bars[i] = new DeviceBar(board.deviceBar(i));
                        bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i));
                        bars[i].awaitSeq(500);
                    }
                    vmm.writeFile("/sys/kernel/kho/finalize", "1");
                    vmm.kexecLoad(CMDLINE);
                    vmm.rebootKexec();
                    assertEquals(0, kernel1.waitFor(30), kernel1.output());
                    assertTrue(kernel1.output().contains("kernel kexec"), kernel1.output());
                }
                // Between the two kernels no kernel process exists; the devices keep going.
                final long during = bars[0].counters().ops();
                Thread.sleep(100);
                assertTrue(bars[0].counters().ops() > during, "DMA goes on with no kernel at all");
                Handovers.checkWithDtc(board);

                try (ChildJvm kernel2 = ChildJvm.start(dir.resolve("kernel2.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel2.awaitLine("kernel ready " + sock + " live_update");
                    // sysfs as `ls` and `cat` see it, mirrored by the new kernel's process.
                    final Path persisted = m.resolve("sys").resolve("kernel").resolve("iommufd_persisted").resolve(Integer.toString(pid));
                    final long deadline = System.nanoTime() + 10_000_000_000L;
                    // The mirror is refreshed in the background: wait for a generation that shows the context whole.
                    while (!(Files.isRegularFile(persisted.resolve("owner")) && Files.isRegularFile(persisted.resolve("state"))
                            && !readOrEmpty(persisted.resolve("state")).isBlank()) && System.nanoTime() < deadline) {
                        Thread.sleep(20);
                    }
                    assertEquals("0", Files.readString(persisted.resolve("owner")).trim());
                    assertEquals("restored", Files.readString(persisted.resolve("state")).trim());
                    assertEquals("live_update", Files.readString(m.resolve("sys").resolve("kernel").resolve("boot").resolve("kind")).trim());
                    try (KernelClient vmm2 = KernelClient.connect(sock, m.resolve("memory"))) {
                        final IommufdHandle reopened = IommufdHandle.of(vmm2,
                                vmm2.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                        assertEquals(pid, reopened.persistentId());
                        for (int i = 0; i < 2; i++) {
                            assertEquals(devIds[i], VfioDeviceHandle.open(vmm2, i).bind(reopened), "device " + i + " keeps its id");
                        }
                        final GuestRam ram2 = GuestRam.open(vmm2, "vm0-ram");
                        assertTrue(vmm2.readFile("/sys/kernel/liveupdate/finish").trim().equals("1"), "the reopen finished it");
                        final long after = bars[1].counters().ops();
                        bars[1].awaitSeq(bars[1].counters().nextSeq() + 500);
                        assertTrue(bars[1].counters().ops() > after);
                        final RecordChecker checker = new RecordChecker(board.memory());
                        for (int i = 0; i < 2; i++) {
                            bars[i].stop();
                            final DeviceCounters c = bars[i].counters();
                            assertEquals(0, c.faults(), "device " + i + ": " + c);
                            assertEquals(0, c.corrupt(), "device " + i + ": " + c);
                            final RecordChecker.Report r = checker.check(bars[i].window(), ram2::physOf);
                            assertTrue(r.clean(), r.toString());
                        }
                    }
                    kernel2.process().getOutputStream().close(); // stdin ends: the kernel halts
                    assertEquals(0, kernel2.waitFor(30), kernel2.output());
                    assertTrue(kernel2.output().contains("iommufd: restored persistent ctx " + pid), kernel2.output());
                    assertTrue(kernel2.output().contains("kernel halted"), kernel2.output());
                }
            }
            machine.process().getOutputStream().close();
            assertEquals(0, machine.waitFor(30), machine.output());
        }
    }

    private static String readOrEmpty(final Path p) {
        try {
            return Files.readString(p);
        } catch (java.io.IOException e) {
            return "";
        }
    }
}
