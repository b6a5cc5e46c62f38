package org.iopersist.testing;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Starts a real second JVM with the test classpath, running {@code mainClass}. Its stdout and stderr
 * go to a log file, so a failing child leaves evidence. Used by every test that must cross a
 * process boundary (shared memory, devices in another process, the syscall socket).
 */
public final class ChildJvm implements AutoCloseable {
    private final Process process;
    private final Path log;

    private ChildJvm(final Process process, final Path log) {
        this.process = process;
        this.log = log;
    }

    public static ChildJvm start(final Path log, final Class<?> mainClass, final String... args) throws IOException {
        final String java = ProcessHandle.current().info().command().orElse(
                Path.of(System.getProperty("java.home"), "bin", "java").toString());
        final List<String> cmd = new ArrayList<>();
        cmd.add(java);
        cmd.add("-ea");
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.add("-Xmx512m");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(mainClass.getName());
        cmd.addAll(List.of(args));
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        return new ChildJvm(p, log);
    }

    /**
     * As {@link #start}, but as another user through {@code setpriv}: a real second uid. Only the
     * project's own class directories go on the class path (the user cannot read root's Maven
     * repository), so the main class may use nothing else.
     */
    public static ChildJvm startAs(final String user, final Path log, final Class<?> mainClass, final String... args)
            throws IOException {
        final String javaBin = ProcessHandle.current().info().command().orElse(
                Path.of(System.getProperty("java.home"), "bin", "java").toString());
        final List<String> cp = new ArrayList<>();
        for (String e : System.getProperty("java.class.path").split(java.io.File.pathSeparator)) {
            if (java.nio.file.Files.isDirectory(Path.of(e))) {
                cp.add(e);
            }
        }
        final List<String> cmd = new ArrayList<>(List.of("setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups",
                javaBin, "--enable-native-access=ALL-UNNAMED", "-Xmx256m", "-cp", String.join(java.io.File.pathSeparator, cp),
                mainClass.getName()));
        cmd.addAll(List.of(args));
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        return new ChildJvm(p, log);
    }

    public Process process() {
        return process;
    }

    /** Waits for exit and returns the exit code; fails with the child's log on timeout. */
    public int waitFor(final long seconds) throws Exception {
        if (!process.waitFor(seconds, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            throw new AssertionError("child JVM did not exit in " + seconds + " s; log:\n" + output());
        }
        return process.exitValue();
    }

    /** Waits up to a minute for {@code line} in the child's output; fails with its log if it exits or times out first. */
    public void awaitLine(final String line) throws Exception {
        final long deadline = System.nanoTime() + 60_000_000_000L;
        while (!output().contains(line)) {
            if (!process.isAlive() || System.nanoTime() > deadline) {
                throw new AssertionError("no '" + line + "'; log:\n" + output());
            }
            Thread.sleep(20);
        }
    }

    public String output() throws IOException {
        return java.nio.file.Files.readString(log);
    }

    @Override
    public void close() {
        if (process.isAlive()) {
            process.destroyForcibly();
        }
    }
}
