package org.iopersist.hw.pci;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The machine's completion trace: every completed record lands in the bin of its millisecond, seen by any reader. */
class CompletionTraceTest {
    private static final long WINDOW = 0x2000_0000L;
    private static final Bdf DEV0 = Bdf.parse("0000:00:02.0");

    @TempDir
    Path dir;

    @Test
    void aRecorderCountsIntoTheBinOfItsMillisecondAndAnotherMappingSeesIt() {
        try (CompletionTrace trace = CompletionTrace.create(dir, 2)) {
            final long origin = trace.originNanos();
            final CompletionTrace.Recorder r1 = trace.recorder(1);
            for (int i = 0; i < 3; i++) {
                r1.completed(origin + 5_500_000); // ms 5
            }
            r1.completed(origin + 5_999_999);
            r1.completed(origin + 6_000_000);     // ms 6
            r1.completed(origin - 1);             // before the origin: not counted
            r1.completed(origin + CompletionTrace.BINS * CompletionTrace.BIN_NANOS); // past the last bin: not counted
            trace.recorder(0).completed(origin);
            try (CompletionTrace reader = CompletionTrace.open(dir)) {
                assertEquals(origin, reader.originNanos());
                assertEquals(2, reader.devices());
                assertEquals(4, reader.count(1, 5));
                assertEquals(1, reader.count(1, 6));
                assertEquals(0, reader.count(1, 0));
                assertEquals(1, reader.count(0, 0));
                assertEquals(0, reader.count(0, 5), "devices have their own bins");
                final int[] bins = new int[8];
                reader.counts(1, 0, bins);
                assertEquals(5, java.util.Arrays.stream(bins).sum());
                assertEquals(5, reader.binOf(origin + 5_999_999));
                assertEquals(-1, reader.binOf(origin - 1));
            }
        }
    }

    @Test
    void aFileThatIsNotATraceIsRefused() throws Exception {
        Files.write(dir.resolve(CompletionTrace.FILE), new byte[8192]);
        final IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CompletionTrace.open(dir));
        assertTrue(e.getMessage().contains("is not a version 1 completion trace"), e.getMessage());
    }

    @Test
    void everyRecordADeviceCompletesIsInTheMachinesTraceInTheMillisecondsItRan() throws Exception {
        try (MachineRig rig = MachineRig.inProcess(dir, MachineConfig.small())) {
            final HandTables.Domain d = rig.tables.domain(1);
            for (int i = 0; i < 4; i++) {
                d.map(WINDOW + i * PhysicalMemory.FRAME_SIZE, MachineRig.frame(i));
            }
            rig.tables.attach(DEV0, d);
            final DeviceBar bar = rig.bar(0);
            try (CompletionTrace reader = CompletionTrace.open(dir)) {
                final long before = reader.binOf(System.nanoTime());
                bar.start(WorkloadSettings.writeVerify(WINDOW, 4 * PhysicalMemory.FRAME_SIZE, 256, 1).withPace(50_000));
                Thread.sleep(200);
                bar.stop();
                final long after = reader.binOf(System.nanoTime());
                final long ops = bar.counters().ops();
                assertTrue(ops > 100, "the workload ran: " + ops);
                final int[] bins = new int[(int) (after - before + 1)];
                reader.counts(0, before, bins);
                assertEquals(ops, java.util.Arrays.stream(bins).asLongStream().sum(), "every record, in the ms it ran");
                // Paced at 50 µs, no millisecond holds more than ~20 records: the counts are spread over the run.
                assertTrue(java.util.Arrays.stream(bins).max().orElse(0) <= 40, java.util.Arrays.toString(bins));
                assertEquals(0, reader.count(1, before + bins.length / 2), "device 1 never ran");
            }
        }
    }
}
