package org.iopersist.hw.pci;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineMain;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.InvDesc;
import org.iopersist.testing.ChildJvm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two processes: the machine (devices, unit, poller) runs in a child JVM started through
 * {@link MachineMain}; this JVM is the driver. It keeps moving one page of a running device's window
 * from frame to frame: clear the leaf, page-selective IOTLB invalidation, wait; then the old frame
 * gets a canary, and the new leaf goes in. The invalidation wait's promise is that no DMA reaches
 * the old frame afterwards, so no canary may ever change, the device must never read back anything
 * but what it wrote, and its only faults are the ones the unmapped moments explain.
 */
class CrossProcessRemapTest {
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;
    private static final long WINDOW = 0x40_0000_0000L;
    private static final int PAGES = 4;
    private static final int MOVED_PAGE = 1;
    private static final int RECORD = 512;
    private static final int DID = 5;
    private static final long RUN_NANOS = 2_500_000_000L;
    private static final int MAX_MOVES = 4000;

    @TempDir
    Path dir;

    @Test
    void noDmaReachesAFrameAfterTheInvalidationThatUnmappedIt() throws Exception {
        final Path machineDir = dir.resolve("machine");
        try (ChildJvm child = ChildJvm.start(dir.resolve("machine.log"), MachineMain.class, machineDir.toString())) {
            awaitReady(child, machineDir);
            final long movedIova = WINDOW + MOVED_PAGE * PAGE;
            int moves = 0;
            long framesWithRecords = 0;
            final DeviceCounters counters;
            final CanaryPages canaries;
            final RecordChecker.Report report;
            final long slots;
            try (Board board = Board.open(machineDir)) {
                final MachineRig rig = MachineRig.overBoard(board);
                final HandTables.Domain domain = rig.tables.domain(DID);
                for (int i = 0; i < PAGES; i++) {
                    domain.map(WINDOW + i * PAGE, MachineRig.frame(i));
                }
                rig.tables.attach(board.config().devices().getFirst().bdf(), domain);
                canaries = new CanaryPages(board.memory(), 0xC0DE);
                final DeviceBar bar = rig.bar(0);
                final WorkloadSettings settings = WorkloadSettings.writeVerify(WINDOW, PAGES * PAGE, RECORD, 99);
                slots = settings.slots();
                bar.start(settings);
                final int sid = bar.sid();

                // The moved page walks through fresh frames from 16 on, so a retired frame is never reused.
                long current = MachineRig.frame(MOVED_PAGE);
                final long deadline = System.nanoTime() + RUN_NANOS;
                while (moves < MAX_MOVES && System.nanoTime() < deadline) {
                    // Let the device finish a lap through the current mapping, so it writes this frame.
                    bar.awaitSeq(bar.counters().nextSeq() + slots);
                    final long next = MachineRig.frame(16 + moves);
                    assertEquals(current, domain.unmap(movedIova));
                    rig.vtd.submitSync(InvDesc.iotlbPage(DID), InvDesc.iotlbPageQw1(movedIova, 0, true));
                    // The wait completed: from here on the device can no longer reach `current`.
                    if (holdsARecord(board.memory(), current, sid, movedIova, settings.generation())) {
                        framesWithRecords++;
                    }
                    canaries.fill(current, 1);
                    domain.map(movedIova, next);
                    current = next;
                    moves++;
                }
                // One more full lap through the final mapping, then stop and look.
                bar.awaitSeq(bar.counters().nextSeq() + slots + 1);
                bar.stop();
                counters = bar.counters();
                report = new RecordChecker(board.memory()).check(bar.window(), domain::iovaToPhys);
                assertEquals(List.of(), canaries.changes(), "a retired frame changed after its invalidation completed");
            }
            System.out.printf("cross-process remap: %d moves, %s%n", moves, counters);
            child.process().getOutputStream().close(); // end of stdin: the machine process shuts down
            assertEquals(0, child.waitFor(20), child.output());

            assertTrue(moves >= 20, "only " + moves + " moves in the time budget");
            assertEquals(moves, framesWithRecords, "the device wrote every frame before it was retired");
            assertEquals(moves, canaries.frames());
            assertEquals(0, counters.corrupt(), counters.toString());
            assertEquals(counters.faults(FaultReason.WRITE) + counters.faults(FaultReason.READ), counters.faults(),
                    "only the unmapped moments explain faults: " + counters);
            assertTrue(counters.ops() > moves * slots, counters.toString());
            assertEquals(slots, report.checked(), report.toString());
            assertTrue(report.clean(), report.toString());
        }
    }

    static void awaitReady(final ChildJvm child, final Path machineDir) throws Exception {
        final long deadline = System.nanoTime() + 30_000_000_000L;
        final String ready = "machine ready " + machineDir;
        while (true) {
            final String out = child.output();
            if (out.lines().anyMatch(ready::equals)) {
                return;
            }
            if (!child.process().isAlive()) {
                fail("machine process exited with " + child.process().exitValue() + ":\n" + out);
            }
            if (System.nanoTime() > deadline) {
                fail("machine process not ready in 30 s:\n" + out);
            }
            Thread.sleep(20);
        }
    }

    /** True if any record slot of the 4 KiB frame holds an intact record of this device. */
    private static boolean holdsARecord(final PhysicalMemory memory, final long frame, final int sid, final long pageIova,
                                        final long generation) {
        for (long off = 0; off < PAGE; off += RECORD) {
            if (DmaRecord.validSeq(memory.segment(), frame + off, sid, RECORD, pageIova + off, generation)
                    != DmaRecord.INVALID) {
                return true;
            }
        }
        return false;
    }
}
