package org.iopersist.kernel;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * The kernel's message ring, what {@code dmesg} shows: one line per message with the seconds since
 * boot, oldest dropped first when the ring is full. An optional console sink sees every line as it
 * is logged.
 */
public final class KernelLog {
    public static final int CAPACITY = 8192;
    private final long bootNanos = System.nanoTime();
    private final ArrayDeque<String> ring = new ArrayDeque<>();
    private final Consumer<String> console;
    private long dropped;

    public KernelLog(final Consumer<String> consoleOrNull) {
        this.console = consoleOrNull;
    }

    public KernelLog() {
        this(null);
    }

    public void info(final String message) {
        final long us = (System.nanoTime() - bootNanos) / 1000;
        final String line = String.format("[%5d.%06d] %s", us / 1_000_000, us % 1_000_000, message);
        synchronized (ring) {
            if (ring.size() == CAPACITY) {
                ring.removeFirst();
                dropped++;
            }
            ring.addLast(line);
        }
        if (console != null) {
            console.accept(line);
        }
    }

    public void info(final String format, final Object... args) {
        info(String.format(format, args));
    }

    /** Every line still in the ring, oldest first. */
    public List<String> dmesg() {
        synchronized (ring) {
            return new ArrayList<>(ring);
        }
    }

    /** True if some line contains {@code text}. */
    public boolean contains(final String text) {
        synchronized (ring) {
            for (String line : ring) {
                if (line.contains(text)) {
                    return true;
                }
            }
            return false;
        }
    }

    public long dropped() {
        synchronized (ring) {
            return dropped;
        }
    }
}
