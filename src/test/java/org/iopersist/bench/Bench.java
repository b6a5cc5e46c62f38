package org.iopersist.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code scripts/bench}: runs every benchmark and rewrites BENCHMARKS.md, docs/bench/results.json
 * and docs/bench/live-update.png. Targets live here and in the report, never in tests.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Run the benchmarks and regenerate BENCHMARKS.md.")
public final class Bench implements Callable<Integer> {
    @Option(names = "--out", description = "the report (default: ${DEFAULT-VALUE})")
    Path out = Path.of("BENCHMARKS.md");

    @Option(names = "--quick", description = "a smoke run: tiny scenarios, few iterations, no JMH")
    boolean quick;

    @Option(names = "--no-jmh", description = "skip the JMH micro-benchmarks")
    boolean noJmh;

    @Option(names = "--scenario", paramLabel = "SIZE:AREAS",
            description = "live-update scenario(s) instead of the defaults, e.g. 1024:1024 or 16G:1 (repeatable)")
    List<String> scenarioSpecs;

    @Option(names = "--updates", description = "measured live updates per scenario (default: 12, quick: 2)")
    Integer updates;

    /** A published or chosen bound, what we measured against it, and whether it holds. */
    record Target(String what, String target, String measured, boolean met, String why) {
    }

    record Report(String date, String machine, List<LiveUpdateBench.Result> liveUpdates, ProcessBench.Result processes,
                  List<IoctlBench.Result> ioctls,
                  List<Micro> micro, List<Target> targets) {
    }

    record Micro(String benchmark, double nsPerOp, double error, String anchor) {
    }

    public static void main(final String[] args) {
        final CommandLine cli = new CommandLine(new Bench());
        // One line for bad input or a failed run, as the iopersist command does.
        cli.setExecutionExceptionHandler((ex, cmd, parseResult) -> {
            cmd.getErr().println("bench: " + (ex.getMessage() != null ? ex.getMessage() : ex.toString()));
            return 1;
        });
        cli.setParameterExceptionHandler((ex, a) -> {
            ex.getCommandLine().getErr().println("bench: " + ex.getMessage() + " (try --help)");
            return 2;
        });
        System.exit(cli.execute(args));
    }

    @Override
    public Integer call() throws Exception {
        final Path work = Files.createTempDirectory("iopersist-bench");
        try {
            final List<LiveUpdateBench.Scenario> scenarios = scenarioSpecs != null ? parse(scenarioSpecs) : quick
                    ? List.of(new LiveUpdateBench.Scenario(64, 1), new LiveUpdateBench.Scenario(64, 64))
                    : List.of(new LiveUpdateBench.Scenario(256, 1), new LiveUpdateBench.Scenario(256, 256),
                            new LiveUpdateBench.Scenario(1024, 1), new LiveUpdateBench.Scenario(1024, 1024),
                            new LiveUpdateBench.Scenario(3072, 1));
            if (!quick) {
                // Not reported: compiles every path of the update once, so the first scenario is not the JIT's.
                System.out.println("live update: warming up the JIT (not reported) ...");
                LiveUpdateBench.run(Files.createDirectories(work.resolve("warm")), new LiveUpdateBench.Scenario(64, 64), 0, 15);
            }
            final List<LiveUpdateBench.Result> lu = LiveUpdateBench.runAll(work, scenarios, quick ? 1 : 3,
                    updates != null ? updates : quick ? 2 : 12);
            System.out.println("separate processes: the demo, " + (quick ? 1 : 5) + " runs ...");
            final ProcessBench.Result processes = ProcessBench.run(Files.createDirectories(work.resolve("processes")), quick ? 1 : 5);
            final Path ioctlDir = Files.createDirectories(work.resolve("ioctl"));
            final List<IoctlBench.Result> ioctls = IoctlBench.run(ioctlDir, quick ? 10 : 2000, quick ? 20 : 4000);
            final List<Micro> micro = quick || noJmh ? List.of() : jmh();
            final Report report = new Report(LocalDate.now().toString(), machine(), lu, processes, ioctls, micro,
                    targets(lu, processes, ioctls, micro));
            BenchReport.write(out, report);
            System.out.println("bench: wrote " + out + (quick ? " (quick run)" : ""));
            return report.targets().stream().allMatch(Target::met) ? 0 : 3;
        } finally {
            deleteTree(work);
        }
    }

