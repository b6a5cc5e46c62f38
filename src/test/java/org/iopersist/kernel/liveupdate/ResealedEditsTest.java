package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
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
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Handovers;
import org.iopersist.testing.Reach;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AddLifecycleHook;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import net.jqwik.api.lifecycle.LifecycleContext;
import net.jqwik.api.lifecycle.SkipExecutionHook;

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
    /** The machine's memory after the handover: every page that is not all zeros. */
    private static final Map<Long, byte[]> snapshot = new HashMap<>();
    private static final Map<String, byte[]> bootFiles = new HashMap<>();

    /** One edit, abstract until applied: blob, property, cell and change, each taken modulo what there is. */
    record Edit(int blob, int prop, int cell, int op, int value) {
    }

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
        final MemorySegment seg = mem.segment();
        for (long p = 0; p < mem.size(); p += PAGE) {
            if (seg.asSlice(p, PAGE).mismatch(MemorySegment.ofArray(new byte[PAGE])) >= 0) {
                snapshot.put(p, seg.asSlice(p, PAGE).toArray(ValueLayout.JAVA_BYTE));
            }
        }
        for (Path f : Files.list(dir.resolve("m").resolve("boot")).toList()) {
            bootFiles.put(f.getFileName().toString(), Files.readAllBytes(f));
        }
        assertTrue(Kernel.validateHandover(machine.board()).restoring(), "the handover as written restores");
    }

    @AfterContainer
    static void powerOff() throws Exception {
        machine.close();
        try (var walk = Files.walk(dir)) {
            for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    /** Memory and boot record back as the kexec left them; device 0 idle, its bus mastering on. */
    private static void restore() throws Exception {
        bar.stop();
        final MemorySegment seg = mem.segment();
        final MemorySegment zeros = MemorySegment.ofArray(new byte[PAGE]);
        for (long p = 0; p < mem.size(); p += PAGE) {
            final byte[] want = snapshot.get(p);
            final MemorySegment page = seg.asSlice(p, PAGE);
            if (want == null) {
                if (page.mismatch(zeros) >= 0) {
                    page.fill((byte) 0);
                }
            } else if (page.mismatch(MemorySegment.ofArray(want)) >= 0) {
                MemorySegment.copy(MemorySegment.ofArray(want), 0, page, 0, PAGE);
            }
        }
        final Path boot = dir.resolve("m").resolve("boot");
        for (Path f : Files.list(boot).toList()) {
            if (!bootFiles.containsKey(f.getFileName().toString())) {
                Files.delete(f);
            }
        }
        for (Map.Entry<String, byte[]> e : bootFiles.entrySet()) {
            Files.write(boot.resolve(e.getKey()), e.getValue());
        }
        for (int i = 0; i < machine.board().config().devices().size(); i++) {
            new DeviceBar(machine.board().deviceBar(i)).setBusMaster(true);
        }
    }

    @Provide
    Arbitrary<Edit> edits() {
        return Combinators.combine(Arbitraries.integers().between(0, 9), Arbitraries.integers().between(0, 999),
                Arbitraries.integers().between(0, 999), Arbitraries.integers().between(0, 8), Arbitraries.integers())
                .as((b, p, c, o, v) -> new Edit(b < 5 ? 0 : b < 8 ? 1 : b < 9 ? 2 : 3, p, c, o, v));
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

    /** The edit of cell {@code cell} of the first property {@code prop} of blob {@code blob}, by change {@code op}. */
    private static Edit named(final String blob, final String prop, final int cell, final int op) throws Exception {
        final int b = java.util.Arrays.asList(BLOBS).indexOf(blob);
        final FdtReader f = Handovers.subtree(machine.board(), blob);
        final List<long[]> props = new ArrayList<>();
        collect(f, f.root(), props);
        for (int i = 0; i < props.size(); i++) {
            if (f.propertyName((int) props.get(i)[0]).equals(prop)) {
                return new Edit(b, i, cell, op, 0);
            }
        }
        throw new AssertionError("no " + prop + " in " + blob);
    }

    @Property(tries = 40)
    void aResealedEditColdBootsOrRestoresWhole(@ForAll("edits") final Edit edit) throws Exception {
        judge(edit);
    }

    @Property(tries = 1000)
    @AddLifecycleHook(FullRunOnly.class)
    void manyResealedEdits(@ForAll("edits") final Edit edit) throws Exception {
        judge(edit);
    }

    /** Runs only with {@code -Diopersist.edits.full=true}. */
    public static final class FullRunOnly implements SkipExecutionHook {
        @Override
        public SkipResult shouldBeSkipped(final LifecycleContext context) {
            return Boolean.getBoolean("iopersist.edits.full") ? SkipResult.doNotSkip()
                    : SkipResult.skip("the full run: -Diopersist.edits.full=true");
        }
    }

    private static void judge(final Edit edit) throws Exception {
        restore();
        final String what = apply(edit);
        final IncomingBoot dryRun = Kernel.validateHandover(machine.board());
        if (!dryRun.restoring()) {
            assertTrue(!dryRun.coldReason().startsWith(IncomingBoot.UNEXPECTED), what + ": " + dryRun.coldReason());
            net.jqwik.api.statistics.Statistics.collect("cold (validation)");
            return;
        }
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

    /** Applies {@code e} in memory, reseals, and says what it did. */
    private static String apply(final Edit e) throws Exception {
        final SetupData setup = SetupData.decode(Files.readAllBytes(dir.resolve("m").resolve("boot").resolve(Kernel.SETUP_DATA_FILE)));
        final FdtReader tree = FdtReader.open(mem.slice(setup.fdtAddr(), setup.fdtSize()));
        final String name = BLOBS[e.blob()];
        final FdtReader blob = name.equals("tree") ? tree : Handovers.subtree(machine.board(), name);
        // Every property of every node, but the blob's own checksums (editing those is a flip).
        final List<long[]> props = new ArrayList<>();
        collect(blob, blob.root(), props);
        final long[] p = props.get(e.prop() % props.size());
        final int cells = (int) (p[2] / 4);
        if (cells == 0) {
            return name + ": an empty property, left alone";
        }
        final long at = p[1] + 4L * (e.cell() % cells);
        final MemorySegment seg = blob.segment();
        final ValueLayout.OfInt be = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
        final int was = seg.get(be, at);
        final int now = switch (e.op()) {
            case 0 -> was + 1;
            case 1 -> was - 1;
            case 2 -> was + 0x1000;
            case 3 -> was - 0x1000;
            case 4 -> was + 0x20_0000;
            case 5 -> was ^ (1 << (e.value() & 31));
            case 6 -> 0;
            case 7 -> -1;
            default -> e.value();
        };
        seg.set(be, at, now);
        if (name.equals("tree")) {
            Handovers.resealTree(machine.board());
        } else {
            Handovers.reseal(machine.board(), name);
        }
        return String.format("%s %s cell %d: 0x%08x -> 0x%08x", name, blob.propertyName((int) p[0]), e.cell() % cells, was, now);
    }

    /** {prop offset, value offset, value length} of every property under {@code node}, crc32c left out. */
    private static void collect(final FdtReader f, final int node, final List<long[]> out) {
        for (int prop : f.properties(node)) {
            if (!f.propertyName(prop).equals(Kho.PROP_CRC)) {
                out.add(new long[] {prop, f.valueOffset(prop), f.value(prop).byteSize()});
            }
        }
        for (int child : f.children(node)) {
            collect(f, child, out);
        }
    }
}
