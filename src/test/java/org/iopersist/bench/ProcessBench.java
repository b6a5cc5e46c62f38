package org.iopersist.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.HdrHistogram.Histogram;
import org.iopersist.cli.Main;
import org.iopersist.testing.Trees;

/**
 * The demo as a user runs it: machine, kernel 1, kernel 2 and the VMM as separate processes, each
 * kernel a cold JVM. Parses the demo's own report; several runs give a median.
 */
final class ProcessBench {
    private static final Pattern KEXEC = Pattern.compile(
            "kexec 1 +finalize \\+ kexec ([0-9.]+) ms; kernel 2 \\(process \\d+\\) booted from the handover \\(live_update\\) in ([0-9.]+) ms, ([0-9]+) ms from the kexec to serving syscalls");
    private static final Pattern COLD = Pattern.compile("kernel 1 booted \\(cold\\) in ([0-9.]+) ms.*");

    /** Medians in ms over {@code runs} demos, and whether every run ended "demo: ok". */
    record Result(int runs, double coldBootMs, double finalizeKexecMs, double liveBootMs, double kexecToServingMs, boolean allOk) {
    }

    private ProcessBench() {
    }

    static Result run(final Path work, final int runs) throws Exception {
        final Histogram cold = new Histogram(3);
        final Histogram fk = new Histogram(3);
        final Histogram boot = new Histogram(3);
        final Histogram serving = new Histogram(3);
        boolean ok = true;
        for (int i = 0; i < runs; i++) {
            Bench.phase(String.format("the demo in separate processes: run %d of %d", i + 1, runs));
            final String out = demo(work.resolve("demo" + i));
            ok &= out.contains("demo: ok");
            for (String line : out.split("\n")) {
                final Matcher k = KEXEC.matcher(line);
                if (k.matches()) {
                    fk.recordValue(micros(k.group(1)));
                    boot.recordValue(micros(k.group(2)));
                    serving.recordValue(micros(k.group(3)));
                }
                final Matcher c = COLD.matcher(line);
                if (c.matches()) {
                    cold.recordValue(micros(c.group(1)));
                }
            }
        }
        return new Result(runs, cold.getValueAtPercentile(50) / 1e3, fk.getValueAtPercentile(50) / 1e3,
                boot.getValueAtPercentile(50) / 1e3, serving.getValueAtPercentile(50) / 1e3, ok && boot.getTotalCount() == runs);
    }

    private static long micros(final String ms) {
        return Math.round(Double.parseDouble(ms) * 1000);
    }

    private static String demo(final Path dir) throws IOException, InterruptedException {
        final List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), Main.class.getName(),
                "demo", "--seconds", "0.3", "--dir", dir.toString()));
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
        Trees.delete(dir);
        return out;
    }
}
