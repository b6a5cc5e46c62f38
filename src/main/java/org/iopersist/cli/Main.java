package org.iopersist.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code iopersist} command: one subcommand per role or tool. */
@Command(name = "iopersist", mixinStandardHelpOptions = true, version = "iopersist 0.1",
        description = "A working model of IOMMU(fd) persistence for hypervisor live update.",
        subcommands = {Demo.class, SelfCheck.class, MachineCommand.class, KernelCommand.class})
public final class Main implements Runnable {

    @Override
    public void run() {
        CommandLine.usage(this, System.out);
    }

    public static void main(final String[] args) {
        final CommandLine cli = new CommandLine(new Main());
        // One line, no stack trace, for bad input or a failed run.
        cli.setExecutionExceptionHandler((ex, cmd, parseResult) -> {
            cmd.getErr().println("iopersist: " + (ex.getMessage() != null ? ex.getMessage() : ex.toString()));
            return 1;
        });
        cli.setParameterExceptionHandler((ex, a) -> {
            ex.getCommandLine().getErr().println("iopersist: " + ex.getMessage() + " (try --help)");
            return 2;
        });
        System.exit(cli.execute(args));
    }
}