    private static List<LiveUpdateBench.Scenario> parse(final List<String> specs) {
        final List<LiveUpdateBench.Scenario> out = new ArrayList<>();
        for (String spec : specs) {
            final String[] p = spec.split(":");
            final long mib;
            final int areas;
            try {
                mib = p[0].matches("\\d+") ? Long.parseLong(p[0]) : org.iopersist.kernel.init.BootParams.memparse(p[0]) >> 20;
                areas = p.length == 2 ? Integer.parseInt(p[1]) : -1;
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--scenario " + spec + ": want SIZE:AREAS, SIZE in MiB or with a suffix (16G, 1T)");
            }
            if (p.length != 2 || mib < 4 || mib > (1L << 20) || areas < 1 || (mib << 20) % areas != 0 || ((mib << 20) / areas) % 4096 != 0) {
                throw new IllegalArgumentException("--scenario " + spec
                        + ": SIZE in 4M..1T (above 3G, guest RAM continues at 4 GiB as on q35) and AREAS dividing it into whole 4 KiB pages");
            }
            out.add(new LiveUpdateBench.Scenario(mib, areas));
        }
        return out;
    }

    private static String machine() {
        return String.format(Locale.ROOT, "%d CPUs, %s %s, %s %s", Runtime.getRuntime().availableProcessors(),
                System.getProperty("java.vm.name"), System.getProperty("java.runtime.version"),
                System.getProperty("os.name"), System.getProperty("os.arch"));
    }

    private List<Micro> jmh() throws Exception {
        final Collection<RunResult> results = new Runner(new OptionsBuilder()
                .include(MicroBench.class.getName() + ".*")
                .forks(1).warmupIterations(3).warmupTime(TimeValue.seconds(1))
                .measurementIterations(5).measurementTime(TimeValue.seconds(1))
                .jvmArgsAppend("--enable-native-access=ALL-UNNAMED", "-Xmx2g")
                .build()).run();
        final Map<String, String> anchors = new LinkedHashMap<>();
        anchors.put("translateIotlbHit", "—");
        anchors.put("translateIotlbMiss", "SMMU: ~68 ns per walk read (row 40)");
        anchors.put("translateIotlbAndPdeMiss", "SMMU: ~290 ns for a 4-read miss (row 40)");
        anchors.put("mapUnmap4k", "VT-d iommupt: map 55 + unmap 69 ns (rows 23, 26)");
        anchors.put("mapUnmap256x4k", "VT-d iommupt: map 391 + unmap 210 ns (rows 24, 27)");
        anchors.put("mapUnmap256x2m", "VT-d iommupt: map 383 + unmap 255 ns (rows 25, 28)");
        anchors.put("mapUnmap4kWithFlush", "SMMUv3 strict: map 0.1 + unmap 0.8–1.3 µs (row 34)");
        final List<Micro> out = new ArrayList<>();
        for (RunResult r : results) {
            final String name = r.getParams().getBenchmark().substring(r.getParams().getBenchmark().lastIndexOf('.') + 1);
            out.add(new Micro(name, r.getPrimaryResult().getScore(), r.getPrimaryResult().getScoreError(),
                    anchors.getOrDefault(name, "—")));
        }
        return out;
    }

