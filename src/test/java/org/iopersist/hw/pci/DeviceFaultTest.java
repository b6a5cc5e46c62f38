package org.iopersist.hw.pci;

import static org.iopersist.hw.pci.DeviceWorkloadTest.attempts;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.RemappingUnit;
import org.iopersist.hw.vtd.VtdRegisters;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Faults, counted in the BAR by VT-d reason, never touch memory; interrupt-window writes are
 * counted as interrupts and never touch memory either, even where a mapping exists.
 */
class DeviceFaultTest {
    private static final long WINDOW = 0x10_0000_0000L;
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;
    private static final Bdf DEV0 = Bdf.parse("0000:00:02.0");
    private static final Bdf DEV1 = Bdf.parse("0000:00:03.0");
    private static final Bdf DEV2 = Bdf.parse("0000:01:00.0");

    @TempDir
    Path dir;

    private static MachineConfig threeDevices() {
        return MachineConfig.small().withDevices(List.of(new MachineConfig.DeviceConfig(DEV0, 0),
                new MachineConfig.DeviceConfig(DEV1, 0), new MachineConfig.DeviceConfig(DEV2, 0)));
    }

    @Test
    void faultsAreCountedByReasonAndNeverTouchMemory() {
        try (MachineRig rig = MachineRig.inProcess(dir, threeDevices())) {
            final RemappingUnit unit = rig.machineOrNull.units().getFirst();
            final CanaryPages canaries = new CanaryPages(rig.memory, 0xFA17);
            // Window of 5 pages, one record each:
            //   page 0, 1  read/write        -> records complete
            //   page 2     not mapped        -> WRITE fault (the write finds no leaf)
            //   page 3     read-only         -> WRITE fault; its frame holds a canary
            //   page 4     write-only        -> write lands, the read-back takes a READ fault
            // Data frames sit on even frames, canaries on the odd frames between them.
            final HandTables.Domain d0 = rig.tables.domain(1);
            d0.map(WINDOW, MachineRig.frame(0));
            d0.map(WINDOW + PAGE, MachineRig.frame(2));
            canaries.fill(MachineRig.frame(6), 1);
            d0.map(WINDOW + 3 * PAGE, MachineRig.frame(6), true, false);
            d0.map(WINDOW + 4 * PAGE, MachineRig.frame(8), false, true);
            for (int i = 0; i < 5; i++) {
                canaries.fill(MachineRig.frame(2L * i + 1), 1);
            }
            canaries.fill(MachineRig.frame(4), 1); // where page 2 would go, if anything sent it anywhere
            // The interrupt window is mapped too, to a canary frame: interrupt requests must not use it.
            canaries.fill(MachineRig.frame(20), 1);
            d0.map(RemappingUnit.INTERRUPT_BASE, MachineRig.frame(20));
            rig.tables.attach(DEV0, d0);

            final DeviceBar bar = rig.bar(0);
            final WorkloadSettings settings = WorkloadSettings.writeVerify(WINDOW, 5 * PAGE, 4096, 11)
                    .withMsi(RemappingUnit.INTERRUPT_BASE, 0x41, 1);
            bar.start(settings);
            bar.awaitSeq(52);
            bar.stop();

            final DeviceCounters c = bar.counters();
            final long n = c.nextSeq();
            final long[] a = new long[5];
            for (int s = 0; s < 5; s++) {
                a[s] = attempts(n, 5, s);
            }
            assertEquals(a[0] + a[1], c.ops(), c.toString());
            assertEquals(a[2] + a[3], c.faults(FaultReason.WRITE), c.toString());
            assertEquals(a[4], c.faults(FaultReason.READ), c.toString());
            assertEquals(a[2] + a[3] + a[4], c.faults(), c.toString());
            final long[] byReason = c.faultsByReason();
            for (int r = 0; r < byReason.length; r++) {
                if (r != FaultReason.WRITE.code && r != FaultReason.READ.code) {
                    assertEquals(0, byReason[r], "reason " + r + ": " + c);
                }
            }
            assertEquals(0, c.corrupt(), c.toString());
            assertEquals(c.ops(), c.interrupts(), "one interrupt per completed record: " + c);
            // Completed records move 2 x 4096; page 4's write lands before its read faults.
            assertEquals(2 * 4096 * c.ops() + 4096 * a[4], c.bytes(), c.toString());
            // The unit saw the same faults and recorded them with this device's source-id.
            assertEquals(c.faults(), unit.faults());
            final long frcd0 = rig.board.unitRegisters(0).read64(VtdRegisters.frcd(0) + 8);
            assertEquals(DEV0.sourceId(), frcd0 & VtdRegisters.FRCD_HI_SID_MASK);

            final RecordChecker.Report report = new RecordChecker(rig.memory).check(bar.window(), d0::iovaToPhys);
            assertEquals(3, report.found(), report.toString()); // pages 0, 1 and the write-only page 4
            assertEquals(1, report.unmapped(), report.toString());
            assertEquals(1, report.corrupt(), "the read-only page still holds its canary: " + report);
            assertEquals(List.of(), canaries.changes());

            // IOVA beyond the 48-bit address width.
            bar.resetCounters();
            bar.start(settings.withWindow(1L << 48, 4 * PAGE).withMode(WorkloadMode.WRITE));
            bar.awaitSeq(20);
            bar.stop();
            final DeviceCounters beyond = bar.counters();
            assertEquals(beyond.nextSeq(), beyond.faults(FaultReason.ADDRESS_BEYOND_MGAW), beyond.toString());
            assertEquals(beyond.nextSeq(), beyond.faults(), beyond.toString());
            assertEquals(0, beyond.ops() + beyond.interrupts() + beyond.bytes(), beyond.toString());
            assertEquals(List.of(), canaries.changes());
        }
    }

