package org.iopersist.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code iopersist} command: one subcommand per role or tool. */
@Command(name = "iopersist", mixinStandardHelpOptions = true, version = "iopersist 0.1",
        description = "A working model of IOMMU(fd) persistence for hypervisor live update.",
        subcommands = {Demo.class, SelfCheck.class, MachineCommand.class, KernelCommand.class, InspectCommand.class})
public final class Main implements Runnable {

    @Override
    public void run() {
        CommandLine.usage(this, System.out);
    }

    public static void main(final String[] args) {
        System.exit(commandLine().execute(args));
    }

    /** The command line as {@link #main} runs it: a failure is one line on stderr and a nonzero exit. */
    static CommandLine commandLine() {
        final CommandLine cli = new CommandLine(new Main());
        // One line, no stack trace, for bad input or a failed run.
        cli.setExecutionExceptionHandler((ex, cmd, parseResult) -> {
            cmd.getErr().println("iopersist: " + describe(ex));
            return 1;
        });
        cli.setParameterExceptionHandler((ex, a) -> {
            final String what = ex instanceof CommandLine.UnmatchedArgumentException u && !u.getUnmatched().isEmpty()
                    ? (u.getUnmatched().getFirst().startsWith("-") ? "unknown option " : "unknown command, view or argument ")
                            + u.getUnmatched().getFirst()
                    : ex.getMessage();
            ex.getCommandLine().getErr().println("iopersist: " + what + " (try --help)");
            return 2;
        });
        return cli;
    }

    /** One line for a failure: a file system error with its reason, else the message. */
    static String describe(final Throwable ex) {
        if (ex instanceof java.io.IOException io) {
            return org.iopersist.hw.memory.IoReasons.describe(io);
        }
        if (ex instanceof java.io.UncheckedIOException u && u.getMessage() != null && u.getCause() != null
                && u.getMessage().equals(u.getCause().toString())) {
            return org.iopersist.hw.memory.IoReasons.describe(u.getCause());
        }
        return ex.getMessage() != null ? ex.getMessage() : ex.toString();
    }
}
