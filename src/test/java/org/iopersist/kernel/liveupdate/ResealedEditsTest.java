package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommufd.persist.PersistedIommufds;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.EditableHandover;
import org.iopersist.testing.EditableHandover.Edit;
import org.iopersist.testing.Handovers;
import org.iopersist.testing.Reach;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AddLifecycleHook;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.iopersist.testing.Trees;

/**
 * Semantic edits to a real handover, resealed (each edited blob's CRC-32C and the tree's own
 * rewritten), so no checksum stands between the edit and the next kernel's checks: jqwik picks a
 * blob, a property in it, a 32-bit cell and a change (a neighbour value, a page or a block away, a
 * bit, zero, all ones, anything). The next boot must cold-boot, or restore something whole: every
 * device blocked or translating as the kernel says, nothing reachable on a free list, each process
 * charged what its areas pin, and once the VMM has bound its devices again, the scrub either finds
 * each restored domain mapping exactly its areas (device 0's records then land where they should)
 * or blocks that domain's devices. A boot that throws fails the property.
 *
 * <p>Edits the dry-run validation refuses cost a fraction of a millisecond; the others are booted
 * for real on the one machine, whose memory and boot record are put back after each. CI tries 40
 * edits; {@code -Diopersist.edits.full=true} adds 1000 more.
 */
class ResealedEditsTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=16M liveupdate.finish_timeout=0 page_poison=on";
    private static final String[] BLOBS = {"iommufd", "intel-iommu", "guestmemfs", "tree"};
    private static final int PAGE = 4096;

    private static Path dir;
    private static Machine machine;
    private static PhysicalMemory mem;
    private static DeviceBar bar;
    private static EditableHandover handover;

    @BeforeContainer
    static void handOver() throws Exception {
        dir = Files.createTempDirectory("iopersist-edits");
        machine = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(64 * MIB)).start();
        mem = machine.board().memory();
        Files.writeString(dir.resolve("m").resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE);
        final Kernel k1 = Kernel.boot(machine.board());
        final SyscallServer server = k1.serve(dir.resolve("k.sock"));
        try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            Handovers.persistEveryKind(vmm);
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();
        }
        server.close();
        bar = new DeviceBar(machine.board().deviceBar(0));
        handover = new EditableHandover(machine, dir.resolve("m"), List.of(BLOBS));
        assertTrue(Kernel.validateHandover(machine.board()).restoring(), "the handover as written restores");
    }

    @AfterContainer
    static void powerOff() throws Exception {
        machine.close();
        Trees.delete(dir);
    }

    @Provide
    Arbitrary<Edit> edits() {
        return EditableHandover.edits(5, 3, 1, 1); // iommufd, intel-iommu, guestmemfs, the KHO tree
    }

    /** Found by the full run once, and kept: an area's IOVA off its IOAS's alignment (it validated; its context then leaked). */
    @net.jqwik.api.Example
    void anAreaOffItsAlignment() throws Exception {
        judge(named("iommufd", "areas", 1, 7));
    }

    /** Found by the full run once, and kept: a pgd outside memory (validation threw). */
    @net.jqwik.api.Example
    void aPgdOutsideMemory() throws Exception {
        judge(named("intel-iommu", "pgd", 0, 7));
    }

    private static Edit named(final String blob, final String prop, final int cell, final int op) {
        return handover.named(blob, prop, cell, op);
    }

    @Property(tries = 40)
    void aResealedEditColdBootsOrRestoresWhole(@ForAll("edits") final Edit edit) throws Exception {
        judge(edit);
    }

    @Property(tries = 1000)
    @AddLifecycleHook(EditableHandover.FullRunOnly.class)
    void manyResealedEdits(@ForAll("edits") final Edit edit) throws Exception {
        judge(edit);
    }

    private static void judge(final Edit edit) throws Exception {
        bar.stop(); // device 0 idle while memory is put back
        final EditableHandover.Tried tried = handover.tryEdit(edit);
        if (tried.refused()) {
            return;
        }
        final String what = tried.what();
        final Kernel k2 = Kernel.boot(machine.board());
        try {
            whole(k2, what);
        } finally {
            bar.stop();
            k2.kexecLoad(KernelRig.root(), CMDLINE);
            k2.kexec();
        }
    }

    /** A restore that is whole, whatever the edit: the checks in the class comment. */
    private static void whole(final Kernel k, final String what) throws Exception {
        assertEquals(List.of(), DeviceStates.halfStates(k), what);
        assertEquals(List.of(), Reach.freeButReachable(machine.board(), k.frames()::isFree, 10), what);
        if (k.bootKind() == Kernel.BootKind.COLD) {
            net.jqwik.api.statistics.Statistics.collect("cold (boot)");
            for (IommuDevice d : k.iommu().devices()) {
                assertEquals(k.iommu().blockedDomain(), k.iommu().domainOf(d), what + ": cold, " + d + " blocked");
            }
            return;
        }
        final SyscallServer server = k.serve(dir.resolve("k.sock"));
        try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            final List<Integer> pids = PersistedIommufds.restoredIds(k);
            final List<IommufdHandle> fds = new ArrayList<>();
            for (int pid : pids) {
                fds.add(IommufdHandle.of(vmm, vmm.open(Iommufd.persistedNode(pid), Syscall.O_RDWR)));
            }
            for (int i = 0; i < k.iommu().devices().size(); i++) {
                final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, i);
                for (IommufdHandle fd : fds) {
                    try {
                        d.bind(fd);
                        break;
                    } catch (ErrnoException e) {
                        // not this context's device
                    }
                }
            }
            for (int pid : pids) {
                final String scrub = k.persistedContexts().awaitScrub(pid, 10, java.util.concurrent.TimeUnit.SECONDS);
                assertTrue(scrub != null && (scrub.startsWith("ok") || scrub.startsWith("mismatch")), what + ": scrub " + scrub);
            }
            assertEquals(List.of(), DeviceStates.halfStates(k), what + " after the scrub");
            boolean blocked = false;
            for (IommuDevice d : k.iommu().devices()) {
                blocked |= k.iommu().domainOf(d) == k.iommu().blockedDomain();
            }
            net.jqwik.api.statistics.Statistics.collect(blocked ? "restored, the scrub blocked a domain" : "restored whole");
            assertEquals(List.of(), k.accounting().pinMismatches(), what);
            final IommuDevice d0 = k.iommu().devices().get(0);
            if (k.iommu().domainOf(d0) != k.iommu().blockedDomain()) {
                // Attached after the scrub: its domain maps exactly its areas, all guest RAM; DMA lands there.
                bar.resetCounters();
                bar.start(WorkloadSettings.writeVerify(MIB, MIB, 512, 77));
                bar.awaitSeq(200);
                bar.stop();
                final RecordChecker.Report r = new RecordChecker(mem).check(bar.window(), iova -> k.iommu().domainOf(d0).iovaToPhys(iova));
                assertEquals(0, bar.counters().faults(), what + ": " + bar.counters());
                assertTrue(r.clean(), what + ": " + r);
                for (long iova = MIB; iova < 2 * MIB; iova += PAGE) {
                    assertTrue(k.guestmemfsRegion().contains(k.iommu().domainOf(d0).iovaToPhys(iova)),
                            what + ": IOVA 0x" + Long.toHexString(iova) + " reaches outside guest RAM");
                }
            }
        }
        // The VMM exited: everything it reopened goes, cleanly (a release that throws leaves its books behind).
        server.close();
        assertEquals(0, k.accounting().persistentContexts(), what + ": contexts left after the VMM exited");
        assertEquals(0, k.accounting().guestmemfsPins(), what + ": pins left after the VMM exited");
        assertEquals(0, k.accounting().devicesAttached(), what + ": devices left attached after the VMM exited");
        assertEquals(0, k.frames().stats().poisonViolations(), what);
    }
}
