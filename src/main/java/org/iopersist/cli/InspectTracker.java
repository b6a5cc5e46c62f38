package org.iopersist.cli;

import static org.iopersist.cli.InspectCommand.hex;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import org.iopersist.hw.Board;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.PreservedMemoryMap;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code inspect tracker}: the preserved-memory tracker of the last handover, walked and validated
 * as the next kernel walks it ({@link PreservedMemoryMap#deserialize}): blocks by order, merged into
 * ranges, what the tracker itself costs, and the scratch region. A kernel booted from the handover
 * clears a block's bit when it claims the block, so on such a kernel this shows what is still
 * unclaimed; at finish it frees the tracker, and the walk then fails.
 */
@Command(name = "tracker", mixinStandardHelpOptions = true,
        description = "The last handover's preserved-memory tracker: blocks by order, tracker bytes, the scratch region.")
final class InspectTracker implements Callable<Integer> {
    /** Ranges per order the text lists in full. */
    private static final int TEXT_RANGES = 16;

    @Spec
    private CommandSpec spec;

    @Mixin
    private InspectCommand.Target target;

    @ParentCommand
    private InspectCommand parent;

    @Option(names = "--all", description = "list every range (text; JSON always does)")
    private boolean all;

    record Region(String phys, String last, long bytes) {
    }

    record Range(String phys, String last, long blocks) {
    }

    record Order(int order, long blockBytes, long blocks, long bytes, List<Range> ranges) {
    }

    /** A table node of the radix tree: level 5 is the root, 1 points at leaves; firstKey the lowest key under it. */
    record Table(int level, String firstKey, String frame) {
    }

    /** A leaf: 32768 blocks of one order from {@code covers} on. */
    record Leaf(int order, String covers, String frame) {
    }

    record View(String source, Region scratch, Region tree, String root, List<Table> tables, List<Leaf> leaves,
                long trackerBytes, long preservedBlocks, long preservedBytes, List<Order> orders) {
    }

    @Override
    public Integer call() {
        try (Board board = target.open(parent)) {
            final InspectHandover.Image image = InspectHandover.read(board);
            final PhysicalMemory mem = board.memory();
            final long first;
            try {
                first = image.tree().u64(image.tree().root(), Kho.PROP_MEMORY_MAP);
            } catch (HandoverFormatException e) {
                throw new IllegalStateException("the KHO tree names no tracker: " + e.getMessage());
            }
            final List<PreservedMemoryMap.Node> nodes;
            final TreeMap<Integer, List<long[]>> ranges = new TreeMap<>(); // order -> {phys, blocks}
            try {
                nodes = PreservedMemoryMap.readLayout(mem, first);
                PreservedMemoryMap.deserialize(mem, first, new PreservedMemoryMap.Visitor() {
                    @Override
                    public void block(final long phys, final int order) {
                        final List<long[]> list = ranges.computeIfAbsent(order, o -> new ArrayList<>());
                        final long size = PhysicalMemory.FRAME_SIZE << order;
                        final long[] lastRange = list.isEmpty() ? null : list.getLast();
                        if (lastRange != null && lastRange[0] + lastRange[1] * size == phys) {
                            lastRange[1]++;
                        } else {
                            list.add(new long[] {phys, 1});
                        }
                    }

                    @Override
                    public void metadata(final long phys) {
                    }
                });
            } catch (HandoverFormatException e) {
                throw new IllegalStateException(String.format("the tracker at 0x%x does not validate (%s): a kernel booted from "
                        + "this handover frees it at finish", first, e.getMessage()));
            }
            final List<Order> orders = new ArrayList<>();
            long blocks = 0;
            long bytes = 0;
            for (var e : ranges.entrySet()) {
                final long size = PhysicalMemory.FRAME_SIZE << e.getKey();
                long n = 0;
                final List<Range> rs = new ArrayList<>();
                for (long[] r : e.getValue()) {
                    n += r[1];
                    rs.add(new Range(hex(r[0]), hex(r[0] + r[1] * size - 1), r[1]));
                }
                orders.add(new Order(e.getKey(), size, n, n * size, rs));
                blocks += n;
                bytes += n * size;
            }
            final List<Table> tables = new ArrayList<>();
            final List<Leaf> leaves = new ArrayList<>();
            for (PreservedMemoryMap.Node n : nodes) {
                if (n.level() == 0) {
                    leaves.add(new Leaf(n.order(), hex(n.physStart()), hex(n.phys())));
                } else {
                    tables.add(new Table(n.level(), hex(n.firstKey()), hex(n.phys())));
                }
            }
            final var setup = image.setup();
            final View view = new View(image.source().file(),
                    new Region(hex(setup.scratchAddr()), hex(setup.scratchAddr() + setup.scratchSize() - 1), setup.scratchSize()),
                    new Region(hex(setup.fdtAddr()), hex(setup.fdtAddr() + image.tree().totalSize() - 1), image.tree().totalSize()),
                    hex(first), tables, leaves, nodes.size() * PhysicalMemory.FRAME_SIZE, blocks, bytes, orders);
            if (target.json) {
                InspectCommand.printJson(spec, view);
            } else {
                print(spec.commandLine().getOut(), view);
            }
            return 0;
        }
    }

    private void print(final PrintWriter out, final View v) {
        out.printf("tracker of %s: radix tree, root %s; %d table node%s + %d lea%s = %s of tracker%n", v.source(), v.root(),
                v.tables().size(), v.tables().size() == 1 ? "" : "s", v.leaves().size(), v.leaves().size() == 1 ? "f" : "ves",
                InspectCommand.bytes(v.trackerBytes()));
        out.printf("scratch region %s-%s (%s); the KHO tree in it at %s, %d bytes%n", v.scratch().phys(), v.scratch().last(),
                InspectCommand.bytes(v.scratch().bytes()), v.tree().phys(), v.tree().bytes());
        out.printf("preserved: %d block%s, %s%n", v.preservedBlocks(), v.preservedBlocks() == 1 ? "" : "s",
                InspectCommand.bytes(v.preservedBytes()));
        for (Order o : v.orders()) {
            out.printf("  order %2d (%s blocks): %d, %s in %d range%s%n", o.order(), InspectCommand.bytes(o.blockBytes()), o.blocks(),
                    InspectCommand.bytes(o.bytes()), o.ranges().size(), o.ranges().size() == 1 ? "" : "s");
            final int shown = all ? o.ranges().size() : Math.min(TEXT_RANGES, o.ranges().size());
            for (int i = 0; i < shown; i++) {
                final Range r = o.ranges().get(i);
                out.printf("      %18s-%-18s %d%n", r.phys(), r.last(), r.blocks());
            }
            if (shown < o.ranges().size()) {
                out.printf("      ... %d more (--all)%n", o.ranges().size() - shown);
            }
        }
        for (Table t : v.tables()) {
            out.printf("  table level %d from key %-18s in frame %s%n", t.level(), t.firstKey(), t.frame());
        }
        for (Leaf l : v.leaves()) {
            out.printf("  leaf order %2d covering from %-14s in frame %s%n", l.order(), l.covers(), l.frame());
        }
        out.println("(blocks still marked: a kernel booted from this handover clears a block's leaf bit as it claims the block,"
                + " and frees the tracker at finish)");
        out.flush();
    }
}