    @Test
    void devicesWithoutContextOrRootEntryFaultWithTheirReason() {
        try (MachineRig rig = MachineRig.inProcess(dir, threeDevices())) {
            final CanaryPages canaries = new CanaryPages(rig.memory, 0xFA18);
            canaries.fill(MachineRig.frame(0), 16);
            final HandTables.Domain d0 = rig.tables.domain(1);
            for (int i = 0; i < 4; i++) {
                d0.map(WINDOW + i * PAGE, MachineRig.frame(16 + i));
            }
            // Device 0 has bus 0's context table made, device 1 (same bus) no context entry,
            // device 2 (bus 1) no root entry.
            rig.tables.attach(DEV0, d0);
            final DeviceBar bar1 = rig.bar(1);
            final DeviceBar bar2 = rig.bar(2);
            final WorkloadSettings settings = WorkloadSettings.writeVerify(WINDOW, 4 * PAGE, 512, 5);
            bar1.start(settings);
            bar2.start(settings);
            bar1.awaitSeq(40);
            bar2.awaitSeq(40);
            bar1.stop();
            bar2.stop();
            final DeviceCounters c1 = bar1.counters();
            final DeviceCounters c2 = bar2.counters();
            assertEquals(c1.nextSeq(), c1.faults(FaultReason.CONTEXT_NOT_PRESENT), c1.toString());
            assertEquals(c1.nextSeq(), c1.faults(), c1.toString());
            assertEquals(c2.nextSeq(), c2.faults(FaultReason.ROOT_NOT_PRESENT), c2.toString());
            assertEquals(c2.nextSeq(), c2.faults(), c2.toString());
            for (DeviceCounters c : List.of(c1, c2)) {
                assertEquals(0, c.ops() + c.bytes() + c.corrupt() + c.interrupts(), c.toString());
            }
            assertTrue(RecordChecker.Expectation.fromBar(bar1.window()).nextSeq() >= 40);
            // Nothing reached device 0's frames, which another device's faults could not name anyway.
            for (int i = 0; i < 4; i++) {
                assertTrue(isZero(rig.memory, MachineRig.frame(16 + i)), "frame " + i + " untouched");
            }
            assertEquals(List.of(), canaries.changes());
        }
    }

    private static boolean isZero(final PhysicalMemory memory, final long frame) {
        for (long p = frame; p < frame + PAGE; p += 8) {
            if (memory.load64(p) != 0) {
                return false;
            }
        }
        return true;
    }
}
