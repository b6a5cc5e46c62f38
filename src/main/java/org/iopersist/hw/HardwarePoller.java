package org.iopersist.hw;

import java.util.List;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.vtd.RemappingUnit;

/**
 * The hardware's side of the MMIO contract: one thread that polls every unit's command registers.
 * It spins while commands keep coming (they come in bursts: a map, its invalidation, its wait), and
 * once idle sleeps on the machine's {@link Mmio.Wake} page, so an idle machine does not hold a core
 * and the next command write, from any process, wakes it at once (a timed park cost a boot's
 * register handshakes a scheduler tick each).
 */
final class HardwarePoller implements Runnable {
    private static final long SPIN_NANOS = 200_000;
    /** A bound on a sleep, should a write ever come through a mapping that does not ring. */
    private static final long SLEEP_NANOS = 1_000_000;

    private final List<RemappingUnit> units;
    private final Mmio.Wake wake;
    private volatile boolean running = true;
    private Thread thread;

    HardwarePoller(final List<RemappingUnit> units, final Mmio.Wake wake) {
        this.units = List.copyOf(units);
        this.wake = wake;
    }

    void start() {
        wake.sleeping(false); // a poller that died asleep (a killed machine process) left it set
        thread = Thread.ofPlatform().daemon().name("vtd-poller").start(this);
    }

    void stop() {
        running = false;
        if (thread != null) {
            wake.wakeAll();
            try {
                thread.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public void run() {
        long lastWork = System.nanoTime();
        while (running) {
            if (serviceAll()) {
                lastWork = System.nanoTime();
            } else if (System.nanoTime() - lastWork < SPIN_NANOS) {
                Thread.onSpinWait();
            } else {
                final int seen = wake.seq();
                wake.sleeping(true);
                // One more look after publishing the sleep: a write before it is seen here, a write
                // after it rings.
                if (serviceAll()) {
                    lastWork = System.nanoTime();
                } else if (running) {
                    wake.await(seen, SLEEP_NANOS);
                }
                wake.sleeping(false);
            }
        }
    }

    private boolean serviceAll() {
        boolean worked = false;
        for (RemappingUnit unit : units) {
            worked |= unit.service();
        }
        return worked;
    }
}
