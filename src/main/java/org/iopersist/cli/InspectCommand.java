package org.iopersist.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.Bdf;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code iopersist inspect DIR VIEW}: read-only views of a machine, live or stopped, the way
 * {@code crash}, {@code fdtdump} and debugfs show a real one. Every view maps {@code memory} and
 * {@code mmio} read-only ({@link Board#openReadOnly}), so nothing it does can change the machine;
 * {@code sysfs} reads the running kernel's mirror.
 */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = {"Read-only views of the machine in DIR, live or stopped: iopersist inspect DIR VIEW [--json]",
            "(or inspect VIEW DIR). Nothing here writes to the machine."},
        subcommands = {InspectVtd.class, InspectHandover.class, InspectTracker.class, InspectDevices.class, InspectSysfs.class})
final class InspectCommand implements java.util.concurrent.Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Parameters(index = "0", arity = "0..1", paramLabel = "DIR", description = "machine directory")
    private Path dir;

    /** No view named: one line and exit 2, as any other bad command line. */
    @Override
    public Integer call() {
        spec.commandLine().getErr().println("iopersist: inspect needs a view: vtd, handover, tracker, devices or sysfs"
                + " (iopersist inspect DIR VIEW; try --help)");
        return 2;
    }

    /**
     * What every view takes: the machine directory, after {@code inspect} ({@code inspect DIR VIEW},
     * as the issue spells it) or after the view ({@code inspect VIEW DIR}), and {@code --json}.
     */
    static final class Target {
        @Parameters(index = "0", arity = "0..1", paramLabel = "DIR",
                description = "machine directory (of `iopersist machine DIR`, the demo's --dir, a test rig)")
        private Path own;

        @Option(names = "--json", description = "print JSON instead of text")
        boolean json;

        /** The machine directory, wherever it was given; a one-line error if nowhere or twice. */
        Path dir(final InspectCommand parent) {
            if (own != null && parent.dir != null) {
                throw new IllegalArgumentException("DIR given twice (" + parent.dir + ", " + own + ")");
            }
            if (own == null && parent.dir == null) {
                throw new IllegalArgumentException("missing DIR: iopersist inspect DIR VIEW");
            }
            return own != null ? own : parent.dir;
        }

        /** The machine, mapped read-only; a one-line error if there is none. */
        Board open(final InspectCommand parent) {
            return Board.openReadOnly(requireMachine(parent));
        }

        Path requireMachine(final InspectCommand parent) {
            final Path dir = dir(parent);
            if (!Files.isDirectory(dir)) {
                throw new IllegalArgumentException(dir + ": no such directory");
            }
            if (!Files.isRegularFile(dir.resolve(MachineConfig.FILE))) {
                throw new IllegalArgumentException(dir + " is not a machine directory (no " + MachineConfig.FILE + ")");
            }
            return dir;
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /** Prints {@code view} (records, lists, maps) as JSON. */
    static void printJson(final CommandSpec spec, final Object view) {
        final PrintWriter out = spec.commandLine().getOut();
        try {
            out.println(JSON.writeValueAsString(view));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write JSON: " + e.getOriginalMessage(), e);
        }
        out.flush();
    }

    static String hex(final long v) {
        return "0x" + Long.toHexString(v);
    }

    /** An address or size as a user types it: {@code 0x1234000}, {@code 1234}, or with a K/M/G/T suffix. */
    static long parseAddress(final String option, final String text) {
        final String t = text.trim().toLowerCase(java.util.Locale.ROOT).replace("_", "");
        try {
            long mult = 1;
            String digits = t;
            if (!t.startsWith("0x") && !t.isEmpty()) {
                final int unit = "kmgt".indexOf(t.charAt(t.length() - 1));
                if (unit >= 0) {
                    mult = 1L << (10 * (unit + 1));
                    digits = t.substring(0, t.length() - 1);
                }
            }
            final long v = digits.startsWith("0x") ? Long.parseUnsignedLong(digits.substring(2), 16) : Long.parseLong(digits);
            if (v < 0 || (mult > 1 && v > Long.MAX_VALUE / mult)) {
                throw new NumberFormatException();
            }
            return v * mult;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad " + option + " '" + text + "': expected an address like 0x1234000");
        }
    }

    /** A BDF as the user typed it, or a one-line error. */
    static Bdf parseBdf(final String text) {
        try {
            return Bdf.parse(text);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("bad --device '" + text + "': expected a PCI address like 0000:00:02.0 or 00:02.0");
        }
    }

    /** Bytes for people: 64 MiB, 4 KiB, 1.5 GiB. */
    static String bytes(final long n) {
        final String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = n;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return v == Math.rint(v) ? String.format("%d %s", (long) v, units[u]) : String.format("%.1f %s", v, units[u]);
    }
}
