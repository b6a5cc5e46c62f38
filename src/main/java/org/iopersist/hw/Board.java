package org.iopersist.hw;

import org.iopersist.hw.memory.Mmio;

import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * What software sees of a machine: its description, its physical memory and its MMIO registers,
 * each mapped from the machine directory. A kernel, a VMM or a tool in any process opens a Board;
 * only the machine process runs the hardware behind it ({@link Machine}).
 *
 * <pre>
 * machine-dir/
 *   machine.properties   the platform description (units, devices, memory size)
 *   memory               physical memory; phys address == file offset (sparse)
 *   mmio                 register windows: unit n at n*0x1000, device BAR n at 0x10000 + n*0x1000, then the wake page
 *   boot/cmdline         the next kernel's command line
 *   boot/setup_data      the next kernel's KHO record (4 x u64 LE)
 * </pre>
 */
public final class Board implements AutoCloseable {
    public static final String MEMORY_FILE = "memory";
    public static final String MMIO_FILE = "mmio";
    public static final String BOOT_DIR = "boot";

    private final Path dir;
    private final MachineConfig config;
    private final PhysicalMemory memory;
    private final Mmio mmio;

    private Board(final Path dir, final MachineConfig config, final PhysicalMemory memory, final Mmio mmio) {
        this.dir = dir;
        this.config = config;
        this.memory = memory;
        this.mmio = mmio;
    }

    /** Creates a machine directory: description, zeroed sparse memory, zeroed MMIO file, empty boot/. */
    public static Board create(final Path dir, final MachineConfig config) {
        try {
            Files.createDirectories(dir.resolve(BOOT_DIR));
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException("cannot create " + dir + ": " + org.iopersist.hw.memory.IoReasons.describe(e), e);
        }
        config.write(dir);
        final PhysicalMemory memory = PhysicalMemory.create(dir.resolve(MEMORY_FILE), config.memorySize());
        try {
            return new Board(dir, config, memory, Mmio.create(dir.resolve(MMIO_FILE), config.devices().size()));
        } catch (RuntimeException e) {
            memory.close();
            throw e;
        }
    }

    /** Opens an existing machine directory, as a kernel or VMM process does. */
    public static Board open(final Path dir) {
        return open(dir, false);
    }

    /**
     * Opens an existing machine directory for looking only, live or stopped: memory and MMIO are
     * mapped read-only, so no store of the caller's can reach the machine.
     */
    public static Board openReadOnly(final Path dir) {
        return open(dir, true);
    }

    private static Board open(final Path dir, final boolean readOnly) {
        if (!Files.isRegularFile(dir.resolve(MachineConfig.FILE))) {
            throw new IllegalArgumentException(dir + " is not a machine directory (no " + MachineConfig.FILE + ")");
        }
        final MachineConfig config = MachineConfig.read(dir);
        final PhysicalMemory memory = readOnly ? PhysicalMemory.openReadOnly(dir.resolve(MEMORY_FILE))
                : PhysicalMemory.open(dir.resolve(MEMORY_FILE));
        try {
            if (memory.size() != config.memorySize()) {
                throw new IllegalArgumentException(String.format("%s: memory file is 0x%x bytes, description says 0x%x",
                        dir, memory.size(), config.memorySize()));
            }
            return new Board(dir, config, memory, readOnly ? Mmio.openReadOnly(dir.resolve(MMIO_FILE))
                    : Mmio.open(dir.resolve(MMIO_FILE)));
        } catch (RuntimeException e) {
            memory.close();
            throw e;
        }
    }

    public Path directory() {
        return dir;
    }

    public Path bootDirectory() {
        return dir.resolve(BOOT_DIR);
    }

    public MachineConfig config() {
        return config;
    }

    public PhysicalMemory memory() {
        return memory;
    }

    public Mmio mmio() {
        return mmio;
    }

    /** Register window of remapping unit {@code n}. */
    public Mmio.Window unitRegisters(final int n) {
        return mmio.window(Mmio.unitWindow(n));
    }

    /** BAR of device {@code n} (index in the description). */
    public Mmio.Window deviceBar(final int n) {
        return mmio.window(Mmio.barWindow(n));
    }

    @Override
    public void close() {
        mmio.close();
        memory.close();
    }
}
