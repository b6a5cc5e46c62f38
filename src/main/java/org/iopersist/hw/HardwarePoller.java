package org.iopersist.hw;

import java.util.List;
import java.util.concurrent.locks.LockSupport;
import org.iopersist.hw.vtd.RemappingUnit;

/**
 * The hardware's side of the MMIO contract: one thread that polls every unit's command registers.
 * It spins while commands keep coming (they come in bursts: a map, its invalidation, its wait), and
 * parks briefly once idle, so an idle machine does not hold a core.
 */
final class HardwarePoller implements Runnable {
    private static final long SPIN_NANOS = 200_000;
    private static final long PARK_NANOS = 20_000;

    private final List<RemappingUnit> units;
    private volatile boolean running = true;
    private Thread thread;

    HardwarePoller(final List<RemappingUnit> units) {
        this.units = List.copyOf(units);
    }

    void start() {
        thread = Thread.ofPlatform().daemon().name("vtd-poller").start(this);
    }

    void stop() {
        running = false;
        if (thread != null) {
            LockSupport.unpark(thread);
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
            boolean worked = false;
            for (RemappingUnit unit : units) {
                worked |= unit.service();
            }
            if (worked) {
                lastWork = System.nanoTime();
            } else if (System.nanoTime() - lastWork < SPIN_NANOS) {
                Thread.onSpinWait();
            } else {
                LockSupport.parkNanos(PARK_NANOS);
            }
        }
    }
}
