package org.iopersist.hw.pci;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The workload as a VMM sees it: programmed through the BAR, counted in the BAR, and its records
 * found by the CPU at the physical places the test's own tables send them.
 */
class DeviceWorkloadTest {
    private static final long WINDOW0 = 0x10_0000_0000L;
    private static final long WINDOW1 = 0x2000_0000L;
    private static final Bdf DEV0 = Bdf.parse("0000:00:02.0");
    private static final Bdf DEV1 = Bdf.parse("0000:00:03.0");

    @TempDir
    Path dir;

    @Test
    void workloadWritesVerifiesAndTheCheckerFindsEveryRecord() {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final CanaryPages canaries = new CanaryPages(rig.memory, 0x5EED);
            // Device 0: 16 pages, mapped backwards onto every other frame of 0..31; the odd frames
            // between them, and a margin on each side, are canaries.
            final HandTables.Domain d0 = rig.tables.domain(1);
            for (int i = 0; i < 16; i++) {
                rig.memory.fill(MachineRig.frame(2L * (15 - i)), PhysicalMemory.FRAME_SIZE, (byte) 0);
                d0.map(WINDOW0 + i * PhysicalMemory.FRAME_SIZE, MachineRig.frame(2L * (15 - i)));
                canaries.fill(MachineRig.frame(2L * i + 1), 1);
            }
            canaries.fill(MachineRig.frame(32), 16);
            // Device 1: its own domain, 4 pages, one record per page.
            final HandTables.Domain d1 = rig.tables.domain(2);
            for (int i = 0; i < 4; i++) {
                d1.map(WINDOW1 + i * PhysicalMemory.FRAME_SIZE, MachineRig.frame(64 + i));
            }
            canaries.fill(MachineRig.frame(68), 4);
            rig.tables.attach(DEV0, d0);
            rig.tables.attach(DEV1, d1);

            final DeviceBar bar0 = rig.bar(0);
            final DeviceBar bar1 = rig.bar(1);
            assertEquals(DeviceRegisters.ID_VALUE, bar0.id());
            assertEquals(DEV0.sourceId(), bar0.sid());
            assertEquals(DEV1.sourceId(), bar1.sid());
            final WorkloadSettings s0 = WorkloadSettings.writeVerify(WINDOW0, 16 * PhysicalMemory.FRAME_SIZE, 256, 7);
            final WorkloadSettings s1 = WorkloadSettings.writeVerify(WINDOW1, 4 * PhysicalMemory.FRAME_SIZE, 4096, 8);
            bar0.start(s0);
            bar1.start(s1);
            assertTrue(bar0.running() && bar1.running());
            // Three laps each, so every slot has been rewritten in place.
            bar0.awaitSeq(3 * s0.slots() + 5);
            bar1.awaitSeq(3 * s1.slots() + 1);
            bar0.stop();
            bar1.stop();
            assertFalse(bar0.running());

            for (DeviceBar bar : List.of(bar0, bar1)) {
                final WorkloadSettings s = bar.settings();
                final DeviceCounters c = bar.counters();
                assertEquals(c.nextSeq(), c.ops(), "every record completed: " + c);
                assertEquals(0, c.corrupt(), c.toString());
                assertEquals(0, c.faults(), c.toString());
                assertEquals(0, c.interrupts(), c.toString());
                assertEquals(2L * s.recordSize() * c.ops(), c.bytes(), "write + read-back bytes: " + c);
                assertTrue(c.maxGapNanos() > 0, c.toString());
                final LatencySummary lat = bar.latency();
                assertEquals(c.ops(), lat.count(), "STOP published the histogram: " + lat);
                assertTrue(0 < lat.p50() && lat.p50() <= lat.p90() && lat.p90() <= lat.p99()
                        && lat.p99() <= lat.p999() && lat.p999() <= lat.max(), lat.toString());
            }
            assertEquals(bar0.counters().ops(), rig.machineOrNull.devices().get(0).latencyHistogram().getTotalCount());

            final RecordChecker checker = new RecordChecker(rig.memory);
            final RecordChecker.Report r0 = checker.check(bar0.window(), d0::iovaToPhys);
            assertEquals(s0.slots(), r0.checked(), r0.toString());
            assertTrue(r0.clean(), r0.toString());
            final RecordChecker.Report r1 = checker.check(bar1.window(), d1::iovaToPhys);
            assertEquals(s1.slots(), r1.checked(), r1.toString());
            assertTrue(r1.clean(), r1.toString());
            // The checker is not vacuous: the other device's mapping puts device 1's slots where
            // device 0's records are (or nowhere), and none of them passes.
            final RecordChecker.Report wrong = checker.check(bar1.window(), iova -> d0.iovaToPhys(iova - WINDOW1 + WINDOW0));
            assertEquals(0, wrong.found(), wrong.toString());
            assertEquals(wrong.checked(), wrong.corrupt(), wrong.toString());

            assertEquals(List.of(), canaries.changes());
            assertEquals(16 + 16 + 4, canaries.frames());
        }
    }

    @Test
    void verifyModeCountsARecordCorruptedBehindTheDevicesBack() {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final HandTables.Domain d0 = rig.tables.domain(1);
            for (int i = 0; i < 4; i++) {
                d0.map(WINDOW0 + i * PhysicalMemory.FRAME_SIZE, MachineRig.frame(10 + i));
            }
            rig.tables.attach(DEV0, d0);
            final DeviceBar bar = rig.bar(0);
            final WorkloadSettings write = WorkloadSettings.writeVerify(WINDOW0, 4 * PhysicalMemory.FRAME_SIZE, 1024, 42)
                    .withMode(WorkloadMode.WRITE);
            final long slots = write.slots();
            bar.start(write);
            bar.awaitSeq(2 * slots);
            bar.stop();
            final RecordChecker checker = new RecordChecker(rig.memory);
            final RecordChecker.Expectation written = RecordChecker.Expectation.fromBar(bar.window());
            assertTrue(checker.check(written, d0::iovaToPhys).clean());

            // The CPU flips one payload byte of slot 5.
            final long victim = d0.iovaToPhys(write.slotIova(5)) + 100;
            final byte[] b = new byte[1];
            rig.memory.read(victim, b, 0, 1);
            b[0] ^= 0x20;
            rig.memory.write(victim, b, 0, 1);
            final RecordChecker.Report damaged = checker.check(written, d0::iovaToPhys);
            assertEquals(slots - 1, damaged.found(), damaged.toString());
            assertEquals(1, damaged.corrupt(), damaged.toString());
            assertEquals(5, damaged.problems().getFirst().slot());

            // The device reads every slot back: exactly the reads of slot 5 are corrupt.
            bar.resetCounters();
            bar.start(write.withMode(WorkloadMode.VERIFY));
            bar.awaitSeq(3 * slots + 2);
            bar.stop();
            final DeviceCounters c = bar.counters();
            final long reads5 = attempts(c.nextSeq(), slots, 5);
            assertEquals(reads5, c.corrupt(), c.toString());
            assertEquals(c.nextSeq() - reads5, c.ops(), c.toString());
            assertEquals(0, c.faults(), c.toString());
            assertEquals(c.nextSeq() * write.recordSize(), c.bytes(), c.toString());

            // A different generation makes every record foreign.
            bar.resetCounters();
            bar.start(write.withMode(WorkloadMode.VERIFY).withGeneration(43));
            bar.awaitSeq(slots);
            bar.stop();
            assertEquals(0, bar.counters().ops());
            assertEquals(bar.counters().nextSeq(), bar.counters().corrupt());
        }
    }

    @Test
    void writeVerifyCountsWhatAnotherWriterChangedBetweenWriteAndReadBack() throws Exception {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final HandTables.Domain d0 = rig.tables.domain(1);
            d0.map(WINDOW0, MachineRig.frame(3));
            rig.tables.attach(DEV0, d0);
            final DeviceBar bar = rig.bar(0);
            bar.start(WorkloadSettings.writeVerify(WINDOW0, PhysicalMemory.FRAME_SIZE, 4096, 1));
            // The CPU keeps zeroing the frame the device writes: sooner or later a zeroing lands
            // between a record's write and its read-back, and the device must notice.
            final long deadline = System.nanoTime() + 10_000_000_000L;
            while (bar.counters().corrupt() == 0 && System.nanoTime() < deadline) {
                for (int i = 0; i < 1000; i++) {
                    rig.memory.fill(MachineRig.frame(3), PhysicalMemory.FRAME_SIZE, (byte) 0);
                }
            }
            bar.stop();
            final DeviceCounters c = bar.counters();
            assertTrue(c.corrupt() > 0, c.toString());
            assertEquals(c.nextSeq(), c.ops() + c.corrupt(), "every record is counted once: " + c);
            assertEquals(0, c.faults(), c.toString());
        }
    }

    @Test
    void aDeviceTakenOverWithoutPowerCycleResumesItsWorkloadFromTheBar() {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final HandTables.Domain d0 = rig.tables.domain(1);
            for (int i = 0; i < 2; i++) {
                d0.map(WINDOW0 + i * PhysicalMemory.FRAME_SIZE, MachineRig.frame(i));
            }
            rig.tables.attach(DEV0, d0);
            final DeviceBar bar = rig.bar(0);
            final WorkloadSettings settings = WorkloadSettings.writeVerify(WINDOW0, 2 * PhysicalMemory.FRAME_SIZE, 256, 4);
            bar.start(settings);
            bar.awaitSeq(100);
            rig.machineOrNull.stop(); // the device freezes mid-workload: RUNNING stays, ALIVE clears
            assertTrue(bar.running());
            assertFalse(bar.alive());
            final DeviceCounters frozen = bar.counters();

            // A new machine process would build the device over the same BAR without a power cycle.
            final PciDevice successor = new PciDevice(0, DEV0, rig.board.memory(), rig.board.deviceBar(0), rig.machineOrNull.units().getFirst(), false);
            successor.start();
            try {
                bar.awaitSeq(frozen.nextSeq() + 3 * settings.slots());
                bar.stop();
            } finally {
                successor.stop();
            }
            final DeviceCounters c = bar.counters();
            assertEquals(c.nextSeq(), c.ops(), "no record lost or repeated across the takeover: " + c);
            assertTrue(c.ops() > frozen.ops(), c.toString());
            assertEquals(0, c.corrupt() + c.faults(), c.toString());
            assertTrue(new RecordChecker(rig.memory).check(bar.window(), d0::iovaToPhys).clean());
        }
    }

    @Test
    void barRefusesBadSettingsThroughStatusAndError() {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final DeviceBar bar = rig.bar(0);
            assertTrue(bar.alive());
            final WorkloadSettings good = WorkloadSettings.writeVerify(WINDOW0, 0x4000, 512, 1);
            assertEquals(DeviceRegisters.ERR_WINDOW, bar.tryStart(good.withWindow(WINDOW0 + 8, 0x4000)));
            assertTrue((bar.status() & DeviceRegisters.STATUS_ERR) != 0);
            assertFalse(bar.running());
            bar.clearError();
            assertEquals(0, bar.status() & DeviceRegisters.STATUS_ERR);
            assertEquals(DeviceRegisters.ERR_WINDOW, bar.tryStart(good.withWindow(WINDOW0, 0)));
            assertEquals(DeviceRegisters.ERR_WINDOW, bar.tryStart(good.withWindow(-0x1000L, 0x2000)));
            assertEquals(DeviceRegisters.ERR_RECORD_SIZE, bar.tryStart(good.withRecordSize(32)));
            assertEquals(DeviceRegisters.ERR_RECORD_SIZE, bar.tryStart(good.withRecordSize(768)));
            assertEquals(DeviceRegisters.ERR_RECORD_SIZE, bar.tryStart(good.withRecordSize(8192)));
            assertEquals(DeviceRegisters.ERR_MODE, bar.tryStart(good.withModeCode(0)));
            assertEquals(DeviceRegisters.ERR_MODE, bar.tryStart(good.withModeCode(9)));
            assertEquals(DeviceRegisters.ERR_MSI, bar.tryStart(good.withMsi(0xFEE0_0002L, 1, 1)));
            assertFalse(bar.running());

            // Unmapped window: START is accepted (the device cannot know), every record faults.
            assertEquals(DeviceRegisters.ERR_NONE, bar.tryStart(good));
            assertTrue(bar.running());
            assertEquals(DeviceRegisters.ERR_BUSY, bar.tryStart(good));
            assertTrue(bar.running(), "a refused START leaves the running workload alone");
            bar.stop();
            assertEquals(DeviceRegisters.ERR_NONE, bar.tryStart(good));
            bar.stop();
        }
    }

    @Test
    void theEngineThreadDoesNotAllocateWhileRunning() throws Exception {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final HandTables.Domain d0 = rig.tables.domain(1);
            for (int i = 0; i < 4; i++) {
                d0.map(WINDOW0 + i * PhysicalMemory.FRAME_SIZE, MachineRig.frame(i));
            }
            rig.tables.attach(DEV0, d0);
            final DeviceBar bar = rig.bar(0);
            // Faults (the unmapped fifth page), interrupts and publications all on the path.
            bar.start(WorkloadSettings.writeVerify(WINDOW0, 5 * PhysicalMemory.FRAME_SIZE, 512, 3)
                    .withMsi(0xFEE0_0000L, 7, 3));
            final Thread engine = rig.machineOrNull.devices().get(0).engineThread();
            assertNotNull(engine);
            final com.sun.management.ThreadMXBean threads =
                    (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            // Warm up (JIT, first publications) until a 200 ms window allocates nothing, at most 5 s: on a
            // busy 2-core machine C2 may take a while, and the interpreter allocates what C2 scalar-replaces.
            Thread.sleep(400);
            final long warmDeadline = System.nanoTime() + 5_000_000_000L;
            long mark = threads.getThreadAllocatedBytes(engine.threadId());
            while (System.nanoTime() < warmDeadline) {
                Thread.sleep(200);
                final long now = threads.getThreadAllocatedBytes(engine.threadId());
                if (now == mark) {
                    break;
                }
                mark = now;
            }
            final long seq0 = bar.counters().nextSeq();
            final long before = threads.getThreadAllocatedBytes(engine.threadId());
            Thread.sleep(500); // spans several 100 ms publications
            final long after = threads.getThreadAllocatedBytes(engine.threadId());
            final long seq1 = bar.counters().nextSeq();
            bar.stop();
            final DeviceCounters c = bar.counters();
            assertTrue(seq1 - seq0 > 1000, "the workload ran: " + (seq1 - seq0) + " records");
            assertTrue(c.faults() > 0 && c.interrupts() > 0 && c.ops() > 0, c.toString());
            assertEquals(0, after - before, "bytes allocated by the engine thread over " + (seq1 - seq0) + " records");
        }
    }

    /** How many sequence numbers below {@code nextSeq} fall on {@code slot}. */
    static long attempts(final long nextSeq, final long slots, final long slot) {
        return nextSeq / slots + (slot < nextSeq % slots ? 1 : 0);
    }

    @Test
    void clearingBusMasterEnableStopsEveryDma() {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final HandTables.Domain d = rig.tables.domain(1);
            d.map(WINDOW1, MachineRig.frame(0));
            rig.tables.attach(DEV0, d);
            final DeviceBar bar = rig.bar(0);
            assertTrue(bar.busMaster(), "firmware leaves bus mastering on");
            final WorkloadSettings s = WorkloadSettings.writeVerify(WINDOW1, PhysicalMemory.FRAME_SIZE, 256, 5);
            bar.start(s);
            bar.awaitSeq(32);
            bar.setBusMaster(false);
            final long opsAtOff = bar.counters().ops();
            rig.memory.fill(MachineRig.frame(0), PhysicalMemory.FRAME_SIZE, (byte) 0x77);
            final long seqAtOff = bar.counters().nextSeq();
            bar.awaitSeq(seqAtOff + 50);
            bar.stop();
            assertTrue(bar.counters().ops() <= opsAtOff + 1, "at most the record in flight completed: " + bar.counters());
            assertTrue(bar.masterAborts() >= 49, "records were attempted but not issued");
            final byte[] page = new byte[(int) PhysicalMemory.FRAME_SIZE];
            rig.memory.read(MachineRig.frame(0), page, 0, page.length);
            int changed = 0;
            for (byte b : page) {
                changed += b == 0x77 ? 0 : 1;
            }
            assertTrue(changed <= 256, "no DMA after BME went off, beyond one record in flight: " + changed);
            assertEquals(0, bar.counters().faults());
        }
    }
}