    /**
     * The targets, each from a published anchor (../shared/reference/perf-anchors.md): the update
     * must be invisible to DMA; the VMM's blackout must sit well inside QEMU's 300 ms migration
     * downtime budget and Oracle's < 200 ms exec update, leaving most of Huawei's < 1 s for the
     * rest of a real host; restoring must not cost what rebuilding costs.
     */
    static List<Target> targets(final List<LiveUpdateBench.Result> lu, final ProcessBench.Result processes,
                                final List<IoctlBench.Result> ioctls, final List<Micro> micro) {
        final List<Target> t = new ArrayList<>();
        long faults = 0;
        long corrupt = 0;
        boolean clean = true;
        double worstBlackout = 0;
        for (LiveUpdateBench.Result r : lu) {
            faults += r.faults();
            corrupt += r.corrupt();
            clean &= r.recordsInPlace();
            worstBlackout = Math.max(worstBlackout, r.blackout().p50Ms());
        }
        t.add(new Target("DMA across every update", "0 faults, 0 corrupt, every record in place",
                faults + " faults, " + corrupt + " corrupt" + (clean ? ", every record in place" : ", records missing"),
                faults == 0 && corrupt == 0 && clean, "the whole point: devices never notice"));
        t.add(new Target("the demo in separate processes", "every run ends 'demo: ok'", processes.allOk() ? "all "
                + processes.runs() + " ok" : "a run failed", processes.allOk(), "a fresh JVM per kernel knows only the machine directory"));
        t.add(new Target("kexec to serving syscalls, kernel 2 a cold JVM (median)", "≤ 1 s",
                String.format(Locale.ROOT, "%.0f ms", processes.kexecToServingMs()), processes.kexecToServingMs() <= 1000,
                "Huawei's < 1 s for a whole hypervisor live update (row 1), here for a cold-started kernel process"));
        t.add(new Target("VMM blackout p50 (finalize → devices rebound), every scenario", "≤ 100 ms",
                String.format(Locale.ROOT, "%.1f ms worst", worstBlackout), worstBlackout <= 100,
                "half of Oracle's < 200 ms QEMU exec update (row 4); QEMU allows 300 ms for migration (row 12)"));
        for (LiveUpdateBench.Result r : lu) {
            if (r.scenario().areas() == 1 && r.scenario().guestRamMib() >= 1024) {
                t.add(new Target("kernel boot from the handover, " + r.scenario().label(), "independent of guest size: ≤ 2 x the 256 MiB boot",
                        String.format(Locale.ROOT, "%.1f ms vs %.1f ms", r.boot().p50Ms(), lu.get(0).boot().p50Ms()),
                        r.boot().p50Ms() <= 2 * Math.max(lu.get(0).boot().p50Ms(), 1.0),
                        "adoption is O(objects), not O(memory): Hy-FiX's 7.6 s host reboot is independent of VM size (row 8)"));
            }
        }
        for (IoctlBench.Result r : ioctls) {
            if (r.call().startsWith("IOMMU_IOAS_MAP 64 MiB")) {
                // 16-18 ms/GiB for 4 KiB pages, 1.7-2.0 ms/GiB with 2 MiB pages (perf-anchors section 7).
                final double usPerGib = r.p50Us() * 16;
                t.add(new Target("IOAS_MAP of guestmemfs, per GiB", "≤ 2 ms/GiB (Linux, 2 MiB pages: 1.7–2.0)",
                        String.format(Locale.ROOT, "%.2f ms/GiB", usPerGib / 1000), usPerGib <= 2000, "rows 29, 31"));
            }
        }
        for (Micro m : micro) {
            if (m.benchmark().equals("translateIotlbAndPdeMiss")) {
                t.add(new Target("IOTLB miss with the PDE not cached (2 table reads)", "≤ 290 ns",
                        String.format(Locale.ROOT, "%.0f ns", m.nsPerOp()), m.nsPerOp() <= 290,
                        "a hardware SMMU's 4-read miss (row 40): the model must not be the bottleneck"));
            }
        }
        return t;
    }

    static void deleteTree(final Path root) throws java.io.IOException {
        if (!Files.exists(root)) {
            return;
        }
        try (var walk = Files.walk(root)) {
            for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    static ObjectMapper json() {
        return new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    }
}
