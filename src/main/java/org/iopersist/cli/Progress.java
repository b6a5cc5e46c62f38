package org.iopersist.cli;

import java.io.PrintStream;
import java.util.Locale;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Supplier;

/**
 * Progress of a long run: one line on stderr every interval, {@code <who>: <elapsed> s: <status>},
 * so stdout stays what a script parses. A daemon thread asks {@code status} for the line each
 * time; the run names what it is doing with {@link #phase}. Lines only start after the first
 * interval, so a short run prints none.
 *
 * <pre>{@code
 * try (Progress p = Progress.start(System.err, "bench", Duration.ofSeconds(1), () -> "")) {
 *     for (int i = 0; i < n; i++) {
 *         p.phase("live update " + (i + 1) + "/" + n);
 *         ...
 *     }
 * }
 * }</pre>
 */
public final class Progress implements AutoCloseable {
    private final PrintStream out;
    private final String who;
    private final long intervalNanos;
    private final Supplier<String> status;
    private final long startNanos = System.nanoTime();
    private final Thread thread;
    private volatile String phase = "";
    private volatile boolean closed;

    private Progress(final PrintStream out, final String who, final long intervalNanos, final Supplier<String> status,
                     final boolean enabled) {
        this.out = out;
        this.who = who;
        this.intervalNanos = intervalNanos;
        this.status = status;
        this.thread = enabled ? Thread.ofPlatform().daemon().name("progress-" + who).start(this::run) : null;
    }

    /**
     * Prints a line every {@code interval} until {@link #close}: {@code phase}, then what
     * {@code status} says (may be empty; it must not throw, and is called from another thread).
     */
    public static Progress start(final PrintStream out, final String who, final java.time.Duration interval,
                                 final Supplier<String> status) {
        return new Progress(out, who, interval.toNanos(), status, true);
    }

    /** A progress that prints nothing: for a run too short to need one. */
    public static Progress silent() {
        return new Progress(System.err, "", 1, () -> "", false);
    }

    /** What the run does now, the start of the next line. */
    public void phase(final String what) {
        phase = what;
    }

    /** The line that would be printed now. */
    String line() {
        final String s = status.get();
        final String p = phase;
        return String.format(Locale.ROOT, "%s: %.1f s: %s%s", who, (System.nanoTime() - startNanos) / 1e9, p,
                s.isEmpty() ? "" : p.isEmpty() ? s : "; " + s);
    }

    private void run() {
        long next = startNanos + intervalNanos;
        while (!closed) {
            final long wait = next - System.nanoTime();
            if (wait > 0) {
                LockSupport.parkNanos(wait);
                continue;
            }
            try {
                final String l = line();
                if (!closed) {
                    out.println(l);
                    out.flush();
                }
            } catch (RuntimeException e) {
                // A status that cannot be read now (a device going away) is not worth a line.
            }
            next += intervalNanos;
        }
    }

    @Override
    public void close() {
        closed = true;
        if (thread != null) {
            LockSupport.unpark(thread);
            try {
                thread.join(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
