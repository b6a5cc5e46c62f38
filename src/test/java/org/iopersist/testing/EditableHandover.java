package org.iopersist.testing;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import org.iopersist.hw.Machine;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.liveupdate.IncomingBoot;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.SetupData;

/**
 * A machine right after a kexec, its handover in memory and its boot record, kept so that one
 * semantic edit after another can be tried on it: {@link #restore} puts memory and the boot record
 * back as the kexec left them, {@link #apply} changes one cell of one property of one blob and
 * reseals it (so the checks behind the checksum judge the edit).
 */
public final class EditableHandover {
    private static final int PAGE = 4096;

    /** Runs a property only with {@code -Diopersist.edits.full=true}: the long run of edits. */
    public static final class FullRunOnly implements net.jqwik.api.lifecycle.SkipExecutionHook {
        @Override
        public net.jqwik.api.lifecycle.SkipExecutionHook.SkipResult shouldBeSkipped(
                final net.jqwik.api.lifecycle.LifecycleContext context) {
            return Boolean.getBoolean("iopersist.edits.full") ? SkipResult.doNotSkip()
                    : SkipResult.skip("the full run: -Diopersist.edits.full=true");
        }
    }

    /** One edit, abstract until applied: blob, property, cell and change, each taken modulo what there is. */
    public record Edit(int blob, int prop, int cell, int op, int value) {
    }

    private final Machine machine;
    private final Path boot;
    private final PhysicalMemory mem;
    private final List<String> blobs;
    /** The machine's memory after the handover: every page that is not all zeros. */
    private final Map<Long, byte[]> snapshot = new HashMap<>();
    private final Map<String, byte[]> bootFiles = new HashMap<>();

    /**
     * Snapshots {@code machine} (whose directory is {@code machineDir}) as it is now. {@code blobs}
     * names what edits may touch: subsystem blobs by name, and {@code "tree"} for the KHO tree.
     */
    public EditableHandover(final Machine machine, final Path machineDir, final List<String> blobs) throws IOException {
        this.machine = machine;
        this.boot = machineDir.resolve("boot");
        this.mem = machine.board().memory();
        this.blobs = List.copyOf(blobs);
        final MemorySegment seg = mem.segment();
        final MemorySegment zeros = MemorySegment.ofArray(new byte[PAGE]);
        for (long p = 0; p < mem.size(); p += PAGE) {
            if (seg.asSlice(p, PAGE).mismatch(zeros) >= 0) {
                snapshot.put(p, seg.asSlice(p, PAGE).toArray(ValueLayout.JAVA_BYTE));
            }
        }
        try (var files = Files.list(boot)) {
            for (Path f : files.toList()) {
                bootFiles.put(f.getFileName().toString(), Files.readAllBytes(f));
            }
        }
    }

    /** Edits over {@code blobs}, blob {@code i} drawn with weight {@code weights[i]}. */
    public static Arbitrary<Edit> edits(final int... weights) {
        int total = 0;
        for (int w : weights) {
            total += w;
        }
        final int sum = total;
        return Combinators.combine(Arbitraries.integers().between(0, sum - 1), Arbitraries.integers().between(0, 999),
                Arbitraries.integers().between(0, 999), Arbitraries.integers().between(0, 8), Arbitraries.integers())
                .as((b, p, c, o, v) -> {
                    int blob = 0;
                    for (int left = b; left >= weights[blob]; blob++) {
                        left -= weights[blob];
                    }
                    return new Edit(blob, p, c, o, v);
                });
    }

    /** Memory and boot record back as the kexec left them; every device's bus mastering on. */
    public void restore() throws IOException {
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
        try (var files = Files.list(boot)) {
            for (Path f : files.toList()) {
                if (!bootFiles.containsKey(f.getFileName().toString())) {
                    Files.delete(f);
                }
            }
        }
        for (Map.Entry<String, byte[]> e : bootFiles.entrySet()) {
            Files.write(boot.resolve(e.getKey()), e.getValue());
        }
        for (int i = 0; i < machine.board().config().devices().size(); i++) {
            new DeviceBar(machine.board().deviceBar(i)).setBusMaster(true);
        }
    }

    /** The edit of cell {@code cell} of the first property {@code prop} of blob {@code blob}, by change {@code op}. */
    public Edit named(final String blob, final String prop, final int cell, final int op) {
        final int b = blobs.indexOf(blob);
        final FdtReader f = reader(blob);
        final List<long[]> props = new ArrayList<>();
        collect(f, f.root(), props);
        for (int i = 0; i < props.size(); i++) {
            if (f.propertyName((int) props.get(i)[0]).equals(prop)) {
                return new Edit(b, i, cell, op, 0);
            }
        }
        throw new AssertionError("no " + prop + " in " + blob);
    }

    /** Applies {@code e} in memory, reseals, and says what it did. */
    public String apply(final Edit e) {
        final String name = blobs.get(e.blob());
        final FdtReader blob = reader(name);
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

    /** What {@link #tryEdit} did, and whether the next boot's validation refused it. */
    public record Tried(String what, boolean refused) {
    }

    /**
     * Restores, applies {@code e}, and asks the next boot's validation (a dry run) about it. A
     * refusal must name its reason, not come from a reader that tripped over the edit
     * ({@link IncomingBoot#UNEXPECTED}); it counts as "cold (validation)" in jqwik's statistics.
     */
    public Tried tryEdit(final Edit e) throws IOException {
        restore();
        final String what = apply(e);
        final IncomingBoot dryRun = Kernel.validateHandover(machine.board());
        if (dryRun.restoring()) {
            return new Tried(what, false);
        }
        org.junit.jupiter.api.Assertions.assertTrue(!dryRun.coldReason().startsWith(IncomingBoot.UNEXPECTED),
                what + ": " + dryRun.coldReason());
        net.jqwik.api.statistics.Statistics.collect("cold (validation)");
        return new Tried(what, true);
    }

    private FdtReader reader(final String name) {
        if (!name.equals("tree")) {
            return Handovers.subtree(machine.board(), name);
        }
        try {
            final SetupData setup = SetupData.decode(Files.readAllBytes(boot.resolve(Kernel.SETUP_DATA_FILE)));
            return FdtReader.open(mem.slice(setup.fdtAddr(), setup.fdtSize()));
        } catch (Exception ex) {
            throw new IllegalStateException("the boot record's KHO tree", ex);
        }
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
