package org.iopersist.hw.pci;

import java.nio.file.Path;
import org.iopersist.hw.Board;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.VtdProgrammer;

/**
 * A board with remapping unit 0 programmed by hand: an (empty) root table latched, the invalidation
 * queue on, caches invalidated, translation enabled. Waits go through a running machine's poller,
 * which may live in this JVM or in another process.
 *
 * <p>Physical memory plan: invalidation ring at 64 KiB, wait status word at 128 KiB, table frames
 * from 1 MiB (1024 frames), data frames from {@link #DATA}.
 */
final class MachineRig implements AutoCloseable {
    static final long RING = 0x1_0000L;
    static final long WAIT_STATUS = 0x2_0000L;
    static final long TABLE_POOL = 0x10_0000L;
    static final long TABLE_FRAMES = 1024;
    static final long DATA = 0x1000_0000L;

    final Machine machineOrNull;
    final Board board;
    final PhysicalMemory memory;
    final HandTables tables;
    final VtdProgrammer vtd;

    private MachineRig(final Machine machineOrNull, final Board board) {
        this.machineOrNull = machineOrNull;
        this.board = board;
        this.memory = board.memory();
        this.tables = new HandTables(memory, TABLE_POOL, TABLE_FRAMES);
        this.vtd = new VtdProgrammer(memory, board.unitRegisters(0), null);
        vtd.setRootTable(tables.root());
        vtd.enableQueue(RING, WAIT_STATUS);
        vtd.invalidateAll();
        vtd.enableTranslation();
    }

    /** Creates and starts a machine in this JVM, then programs its unit. */
    static MachineRig inProcess(final Path dir, final MachineConfig config) {
        final Machine machine = Machine.create(dir, config).start();
        try {
            return new MachineRig(machine, machine.board());
        } catch (RuntimeException | AssertionError e) {
            machine.close();
            throw e;
        }
    }

    /** Programs the unit of a machine another process runs, through the board alone. */
    static MachineRig overBoard(final Board board) {
        return new MachineRig(null, board);
    }

    DeviceBar bar(final int device) {
        return new DeviceBar(board.deviceBar(device));
    }

    /** Data frame {@code n} (4 KiB each from {@link #DATA}). */
    static long frame(final long n) {
        return DATA + n * PhysicalMemory.FRAME_SIZE;
    }

    /** Closes the machine if this rig started it (the board with it); a borrowed board stays open. */
    @Override
    public void close() {
        if (machineOrNull != null) {
            machineOrNull.close();
        }
    }
}
