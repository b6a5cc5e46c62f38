package org.iopersist.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.CanaryPages;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommufd.persist.PersistedIommufds;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.ChildJvm;
import org.iopersist.testing.Reach;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * kill -9 at every phase of a live update, with a device doing DMA throughout. The machine runs in
 * this JVM; whoever is killed is a real process of its own: the VMM ({@link Vmm}, for the VMM's
 * phases) or a kernel ({@code iopersist kernel}, stopped exactly at a phase by
 * {@code liveupdate.break=}, then killed). The kernels that live on (or boot next) run here, so the
 * checks can read them. After every kill:
 * <ul>
 *   <li>no DMA lands outside the memory its domain maps: canary pages in the guest RAM around the
 *       device's window never change, and each record the device wrote is where its IOVA says;</li>
 *   <li>a device that is not restored is blocked: no present context entry, its DMA completes nothing;</li>
 *   <li>nothing preserved is freed while a device can reach it: no table page and no page any
 *       present context entry reaches is on the running kernel's free lists, and page poisoning
 *       finds no freed frame written to;</li>
 *   <li>and what the next kernel does is whole: it restores the handover with the device still on
 *       its tables, or it boots cold with every device blocked.</li>
 * </ul>
 * CI runs {@link #CI}; {@code -Diopersist.kill.full=true} runs every case (about 15 s more).
 * docs/handover.md states what the model promises after each kill.
 */
class KillMatrixTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=32M liveupdate.finish_timeout=0 page_poison=on";
    private static final long RAM = 8 * MIB;
    /** The device's records: IOVA [1 MiB, 5 MiB) of the guest RAM mapped at IOVA 0. */
    private static final long WINDOW = MIB;
    private static final long WINDOW_LENGTH = 4 * MIB;
    private static final boolean FULL = Boolean.getBoolean("iopersist.kill.full");

    /** Who is killed, and when. */
    enum Kill {
        /** The VMM, once its context is persistent, mapped and its device attached; no finalize. */
        VMM_AFTER_PERSISTENT,
        /** The VMM, as it writes 1 to finalize (before, during or just after the kernel serializes). */
        VMM_DURING_FINALIZE,
        /** The VMM, finalized, before it stages and reboots. */
        VMM_BETWEEN_FINALIZE_AND_KEXEC,
        /** The restarted VMM, connected to kernel 2, before it reopens anything. */
        VMM_AFTER_KEXEC_BEFORE_REOPEN,
        /** The restarted VMM, with the persisted iommufd reopened, its device not bound again yet. */
        VMM_DURING_REOPEN,
        /** The restarted VMM, its device bound again and its guest RAM open. */
        VMM_AFTER_REBIND,
        /** Kernel 1 (itself booted from a handover), stopped after VT-d serialized, before the tree is written. */
        KERNEL1_MID_FINALIZE,
        /** Kernel 1, in the kexec: the next command line written, boot/setup_data not. */
        KERNEL1_BEFORE_SETUP_DATA,
        /** Kernel 2, the handover validated whole, nothing reserved or adopted. */
        KERNEL2_MID_VALIDATION,
        /** Kernel 2, VT-d adopted (live root table, its own queue), guestmemfs and iommufd not. */
        KERNEL2_MID_ADOPTION,
        /** Kernel 2, serving: the first process has run. */
        KERNEL2_SERVING
    }

    /** The cases CI runs: one of each kind of kill. */
    static final Set<Kill> CI = EnumSet.of(Kill.VMM_BETWEEN_FINALIZE_AND_KEXEC, Kill.VMM_DURING_REOPEN,
            Kill.KERNEL1_MID_FINALIZE, Kill.KERNEL2_MID_ADOPTION);

    @TempDir
    Path dir;
    private Path mdir;
    private Path sock;
    private Machine machine;
    private DeviceBar bar;
    private CanaryPages canaries;

    /**
     * The VMM as a process: {@code Vmm SOCKET MEMORY POINT}. Sets up (or, after a kexec, takes
     * back) a persistent context over guest RAM with device 0, prints {@code at POINT} and waits to
     * be killed. Before it goes past its first setup it prints {@code attached} and waits for a
     * line on stdin, so the device is already doing DMA through it.
     */
    public static final class Vmm {
        public static void main(final String[] args) throws Exception {
            final KernelClient c = KernelClient.connect(Path.of(args[0]), Path.of(args[1]));
            final String point = args[2];
            final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            if (point.startsWith("reopen")) {
                if (!point.equals("reopen:connected")) {
                    final IommufdHandle fd = IommufdHandle.of(c, c.open(Iommufd.persistedNode(Integer.parseInt(args[3])),
                            Syscall.O_RDWR));
                    if (point.equals("reopen:bound")) {
                        VfioDeviceHandle.open(c, 0).bind(fd);
                        GuestRam.open(c, "vm0");
                    }
                }
                say("at " + point);
                Thread.sleep(600_000);
                return;
            }
            final GuestRam ram = GuestRam.create(c, "vm0", RAM);
            final IommufdHandle fd = IommufdHandle.open(c);
            final long pid = fd.makePersistent();
            final int ioas = fd.ioasAlloc();
            fd.mapFixed(ioas, ram.va(), ram.size(), 0);
            final VfioDeviceHandle d = VfioDeviceHandle.open(c, 0);
            d.bind(fd);
            d.attach(ioas);
            say("attached " + pid);
            in.readLine();
            if (point.equals("persistent")) {
                say("at persistent");
            } else if (point.equals("finalizing")) {
                say("at finalizing");
                c.writeFile("/sys/kernel/kho/finalize", "1");
                say("finalized");
            } else if (point.equals("finalized")) {
                c.writeFile("/sys/kernel/kho/finalize", "1");
                say("at finalized");
            }
            Thread.sleep(600_000);
        }

        private static void say(final String line) {
            System.out.println(line);
            System.out.flush();
        }
    }

    @ParameterizedTest
    @EnumSource(Kill.class)
    void killedAtEveryPhase(final Kill kill) throws Exception {
        Assumptions.assumeTrue(FULL || CI.contains(kill), "a full-matrix case: -Diopersist.kill.full=true runs it");
        mdir = dir.resolve("m");
        sock = dir.resolve("k.sock");
        try (Machine m = Machine.create(mdir, MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            machine = m;
            bar = new DeviceBar(m.board().deviceBar(0));
            try {
                switch (kill) {
                    case VMM_AFTER_PERSISTENT -> vmmKilledBeforeTheKexec("persistent", "at persistent");
                    case VMM_DURING_FINALIZE -> vmmKilledBeforeTheKexec("finalizing", "at finalizing");
                    case VMM_BETWEEN_FINALIZE_AND_KEXEC -> vmmKilledBeforeTheKexec("finalized", "at finalized");
                    case VMM_AFTER_KEXEC_BEFORE_REOPEN -> vmmKilledAfterTheKexec("reopen:connected");
                    case VMM_DURING_REOPEN -> vmmKilledAfterTheKexec("reopen:opened");
                    case VMM_AFTER_REBIND -> vmmKilledAfterTheKexec("reopen:bound");
                    case KERNEL1_MID_FINALIZE -> kernel1Killed("finalize:intel-iommu");
                    case KERNEL1_BEFORE_SETUP_DATA -> kernel1Killed("kexec");
                    case KERNEL2_MID_VALIDATION -> kernel2Killed("validate");
                    case KERNEL2_MID_ADOPTION -> kernel2Killed("adopt:intel-iommu");
                    case KERNEL2_SERVING -> kernel2Killed("");
                }
            } finally {
                bar.stop();
            }
        }
    }

    // ------------------------------------------------------------------ the VMM killed

    /** Kernel 1 here, the VMM a process killed at {@code point}; then a kexec: with no finalize standing, cold. */
    private void vmmKilledBeforeTheKexec(final String point, final String marker) throws Exception {
        final Kernel k1 = coldBoot(CMDLINE);
        final SyscallServer server = k1.serve(sock);
        try (ChildJvm vmm = ChildJvm.start(dir.resolve("vmm.log"), Vmm.class, sock.toString(), memoryFile(), point)) {
            await(vmm, "attached");
            startDevice(k1, 1);
            vmm.process().getOutputStream().write('\n');
            vmm.process().getOutputStream().flush();
            await(vmm, marker);
            vmm.process().destroyForcibly().waitFor(); // kill -9
        }
        final IommuDevice d0 = k1.iommu().devices().get(0);
        until(() -> !k1.liveUpdate().finalized() && k1.iommu().domainOf(d0) == k1.iommu().blockedDomain()
                && k1.accounting().persistentContexts() == 0);
        assertEquals(0, k1.accounting().persistentContexts(), "the VMM's context went with it");
        assertEquals(0, k1.accounting().guestmemfsPins(), "and its pins");
        assertTrue(!k1.liveUpdate().finalized(), "no finalize stands without the VMM that made it");
        assertBlocked(k1, "kernel 1 after the VMM died");
        k1.kexecLoad(KernelRig.root(), CMDLINE);
        k1.kexec();
        server.close();
        final Kernel k2 = Kernel.boot(machine.board());
        assertEquals(Kernel.BootKind.COLD, k2.bootKind(), "nothing was handed over");
        assertBlocked(k2, "kernel 2");
        end(k2);
    }

    /** The VMM kexecs itself; kernel 2 here; the restarted VMM, a process, is killed at {@code point}. */
    private void vmmKilledAfterTheKexec(final String point) throws Exception {
        final int pid = updateToKernel2Here();
        final Kernel k2 = Kernel.boot(machine.board());
        assertEquals(Kernel.BootKind.LIVE_UPDATE, k2.bootKind(), k2.coldBootReason());
        assertFlowing(k2, "kernel 2 booted");
        final SyscallServer server = k2.serve(sock);
        try (ChildJvm vmm = ChildJvm.start(dir.resolve("vmm2.log"), Vmm.class, sock.toString(), memoryFile(), point,
                Integer.toString(pid))) {
            await(vmm, "at " + point);
            vmm.process().destroyForcibly().waitFor();
        }
        final IommuDevice d0 = k2.iommu().devices().get(0);
        if (point.equals("reopen:connected")) {
            // It reopened nothing: the context stays the kernel's, the device on its tables, and
            // the next VMM takes it over.
            Thread.sleep(100);
            assertEquals(List.of(pid), PersistedIommufds.restoredIds(k2));
            assertFlowing(k2, "after the VMM died before reopening");
            try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                final IommufdHandle fd = IommufdHandle.of(vmm, vmm.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                VfioDeviceHandle.open(vmm, 0).bind(fd);
                GuestRam.open(vmm, "vm0");
                assertFlowing(k2, "the next VMM took it over");
                assertRecordsInPlace(k2, "the next VMM took it over");
            }
        } else {
            // The reopener held the context; its death closes it: the device is blocked, the
            // context and its pins are gone, and nothing it mapped is reachable any more.
            until(() -> k2.iommu().domainOf(d0) == k2.iommu().blockedDomain() && k2.accounting().persistentContexts() == 0);
            assertEquals(List.of(), PersistedIommufds.restoredIds(k2));
            assertEquals(0, k2.accounting().guestmemfsPins());
            assertBlocked(k2, "after the reopener died");
        }
        server.close();
        end(k2);
    }

    // ------------------------------------------------------------------ a kernel killed

    /**
     * Kernel 1 is a process booted from a handover (the stale boot record is what it must not let
     * the next boot take), the VMM takes its context back there and starts the next update; kernel
     * 1 stops at {@code breakAt} and is killed. The next boot is cold and every device blocked.
     */
    private void kernel1Killed(final String breakAt) throws Exception {
        final int pid = updateToKernel2Here(CMDLINE + " liveupdate.break=" + breakAt);
        try (ChildJvm k1 = ChildJvm.start(dir.resolve("kernel1.log"), Main.class, "kernel", mdir.toString(), "--socket",
                sock.toString())) {
            await(k1, "kernel ready");
            try (KernelClient vmm = KernelClient.connect(sock, dir.resolve("m").resolve("memory"))) {
                final IommufdHandle fd = IommufdHandle.of(vmm, vmm.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                VfioDeviceHandle.open(vmm, 0).bind(fd);
                GuestRam.open(vmm, "vm0");
                final Thread update = Thread.ofVirtual().start(() -> {
                    try {
                        vmm.writeFile("/sys/kernel/kho/finalize", "1");
                        vmm.kexecLoad(CMDLINE);
                        vmm.rebootKexec();
                    } catch (RuntimeException e) {
                        // the kernel died under it: that is the point
                    }
                });
                await(k1, "liveupdate: break at " + breakAt);
                k1.process().destroyForcibly().waitFor();
                update.join(10_000);
            }
        }
        Files.writeString(mdir.resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE); // booted again, no break
        final Kernel k2 = Kernel.boot(machine.board());
        assertEquals(Kernel.BootKind.COLD, k2.bootKind(), "a kernel killed in its update leaves the next boot cold");
        assertBlocked(k2, "the boot after kernel 1 died");
        end(k2);
    }

    /**
     * Kernel 2 is a process booted from a handover, stopped at {@code breakAt} (or, with none,
     * serving) and killed; kernel 3 boots here from the same boot record: whole or cold.
     */
    private void kernel2Killed(final String breakAt) throws Exception {
        final int pid = updateToKernel2Here(breakAt.isEmpty() ? CMDLINE : CMDLINE + " liveupdate.break=" + breakAt);
        try (ChildJvm k2 = ChildJvm.start(dir.resolve("kernel2.log"), Main.class, "kernel", mdir.toString(), "--socket",
                sock.toString())) {
            await(k2, breakAt.isEmpty() ? "kernel ready" : "liveupdate: break at " + breakAt);
            k2.process().destroyForcibly().waitFor();
        }
        Files.writeString(mdir.resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE);
        final Kernel k3 = Kernel.boot(machine.board());
        if (breakAt.isEmpty()) {
            assertEquals(Kernel.BootKind.COLD, k3.bootKind(), "kernel 2 had let processes run: its handover is used");
            assertTrue(k3.coldBootReason().contains(LiveUpdate.SETUP_DATA_USED), k3.coldBootReason());
        }
        System.out.println("kill matrix: kernel 2 killed at \"" + breakAt + "\": kernel 3 " + k3.bootKind()
                + (k3.coldBootReason() == null ? "" : " (" + k3.coldBootReason() + ")"));
        if (k3.bootKind() == Kernel.BootKind.LIVE_UPDATE) {
            assertEquals(List.of(pid), PersistedIommufds.restoredIds(k3), "restored whole");
            assertFlowing(k3, "kernel 3 restored");
            final SyscallServer server = k3.serve(sock);
            try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                final IommufdHandle fd = IommufdHandle.of(vmm, vmm.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                VfioDeviceHandle.open(vmm, 0).bind(fd);
                GuestRam.open(vmm, "vm0");
                assertFlowing(k3, "the VMM took it back on kernel 3");
                assertRecordsInPlace(k3, "kernel 3");
            }
            server.close();
        } else {
            assertBlocked(k3, "kernel 3 cold");
        }
        end(k3);
    }

    // ------------------------------------------------------------------ steps and checks

    /**
     * A cold kernel here, a VMM (here too) with a persistent context and device 0 doing DMA, then
     * the update: finalize, and a kexec that stages {@code nextCmdline}. Returns the persistent id.
     */
    private int updateToKernel2Here(final String nextCmdline) throws Exception {
        final Kernel k1 = coldBoot(CMDLINE);
        final SyscallServer server = k1.serve(sock);
        final int pid;
        try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            final GuestRam ram = GuestRam.create(vmm, "vm0", RAM);
            final IommufdHandle fd = IommufdHandle.open(vmm);
            pid = (int) fd.makePersistent();
            final int ioas = fd.ioasAlloc();
            fd.mapFixed(ioas, ram.va(), ram.size(), 0);
            final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, 0);
            d.bind(fd);
            d.attach(ioas);
            startDevice(k1, 2);
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            vmm.kexecLoad(nextCmdline);
            vmm.rebootKexec();
        }
        server.close();
        return pid;
    }

    private int updateToKernel2Here() throws Exception {
        return updateToKernel2Here(CMDLINE);
    }

    private Kernel coldBoot(final String cmdline) throws Exception {
        final Path boot = mdir.resolve("boot");
        Files.deleteIfExists(boot.resolve(Kernel.SETUP_DATA_FILE));
        Files.writeString(boot.resolve(Kernel.CMDLINE_FILE), cmdline);
        return Kernel.boot(machine.board());
    }

    /** Device 0 writes records into its window; canaries fill the rest of the guest RAM. */
    private void startDevice(final Kernel k, final long generation) {
        bar.resetCounters();
        bar.setBusMaster(true);
        bar.start(WorkloadSettings.writeVerify(WINDOW, WINDOW_LENGTH, 512, generation));
        bar.awaitSeq(100);
        canaries = new CanaryPages(machine.board().memory(), 0xC0FFEE + generation);
        final long low = k.guestmemfs().phys("vm0", 0);
        final long high = k.guestmemfs().phys("vm0", WINDOW + WINDOW_LENGTH);
        canaries.fill(low, WINDOW >>> 12);
        canaries.fill(high, (RAM - WINDOW - WINDOW_LENGTH) >>> 12);
    }

    /** Device 0 still translates through its restored tables: records complete, none faults, nothing strays. */
    private void assertFlowing(final Kernel k, final String at) {
        final DeviceCounters before = bar.counters();
        bar.awaitSeq(before.nextSeq() + 200);
        final DeviceCounters c = bar.counters();
        assertTrue(c.ops() > before.ops(), at + ": " + c);
        assertEquals(0, c.faults(), at + ": " + c);
        assertEquals(0, c.corrupt(), at + ": " + c);
        assertSafe(k, at);
    }

    /** Stopped, so the window does not wrap under the check: every record where its IOVA says. */
    private void assertRecordsInPlace(final Kernel k, final String at) {
        bar.stop();
        final IommuDevice d0 = k.iommu().devices().get(0);
        final RecordChecker.Report r = new RecordChecker(machine.board().memory()).check(bar.window(),
                iova -> k.iommu().domainOf(d0).iovaToPhys(iova));
        assertTrue(r.clean(), at + ": " + r);
    }

    /** Every device blocked, and blocked in fact: device 0's DMA completes nothing. */
    private void assertBlocked(final Kernel k, final String at) throws Exception {
        for (IommuDevice d : k.iommu().devices()) {
            assertEquals(k.iommu().blockedDomain(), k.iommu().domainOf(d), at + ": " + d);
        }
        final long ops = bar.counters().ops();
        Thread.sleep(30);
        assertTrue(bar.counters().ops() - ops <= 1, at + ": a blocked device completed DMA: " + bar.counters());
        assertSafe(k, at);
    }

    /** No half state, no stray DMA, nothing reachable on a free list, no freed frame written to. */
    private void assertSafe(final Kernel k, final String at) {
        assertEquals(List.of(), DeviceStates.halfStates(k), at);
        assertEquals(List.of(), canaries.changes(), at + ": DMA landed outside its window");
        assertEquals(List.of(), Reach.freeButReachable(machine.board(), k.frames()::isFree, 10),
                at + ": a device reaches frames the kernel holds free");
        assertEquals(0, k.frames().stats().poisonViolations(), at);
    }

    private static void end(final Kernel k) {
        k.kexecLoad(KernelRig.root(), CMDLINE);
        k.kexec();
    }

    private String memoryFile() {
        return mdir.resolve("memory").toString();
    }

    private static void await(final ChildJvm child, final String line) throws Exception {
        final long deadline = System.nanoTime() + 60_000_000_000L;
        while (!child.output().contains(line)) {
            if (!child.process().isAlive() || System.nanoTime() > deadline) {
                throw new AssertionError("no '" + line + "'; log:\n" + child.output());
            }
            Thread.sleep(10);
        }
    }

    private static void until(final java.util.function.BooleanSupplier done) throws InterruptedException {
        final long deadline = System.nanoTime() + 10_000_000_000L;
        while (!done.getAsBoolean() && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
    }
}
