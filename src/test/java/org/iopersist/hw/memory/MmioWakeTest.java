package org.iopersist.hw.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.testing.ChildJvm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The MMIO file's wake page: a write to a unit's registers wakes a poller asleep on it, from this
 * process or another; writes that are not the poller's business, or made while it is awake, do not.
 * The sleeps here are a minute long, so a wake that did not happen fails the test instead of
 * ending with the poller's bound.
 */
class MmioWakeTest {
    private static final long MINUTE_NANOS = 60_000_000_000L;

    @TempDir
    Path dir;

    /** A thread that publishes its sleep and waits on the wake page for up to a minute. */
    private static Thread sleeper(final Mmio.Wake wake, final CountDownLatch asleep, final CountDownLatch woke) {
        return Thread.ofPlatform().start(() -> {
            final int seen = wake.seq();
            wake.sleeping(true);
            asleep.countDown();
            while (wake.seq() == seen) {
                wake.await(seen, MINUTE_NANOS);
            }
            wake.sleeping(false);
            woke.countDown();
        });
    }

    @Test
    void aUnitRegisterWriteWakesASleepingPoller() throws Exception {
        try (Mmio mmio = Mmio.create(dir.resolve("mmio"), 2)) {
            final Mmio.Wake wake = mmio.wake();
            final CountDownLatch asleep = new CountDownLatch(1);
            final CountDownLatch woke = new CountDownLatch(1);
            final Thread t = sleeper(wake, asleep, woke);
            assertTrue(asleep.await(10, TimeUnit.SECONDS));
            mmio.window(Mmio.unitWindow(1)).setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_QIE);
            assertTrue(woke.await(30, TimeUnit.SECONDS), "the poller slept through a GCMD write");
            t.join();
        }
    }

    @Test
    void barWritesAndWritesToAnAwakePollerDoNotRing() {
        try (Mmio mmio = Mmio.create(dir.resolve("mmio"), 2)) {
            final Mmio.Wake wake = mmio.wake();
            final int seq = wake.seq();
            mmio.window(Mmio.unitWindow(0)).write64(VtdRegisters.IQT, 0x10);
            assertEquals(seq, wake.seq(), "rang with nobody asleep");
            wake.sleeping(true);
            mmio.window(Mmio.barWindow(1)).write32(0, 1);
            assertEquals(seq, wake.seq(), "a BAR write rang the units' poller");
            mmio.window(Mmio.unitWindow(0)).write64(VtdRegisters.IQT, 0x20);
            assertNotEquals(seq, wake.seq(), "a unit write did not ring a sleeping poller");
        }
    }

    @Test
    void theWakePageIsNoRegisterWindowAndAReadOnlyMappingHasNone() {
        try (Mmio mmio = Mmio.create(dir.resolve("mmio"), 2); Mmio ro = Mmio.openReadOnly(dir.resolve("mmio"))) {
            assertEquals(Mmio.sizeFor(2), dir.resolve("mmio").toFile().length());
            assertFalse(canOpen(mmio, Mmio.barWindow(2)), "the wake page was handed out as a BAR");
            assertTrue(canOpen(mmio, Mmio.barWindow(1)));
            assertNull(ro.wake());
        }
    }

    private static boolean canOpen(final Mmio mmio, final long base) {
        try {
            mmio.window(base);
            return true;
        } catch (IllegalArgumentException e) {
            return false;
        }
    }

    /** The kernel and the machine are separate processes in the demo: the futex is the shared file's. */
    @Test
    void aWriteFromAnotherProcessWakesThePoller() throws Exception {
        final Path file = dir.resolve("mmio");
        try (Mmio mmio = Mmio.create(file, 2)) {
            final CountDownLatch asleep = new CountDownLatch(1);
            final CountDownLatch woke = new CountDownLatch(1);
            final Thread t = sleeper(mmio.wake(), asleep, woke);
            assertTrue(asleep.await(10, TimeUnit.SECONDS));
            try (ChildJvm child = ChildJvm.start(dir.resolve("child.log"), Writer.class, file.toString())) {
                assertEquals(0, child.waitFor(60), child.output());
            }
            assertTrue(woke.await(30, TimeUnit.SECONDS), "the poller slept through another process's GCMD write");
            t.join();
        }
        assertTrue(Files.exists(file));
    }

    /** The other process: maps the MMIO file and gives one command. */
    public static final class Writer {
        public static void main(final String[] args) {
            try (Mmio mmio = Mmio.open(Path.of(args[0]))) {
                mmio.window(Mmio.unitWindow(0)).setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_TE);
            }
        }
    }
}
