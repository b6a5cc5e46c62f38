package org.iopersist.cli;

import static org.iopersist.cli.InspectCommand.hex;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.iopersist.hw.Board;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.liveupdate.kho.DtsWriter;
import org.iopersist.kernel.liveupdate.kho.Fdt;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code inspect handover}: what the last kexec handed over, found as the next kernel finds it
 * ({@code boot/setup_data}, then the KHO tree, then each subsystem's blob), printed as device-tree
 * source by the project's own codec ({@link DtsWriter}), byte for byte what {@code dtc -I dtb -O dts}
 * prints. Each blob's CRC-32C is checked: after the new kernel finishes the update it frees the
 * blobs, and a mismatch says their frames have been reused since.
 */
@Command(name = "handover", mixinStandardHelpOptions = true,
        description = {"The KHO tree and every subsystem blob of the last kexec's handover, as dtc prints them.",
            "--blob NAME prints one of them alone (kho for the tree); --raw OUT writes them as .dtb files."})
final class InspectHandover implements Callable<Integer> {
    /** The name {@code --blob} and {@code --raw} give the KHO tree itself. */
    static final String TREE = "kho";
    private static final long MAX_BLOB = 1L << 30;

    @Spec
    private CommandSpec spec;

    @Mixin
    private InspectCommand.Target target;

    @ParentCommand
    private InspectCommand parent;

    @Option(names = "--blob", paramLabel = "NAME", description = "print only this blob's DTS (kho: the KHO tree)")
    private String blob;

    @Option(names = "--raw", paramLabel = "OUT", description = "write the tree and every blob as OUT/NAME.dtb")
    private Path raw;

    /** Where the handover is: {@code boot/setup_data} decoded. */
    record Source(String file, String fdtAddr, long fdtSize, String scratchAddr, long scratchSize) {
    }

    /** One FDT: the KHO tree or a subsystem's blob. */
    record Blob(String name, String phys, long size, String crc32c, Boolean crcOk, String compatible, String dts, Node root,
                String problem) {
    }

    /** An FDT node: property values as dtc would type them (string(s), u32 cells, bytes, or true when empty). */
    record Node(String name, Map<String, Object> properties, List<Node> children) {
    }

    record View(Source source, String warning, Blob tree, List<Blob> blobs, List<String> written) {
    }

    /** The handover as read from memory, with the readers kept for the tracker view. */
    record Image(Source source, SetupData setup, FdtReader tree, View view) {
    }

    @Override
    public Integer call() throws IOException {
        try (Board board = target.open(parent)) {
            final Image image = read(board);
            final View view = image.view();
            final List<Blob> all = new ArrayList<>();
            all.add(view.tree());
            all.addAll(view.blobs());
            if (blob != null && all.stream().noneMatch(b -> b.name().equals(blob))) {
                throw new IllegalArgumentException("no blob '" + blob + "' in the handover (it has " + all.stream().map(Blob::name).toList() + ")");
            }
            final List<String> written = new ArrayList<>();
            if (raw != null) {
                Files.createDirectories(raw);
                for (Blob b : all) {
                    if (blob != null && !b.name().equals(blob) || b.problem() != null && b.dts() == null) {
                        continue;
                    }
                    final Path f = raw.resolve(b.name() + ".dtb");
                    final long phys = Long.decode(b.phys());
                    Files.write(f, board.memory().slice(phys, b.size()).toArray(ValueLayout.JAVA_BYTE));
                    written.add(f.toString());
                }
            }
            final PrintWriter out = spec.commandLine().getOut();
            if (target.json) {
                final List<Blob> blobs = blob == null ? view.blobs() : view.blobs().stream().filter(b -> b.name().equals(blob)).toList();
                InspectCommand.printJson(spec, new View(view.source(), view.warning(), view.tree(), blobs, written));
                return 0;
            }
            if (raw != null) {
                for (String w : written) {
                    out.println("wrote " + w);
                }
                out.flush();
                return 0;
            }
            if (blob != null) {
                final Blob b = all.stream().filter(x -> x.name().equals(blob)).findFirst().orElseThrow();
                if (b.dts() == null) {
                    throw new IllegalStateException(b.name() + ": " + b.problem());
                }
                out.print(b.dts());
                out.flush();
                return 0;
            }
            final Source s = view.source();
            out.printf("// handover of %s: KHO tree at %s (%d bytes reserved), scratch %s + %s%n", s.file(), s.fdtAddr(),
                    s.fdtSize(), s.scratchAddr(), hex(s.scratchSize()));
            if (view.warning() != null) {
                out.println("// WARNING: " + view.warning());
            }
            for (Blob b : all) {
                out.println();
                out.printf("// %s: %s at %s, %d bytes%s%s%n", b.name(), b.name().equals(TREE) ? "the KHO tree" : "blob", b.phys(), b.size(),
                        b.crc32c() == null ? "" : ", crc32c " + b.crc32c() + (Boolean.TRUE.equals(b.crcOk()) ? " ok" : " MISMATCH"),
                        b.problem() == null ? "" : ": " + b.problem());
                if (b.dts() != null) {
                    out.print(b.dts());
                }
            }
            out.flush();
            return 0;
        }
    }

    /**
     * Reads the handover {@code boot/setup_data} names: a one-line error without one, or if the
     * tree does not parse; a blob that does not parse or fails its checksum is reported in its entry.
     */
    static Image read(final Board board) {
        final Path file = board.bootDirectory().resolve(Kernel.SETUP_DATA_FILE);
        final SetupData setup;
        try {
            setup = Files.exists(file) ? SetupData.decode(Files.readAllBytes(file)) : null;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        } catch (HandoverFormatException e) {
            throw new IllegalStateException(file + ": " + e.getMessage());
        }
        if (setup == null) {
            throw new IllegalStateException("no handover in " + board.directory() + ": " + board.directory().relativize(file)
                    + " is absent (no kexec with a finalized handover yet; a finalized one awaiting its kexec is"
                    + " the kernel's /sys/kernel/kho/fdt)");
        }
        final PhysicalMemory mem = board.memory();
        final Source source = new Source(file.toString(), hex(setup.fdtAddr()), setup.fdtSize(), hex(setup.scratchAddr()),
                setup.scratchSize());
        if (!mem.contains(setup.fdtAddr(), setup.fdtSize()) || setup.fdtSize() < Fdt.HEADER_SIZE) {
            throw new IllegalStateException(String.format("%s names a KHO tree at 0x%x + 0x%x, outside memory", file,
                    setup.fdtAddr(), setup.fdtSize()));
        }
        final FdtReader tree;
        try {
            tree = FdtReader.open(mem.slice(setup.fdtAddr(), setup.fdtSize()));
        } catch (HandoverFormatException e) {
            throw new IllegalStateException(String.format("the KHO tree at 0x%x does not parse (%s): the scratch region has been "
                    + "reused since the kexec", setup.fdtAddr(), e.getMessage()));
        }
        final Blob treeBlob = new Blob(TREE, hex(setup.fdtAddr()), tree.totalSize(), null, null, compatible(tree),
                DtsWriter.toDts(tree), node(tree, tree.root()), null);
        final List<Blob> blobs = new ArrayList<>();
        for (int child : tree.children(tree.root())) {
            blobs.add(blob(mem, tree, child));
        }
        return new Image(source, setup, tree, new View(source, refinalized(board, file), treeBlob, blobs, List.of()));
    }

    /**
     * A kernel that booted from this handover and then finalized one of its own wrote its tree to
     * the same place in the scratch region, often with the same size. Its sysfs mirror tells: a
     * mirror written after {@code setup_data} that shows finalize = 1.
     */
    private static String refinalized(final Board board, final Path setupData) {
        final Path finalize = board.directory().resolve("sys/kernel/kho/finalize");
        try {
            if (Files.isRegularFile(finalize) && Files.readString(finalize).trim().equals("1")
                    && Files.getLastModifiedTime(finalize).compareTo(Files.getLastModifiedTime(setupData)) > 0) {
                return "the running kernel has finalized a handover of its own since this one: the scratch region"
                        + " may hold its tree now (its /sys/kernel/kho/fdt)";
            }
        } catch (IOException e) {
            // no mirror, or it went away: nothing to say
        }
        return null;
    }

    private static Blob blob(final PhysicalMemory mem, final FdtReader tree, final int node) {
        final String name = tree.nodeName(node);
        final long phys;
        final int crc;
        try {
            phys = tree.u64(node, Kho.PROP_FDT);
            crc = tree.u32(node, Kho.PROP_CRC);
        } catch (HandoverFormatException e) {
            return new Blob(name, null, 0, null, null, null, null, null, e.getMessage());
        }
        if (!mem.contains(phys, Fdt.HEADER_SIZE)) {
            return new Blob(name, hex(phys), 0, hex(crc & 0xFFFF_FFFFL), null, null, null, null, "blob lies outside memory");
        }
        final long total = Integer.toUnsignedLong(Integer.reverseBytes(mem.load32(phys + Fdt.OFF_TOTALSIZE)));
        if (total < Fdt.HEADER_SIZE || total > MAX_BLOB || !mem.contains(phys, total)) {
            return new Blob(name, hex(phys), total, hex(crc & 0xFFFF_FFFFL), false, null, null, null,
                    "no blob there any more (bad totalsize): its frames were reused after the update finished");
        }
        final boolean crcOk = Kho.blobCrc(mem, phys) == crc;
        final String stale = crcOk ? null : "the blob changed since the kexec: its frames were freed at finish and reused";
        try {
            final FdtReader fdt = FdtReader.open(mem.slice(phys, total));
            return new Blob(name, hex(phys), total, hex(crc & 0xFFFF_FFFFL), crcOk, compatible(fdt), DtsWriter.toDts(fdt),
                    node(fdt, fdt.root()), stale);
        } catch (HandoverFormatException e) {
            return new Blob(name, hex(phys), total, hex(crc & 0xFFFF_FFFFL), crcOk, null, null, null,
                    "does not parse (" + e.getMessage() + ")" + (stale == null ? "" : "; " + stale));
        }
    }

    private static String compatible(final FdtReader fdt) {
        try {
            return fdt.string(fdt.root(), "compatible");
        } catch (HandoverFormatException e) {
            return null;
        }
    }

    static Node node(final FdtReader fdt, final int node) {
        final Map<String, Object> props = new LinkedHashMap<>();
        for (int p : fdt.properties(node)) {
            props.put(fdt.propertyName(p), value(fdt.value(p)));
        }
        final List<Node> children = new ArrayList<>();
        for (int c : fdt.children(node)) {
            children.add(node(fdt, c));
        }
        return new Node(fdt.nodeName(node).isEmpty() ? "/" : fdt.nodeName(node), props, children);
    }

    private static Object value(final MemorySegment v) {
        return switch (DtsWriter.kindOf(v)) {
            case EMPTY -> Boolean.TRUE;
            case STRINGS -> {
                final List<String> s = DtsWriter.strings(v);
                yield s.size() == 1 ? s.getFirst() : s;
            }
            case CELLS -> {
                final List<String> cells = new ArrayList<>();
                for (long c : DtsWriter.cells(v)) {
                    cells.add(hex(c));
                }
                yield cells;
            }
            case BYTES -> {
                final StringBuilder sb = new StringBuilder();
                for (byte b : v.toArray(ValueLayout.JAVA_BYTE)) {
                    sb.append(String.format("%02x", b & 0xff));
                }
                yield sb.toString();
            }
        };
    }
}
