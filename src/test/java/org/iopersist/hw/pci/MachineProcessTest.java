package org.iopersist.hw.pci;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.MachineMain;
import org.iopersist.testing.ChildJvm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link MachineMain} as a process: it creates a small machine, announces itself, shuts down cleanly
 * on SIGTERM (its devices stop: STATUS.ALIVE clears), and powers the same directory on again with
 * memory intact and the BARs reset.
 */
class MachineProcessTest {
    @TempDir
    Path dir;

    @Test
    void createsRunsStopsOnSigtermAndPowersOnAgainWithMemoryIntact() throws Exception {
        final Path machineDir = dir.resolve("m");
        final long marker = 0x3000_0000L;
        try (ChildJvm first = ChildJvm.start(dir.resolve("first.log"), MachineMain.class, machineDir.toString())) {
            CrossProcessRemapTest.awaitReady(first, machineDir);
            assertTrue(Files.isRegularFile(machineDir.resolve(MachineConfig.FILE)));
            try (Board board = Board.open(machineDir)) {
                assertEquals(MachineConfig.small(), board.config());
                final DeviceBar bar = new DeviceBar(board.deviceBar(1));
                assertTrue(bar.alive());
                assertEquals(DeviceRegisters.ID_VALUE, bar.id());
                board.memory().store64(marker, 0x1234_5678_9ABC_DEF0L);
                board.deviceBar(1).write64(DeviceRegisters.WIN_BASE, 0x5000); // a setting, to see it reset
                // SIGTERM alone: Process.destroy() would also close the child's stdin, which ends
                // the machine by itself.
                assertTrue(first.process().toHandle().destroy());
                assertEquals(143, first.waitFor(20), first.output()); // 128 + SIGTERM, after the hooks
                assertFalse(bar.alive(), "the shutdown hook stopped the device threads");
            }
        }
        try (ChildJvm second = ChildJvm.start(dir.resolve("second.log"), MachineMain.class, machineDir.toString())) {
            CrossProcessRemapTest.awaitReady(second, machineDir);
            try (Board board = Board.open(machineDir)) {
                assertEquals(0x1234_5678_9ABC_DEF0L, board.memory().load64(marker), "memory survives a power cycle");
                assertEquals(0, board.deviceBar(1).read64(DeviceRegisters.WIN_BASE), "the BAR is reset at power-on");
                assertTrue(new DeviceBar(board.deviceBar(1)).alive());
            }
            second.process().getOutputStream().close();
            if (second.waitFor(20) != 0) {
                fail("machine exited non-zero at end of stdin:\n" + second.output());
            }
        }
    }

    /** A description written by hand (here by MachineConfig itself) before the first start sizes the new machine. */
    @Test
    void aHandWrittenDescriptionBuildsThatMachine() throws Exception {
        final Path machineDir = dir.resolve("m");
        Files.createDirectories(machineDir);
        final MachineConfig wanted = MachineConfig.small().withMemorySize(512L << 20)
                .withDevices(java.util.List.of(new MachineConfig.DeviceConfig(org.iopersist.hw.pci.Bdf.parse("0000:00:05.0"), 0)));
        wanted.write(machineDir);
        assertFalse(Files.exists(machineDir.resolve(Board.MEMORY_FILE)));
        try (ChildJvm m = ChildJvm.start(dir.resolve("m.log"), MachineMain.class, machineDir.toString())) {
            CrossProcessRemapTest.awaitReady(m, machineDir);
            try (Board board = Board.open(machineDir)) {
                assertEquals(wanted, board.config());
                assertEquals(512L << 20, board.memory().size());
                assertTrue(new DeviceBar(board.deviceBar(0)).alive());
            }
            m.process().getOutputStream().close();
            assertEquals(0, m.waitFor(20), m.output());
        }
    }

    /** Two machines on one directory would drive the same registers and memory: the second refuses. */
    @Test
    void aSecondMachineOnTheSameDirectoryRefuses() throws Exception {
        final Path machineDir = dir.resolve("m");
        try (ChildJvm first = ChildJvm.start(dir.resolve("first.log"), MachineMain.class, machineDir.toString())) {
            CrossProcessRemapTest.awaitReady(first, machineDir);
            try (ChildJvm second = ChildJvm.start(dir.resolve("second.log"), MachineMain.class, machineDir.toString())) {
                assertEquals(1, second.waitFor(30), second.output());
                assertTrue(second.output().contains("a machine already runs in " + machineDir), second.output());
            }
            try (Board board = Board.open(machineDir)) {
                assertTrue(new DeviceBar(board.deviceBar(0)).alive(), "the first machine runs on");
            }
            first.process().getOutputStream().close();
            assertEquals(0, first.waitFor(20), first.output());
        }
    }
}
