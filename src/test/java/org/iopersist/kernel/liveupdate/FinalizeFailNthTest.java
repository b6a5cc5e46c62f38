package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Accounting;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommufd.persist.PersistedIommufds;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.FailNth;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * fail_nth over the live update itself: a VMM with a persistent context over guest RAM and a
 * device doing DMA writes 1 to {@code /sys/kernel/kho/finalize}, stages the next kernel and reboots
 * into it, with its Nth injectable site failing (every frame the handover takes, every user copy of
 * the three calls). Whatever fails:
 * <ul>
 *   <li>a failed finalize returns a Linux errno and undoes itself: the books are as before it;</li>
 *   <li>the next kernel either restores the handover whole (the context with its id, the device
 *       attached to the same table, DMA going on without a fault, every record in place) or, if
 *       no finalize was standing at the kexec, cold-boots with every device blocked: never half.</li>
 * </ul>
 * Each n is a cold boot, the setup, the injected update and the next boot, on one machine: about a
 * dozen sites, two seconds in all, so every n runs in CI.
 */
class FinalizeFailNthTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=32M liveupdate.finish_timeout=0 page_poison=on";

    @TempDir
    Path dir;

    /** What one n ended with. */
    private record Outcome(boolean fired, boolean restored) {
    }

    @Test
    void aFailureAnywhereInTheUpdateAbortsItOrRestoresWhole() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            int restored = 0;
            int cold = 0;
            int n = 0;
            for (; ; n++) {
                assertTrue(n < 400, "more than 400 sites in a live update");
                final Outcome o = update(m, n);
                if (o.restored()) {
                    restored++;
                } else {
                    cold++;
                }
                if (n > 0 && !o.fired()) {
                    break;
                }
            }
            System.out.printf("finalize fail-nth: %d sites, %d runs cold, %d restored%n", n - 1, cold, restored);
            assertTrue(n > 10, "the update has sites: " + n);
            assertTrue(cold > 0 && restored > 0, "both ends seen: " + cold + " cold, " + restored + " restored");
        }
    }

    /** Kernel 1 booted cold with a VMM set up: a persistent context over guest RAM, device 0 doing DMA through it. */
    private record Vm(Kernel k1, SyscallServer server, KernelClient vmm, int pid, long pgd, DeviceBar bar, IommuDevice d0) {
    }

    private Vm coldBootAndSetUp(final Machine m, final long generation) throws Exception {
        final Path boot = dir.resolve("m").resolve("boot");
        Files.deleteIfExists(boot.resolve(Kernel.SETUP_DATA_FILE)); // a plain reboot: kernel 1 starts cold
        Files.writeString(boot.resolve(Kernel.CMDLINE_FILE), CMDLINE);
        final Kernel k1 = Kernel.boot(m.board());
        final SyscallServer server = k1.serve(dir.resolve("k.sock"));
        final DeviceBar bar = new DeviceBar(m.board().deviceBar(0));
        final KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
        final GuestRam ram = GuestRam.create(vmm, "vm0", 8 * MIB);
        final IommufdHandle fd = IommufdHandle.open(vmm);
        final int pid = (int) fd.makePersistent();
        final int ioas = fd.ioasAlloc();
        fd.mapFixed(ioas, ram.va(), ram.size(), 0);
        final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, 0);
        dev.bind(fd);
        dev.attach(ioas);
        final IommuDevice d0 = k1.iommu().devices().get(0);
        final long pgd = k1.iommu().domainOf(d0).ops().handoverKey();
        bar.resetCounters();
        bar.setBusMaster(true); // the guest's driver: a cold-boot kexec before turned it off
        bar.start(WorkloadSettings.writeVerify(MIB, 4 * MIB, 512, generation));
        bar.awaitSeq(100);
        assertTrue(bar.counters().ops() >= 100 && bar.counters().faults() == 0, bar.counters().toString());
        return new Vm(k1, server, vmm, pid, pgd, bar, d0);
    }

    /** The device goes on through its tables: records complete, none faults. */
    private static void assertDmaFlowing(final Vm vm, final String at) {
        final long seq = vm.bar().counters().nextSeq();
        vm.bar().awaitSeq(seq + 200);
        final DeviceCounters c = vm.bar().counters();
        assertEquals(0, c.faults(), at + ": " + c);
        assertEquals(0, c.corrupt(), at + ": " + c);
    }

    /**
     * The device went on through its tables all along: no fault, no corrupt record, and (stopped,
     * so the window does not wrap under the check) every record in place.
     */
    private static void assertDmaIntact(final Machine m, final Kernel k, final Vm vm, final String at) {
        assertDmaFlowing(vm, at);
        vm.bar().stop();
        final DeviceCounters c = vm.bar().counters();
        assertEquals(0, c.faults(), at + ": " + c);
        assertEquals(0, c.corrupt(), at + ": " + c);
        final RecordChecker.Report r = new RecordChecker(m.board().memory()).check(vm.bar().window(),
                iova -> k.iommu().domainOf(vm.d0()).iovaToPhys(iova));
        assertTrue(r.clean(), at + ": " + r);
    }

    /** One injected live update at {@code n}, from a cold boot to the next kernel's checks. */
    private Outcome update(final Machine m, final int n) throws Exception {
        final Path boot = dir.resolve("m").resolve("boot");
        final Vm vm = coldBootAndSetUp(m, n + 1);
        final Kernel k1 = vm.k1();
        final SyscallServer server = vm.server();
        final KernelClient vmm = vm.vmm();
        final DeviceBar bar = vm.bar();
        final IommuDevice d0 = vm.d0();
        final int pid = vm.pid();
        final long pgd = vm.pgd();
        final String at = "n=" + n;

        final Accounting before = k1.accounting();
        final long injectedBefore = injected(k1);
        final FailNth nth = new FailNth(vmm);
        nth.iteration(n);
        nth.enable();
        ErrnoException failed = null;
        boolean kexecd = false;
        try {
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();
            kexecd = true;
        } catch (ErrnoException e) {
            failed = e;
            assertTrue(e.error() != null, at + ": " + e);
        }
        final boolean fired = injected(k1) > injectedBefore;
        final String where = k1.log().dmesg().stream().filter(l -> l.contains("FAULT_INJECTION")).reduce((a, b) -> b).orElse("-");
        final String at2 = at + " (" + (fired ? where : "nothing injected") + ", " + failed + ")";
        if (!kexecd) {
            assertTrue(fired, at2 + ": the update failed with nothing injected: " + failed);
            if (!k1.liveUpdate().finalized()) {
                // A failed finalize undid itself: the books are as they were, the pins and device too.
                assertEquals(List.of(), k1.accounting().leaksAgainst(before), at2 + ": after " + failed);
                assertEquals(List.of(), DeviceStates.halfStates(k1), at);
            }
            nth.readAndDisable();
            // The VMM gives up; the machine is rebooted into the next kernel all the same.
            k1.kexecLoad(KernelRig.root(), CMDLINE);
            k1.kexec();
        }
        vmm.close();
        server.close();
        final boolean handedOver = Files.exists(boot.resolve(Kernel.SETUP_DATA_FILE));
        final Kernel k2 = Kernel.boot(m.board());
        try {
            assertEquals(List.of(), DeviceStates.halfStates(k2), at2 + ": devices after the kexec");
            if (handedOver) {
                assertEquals(Kernel.BootKind.LIVE_UPDATE, k2.bootKind(), at2 + ": " + k2.coldBootReason());
                assertEquals(List.of(pid), PersistedIommufds.restoredIds(k2), at2);
                assertEquals(pgd, k2.iommu().domainOf(d0).ops().handoverKey(), at2 + ": the same tables");
                assertDmaIntact(m, k2, vm, at2);
                bar.stop();
            } else {
                assertEquals(Kernel.BootKind.COLD, k2.bootKind(), at);
                assertEquals(k2.iommu().blockedDomain(), k2.iommu().domainOf(d0), at2 + ": blocked");
                // Blocked, and its bus mastering off since the kexec: nothing more of it lands.
                final long ops = bar.counters().ops();
                Thread.sleep(30);
                bar.stop();
                assertTrue(bar.counters().ops() - ops <= 1, at2 + ": a blocked device completes nothing (one may have been in flight)");
            }
            assertEquals(0, k2.frames().stats().poisonViolations(), at2 + ": nothing wrote to a freed frame");
            assertFalse(k1.liveUpdate().state() != LiveUpdate.State.GONE, at);
        } finally {
            bar.stop();
            k2.kexecLoad(KernelRig.root(), CMDLINE);
            k2.kexec(); // no finalize: ends it without a handover
        }
        return new Outcome(fired, handedOver);
    }

    /**
     * The restarted VMM's side, swept: it reopens the persisted context through sysfs, binds its
     * device again and opens its guest RAM, with its Nth site failing. A failed step answers a Linux
     * errno and costs nothing: the device keeps translating through the restored tables (it is never
     * blocked by a failed reopen), and the same VMM then completes the reopen without injection.
     */
    @Test
    void aFailureInTheReopenLeavesTheContextToReopenAgain() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            int n = 0;
            for (; ; n++) {
                assertTrue(n < 400, "more than 400 sites in a reopen");
                final Vm vm = coldBootAndSetUp(m, 1000 + n);
                vm.vmm().writeFile("/sys/kernel/kho/finalize", "1");
                vm.vmm().kexecLoad(CMDLINE);
                vm.vmm().rebootKexec();
                vm.vmm().close();
                vm.server().close();
                final Kernel k2 = Kernel.boot(m.board());
                final String at = "reopen n=" + n;
                assertEquals(Kernel.BootKind.LIVE_UPDATE, k2.bootKind(), at + ": " + k2.coldBootReason());
                final SyscallServer server = k2.serve(dir.resolve("k.sock"));
                final long before = injected(k2);
                boolean fired;
                try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                    final FailNth nth = new FailNth(vmm);
                    nth.iteration(n);
                    nth.enable();
                    IommufdHandle fd = null;
                    VfioDeviceHandle dev = null;
                    boolean bound = false;
                    GuestRam ram = null;
                    ErrnoException failed = null;
                    try {
                        fd = IommufdHandle.of(vmm, vmm.open(org.iopersist.uapi.Iommufd.persistedNode(vm.pid()),
                                org.iopersist.uapi.Syscall.O_RDWR));
                        dev = VfioDeviceHandle.open(vmm, 0);
                        dev.bind(fd);
                        bound = true;
                        ram = GuestRam.open(vmm, "vm0");
                    } catch (ErrnoException e) {
                        failed = e;
                        assertTrue(e.error() != null, at + ": " + e);
                    }
                    fired = injected(k2) > before;
                    nth.readAndDisable();
                    assertTrue(failed == null || fired, at + ": failed with nothing injected: " + failed);
                    final String why = at + " (" + failed + " at " + k2.log().dmesg().stream()
                            .filter(l -> l.contains("FAULT_INJECTION")).reduce((a, b) -> b).orElse("-") + ")";
                    assertEquals(List.of(), DeviceStates.halfStates(k2), why);
                    assertTrue(k2.iommu().domainOf(vm.d0()) != k2.iommu().blockedDomain(), why + ": blocked");
                    assertEquals(vm.pgd(), k2.iommu().domainOf(vm.d0()).ops().handoverKey(), why + ": still on its tables");
                    assertDmaFlowing(vm, at + " (" + failed + ")");
                    // The same VMM completes what failed.
                    if (fd == null) {
                        fd = IommufdHandle.of(vmm, vmm.open(org.iopersist.uapi.Iommufd.persistedNode(vm.pid()),
                                org.iopersist.uapi.Syscall.O_RDWR));
                    }
                    if (dev == null) {
                        dev = VfioDeviceHandle.open(vmm, 0);
                    }
                    if (!bound) {
                        dev.bind(fd);
                    }
                    if (ram == null) {
                        ram = GuestRam.open(vmm, "vm0");
                    }
                    assertEquals("1", vmm.readFile("/sys/kernel/liveupdate/finish").trim(), at + ": the reopen finished it");
                    assertDmaIntact(m, k2, vm, at + " after the retry");
                    assertEquals(List.of(), k2.accounting().pinMismatches(), at);
                }
                vm.bar().stop();
                server.close();
                k2.kexecLoad(KernelRig.root(), CMDLINE);
                k2.kexec();
                if (n > 0 && !fired) {
                    break;
                }
            }
            System.out.printf("reopen fail-nth: %d sites%n", n - 1);
            assertTrue(n > 3, "the reopen has sites: " + n);
        }
    }

    private static long injected(final Kernel k) {
        long n = 0;
        for (FaultInjection.Site s : FaultInjection.Site.values()) {
            n += k.faults().injected(s);
        }
        return n;
    }
}
