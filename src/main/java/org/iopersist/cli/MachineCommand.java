package org.iopersist.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.iopersist.hw.MachineMain;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

/** {@code iopersist machine DIR}: run the machine (memory, VT-d units, devices) as this process. */
@Command(name = "machine", mixinStandardHelpOptions = true,
        description = "Run the machine in DIR (created as a small default machine if DIR has none) until stdin closes or SIGTERM.")
final class MachineCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "DIR", description = "machine directory")
    private Path dir;

    @Override
    public Integer call() throws Exception {
        MachineMain.main(new String[] {dir.toString()});
        return 0;
    }
}
