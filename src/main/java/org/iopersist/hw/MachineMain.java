package org.iopersist.hw;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The machine as its own process: {@code MachineMain <machine-dir>}.
 *
 * <p>Creates the directory as {@link MachineConfig#small()} if it has no {@code machine.properties};
 * builds a new machine from the description if it has one but no memory file yet (a description
 * written by hand); otherwise powers on the machine it describes (memory keeps its contents;
 * registers reset). Starts
 * the register poller and every device, prints one line {@code machine ready <dir>} to stdout, and
 * runs until its stdin reaches end of file or it gets SIGTERM; then it stops the devices and the
 * poller, unmaps the files and exits 0. Other processes (kernel, VMM, tests) open the same directory
 * with {@link Board#open} and drive the hardware through memory and MMIO.
 */
public final class MachineMain {
    /** Held (locked) by the process running the machine. */
    public static final String LOCK_FILE = "machine.lock";

    private MachineMain() {
    }

    public static void main(final String[] args) throws IOException {
        if (args.length != 1) {
            System.err.println("usage: MachineMain <machine-dir>");
            System.exit(2);
        }
        final Path dir = Path.of(args[0]);
        if (args[0].isEmpty()) {
            System.err.println("iopersist: the machine directory is empty; give a path");
            System.exit(2);
        }
        // One machine per directory: a second would drive the same registers and memory. The lock
        // is the process's (fcntl), so it goes with the process however it ends.
        Files.createDirectories(dir);
        final java.nio.channels.FileChannel lockFile = java.nio.channels.FileChannel.open(dir.resolve(LOCK_FILE),
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE);
        if (lockFile.tryLock() == null) {
            System.err.println("iopersist: a machine already runs in " + dir + "; stop it first (close its stdin)");
            System.exit(1);
        }
        final Machine machine;
        if (!Files.isRegularFile(dir.resolve(MachineConfig.FILE))) {
            machine = Machine.create(dir, MachineConfig.small());
        } else if (!Files.exists(dir.resolve(Board.MEMORY_FILE))) {
            machine = Machine.create(dir, MachineConfig.read(dir));
        } else {
            machine = Machine.powerOn(dir);
        }
        final AtomicBoolean closed = new AtomicBoolean();
        final Runnable shutdown = () -> {
            // Runs once, from whichever comes first: the end of stdin or SIGTERM's shutdown hook.
            if (closed.compareAndSet(false, true)) {
                machine.close();
            }
        };
        Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().unstarted(shutdown));
        machine.start();
        System.out.println("machine ready " + dir);
        System.out.flush();
        final InputStream in = System.in;
        final byte[] sink = new byte[256];
        while (in.read(sink) >= 0) {
            // Input carries no commands yet; only its end matters.
        }
        shutdown.run();
    }
}
