package org.iopersist.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.function.LongUnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.CompletionTrace;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.DeviceRegisters;
import org.iopersist.hw.pci.LatencySummary;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.kernel.liveupdate.kho.Fdt;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.PreservedMemoryMap;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Wire;
import org.iopersist.vmm.GuestRam;
import org.iopersist.kernel.init.BootParams;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.iopersist.vmm.VfioDeviceHandle;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The live update, end to end, in separate processes: the machine (memory, VT-d unit, devices) is
 * one, each kernel another, and this process is the VMM. The VMM puts guest RAM on guestmemfs,
 * makes its iommufd persistent and lets two devices DMA into the guest; kernel 1 finalizes and
 * kexecs, and its process ends; kernel 2, a new process that knows only the machine directory,
 * boots from the handover while the devices keep running on the preserved VT-d tables; the
 * restarted VMM reopens its iommufd through sysfs and rebinds its devices; then a CPU-side checker
 * finds every record where it belongs.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Live-update a kernel under a VMM whose devices keep doing DMA (machine, kernels and VMM in separate processes).")
final class Demo implements Callable<Integer> {
    private static final long MIB = 1L << 20;
    private static final long PACE_NANOS = 100_000;
    private static final String READY = "kernel ready \\S+ (\\S+) in ([0-9.]+)ms";

    @Option(names = "--dir", description = "machine directory (default: a new temporary one)")
    private Path dir;

    @Option(names = "--seconds", description = "how long the devices run before and after the update (default: ${DEFAULT-VALUE})")
    private double seconds = 0.5;

    @Option(names = "--guest-ram", paramLabel = "SIZE",
            description = "guest RAM, in MiB or with a K/M/G/T suffix, 4M..1T (default: ${DEFAULT-VALUE}); above 3G, q35's hole below 4 GiB")
    private String guestRam = "64M";
    private long guestRamBytes;

    @Option(names = "--console", description = "also print every kernel's log, with timestamps")
    private boolean console;

    @Option(names = "--updates", description = "live updates in a row (default: ${DEFAULT-VALUE})")
    private int updates = 1;

    @Option(names = "--kernel-java-options", paramLabel = "OPTS", description = "extra JVM options for the kernel processes")
    private String kernelJavaOptions = "";

    @Option(names = "--out", paramLabel = "DIR",
            description = "write report.json, timeline.png and every process's log into DIR (created if missing)")
    private Path out;

    @Option(names = "--json", description = "print the report as JSON on stdout (the summary lines go to stderr)")
    private boolean json;

    @Option(names = "--vmm-command", paramLabel = "CMD",
            description = "after each kexec, run CMD --socket S --memory M --hold as the restarted VMM (e.g. "
                    + "clients/c/build/example-vmm), with --luo --session vm0 added in the luo flow; it must print 'rebound N "
                    + "devices' (luo: 'retrieved N devices', after preserving everything again in a new session vm0) and keep "
                    + "its iommufd until stdin ends")
    private String vmmCommand;

    /** The two designs the model runs: the seed RFC's, and Linux's Live Update Orchestrator. */
    enum Flow { rfc, luo }

    @Option(names = "--flow", paramLabel = "rfc|luo", description = {"how the VMM hands its state over (default: ${DEFAULT-VALUE}):",
        "rfc: guest RAM on guestmemfs, a persistent iommufd, finalize, reopen through sysfs and rebind;",
        "luo: guest RAM in a sealed memfd, the HWPT marked, memfd, iommufd and devices preserved in a",
        "/dev/liveupdate session (the reboot freezes it), retrieved by token and finished"})
    private Flow flow = Flow.rfc;

    private List<String> kernelJava() {
        return kernelJavaOptions.isBlank() ? List.of() : List.of(kernelJavaOptions.trim().split("\\s+"));
    }

    @Override
    public Integer call() throws Exception {
        if (!(seconds > 0 && seconds <= 3600)) { // NaN too
            throw new IllegalArgumentException("--seconds must be in (0, 3600]");
        }
        try {
            guestRamBytes = guestRam.matches("\\d+") ? Long.parseLong(guestRam) * MIB : BootParams.memparse(guestRam);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--guest-ram " + guestRam + ": want a size such as 256M, 16G or 1T");
        }
        if (guestRamBytes < 4 * MIB || guestRamBytes > (1L << 40) || guestRamBytes % (2 * MIB) != 0) {
            throw new IllegalArgumentException("--guest-ram must be a multiple of 2 MiB in 4M..1T");
        }
        if (updates < 1 || updates > 100) {
            throw new IllegalArgumentException("--updates must be 1..100");
        }
        Paths.requireNamed("--out", out);
        Paths.requireNamed("--dir", dir);
        if (out != null && Files.exists(out) && !Files.isDirectory(out)) {
            throw new IllegalArgumentException("--out " + out + " is a file; give a directory");
        }
        if (out != null) {
            Paths.requireCreatableDirectory("--out", out);
        }
        if (dir != null && Files.exists(dir) && !Files.isDirectory(dir)) {
            throw new IllegalArgumentException("--dir " + dir + " is a file; give a new directory");
        }
        if (dir != null && Files.exists(dir.resolve(MachineConfig.FILE))) {
            throw new IllegalArgumentException(dir + " already holds a machine; give a new directory");
        }
        if (vmmCommand != null) {
            final String program = vmmCommand.trim().split("\\s+")[0];
            if (program.isEmpty()) {
                throw new IllegalArgumentException("--vmm-command is empty");
            }
            final Path exe = Path.of(program);
            if (!Files.isRegularFile(exe) || !Files.isExecutable(exe)) {
                throw new IllegalArgumentException("--vmm-command " + program + ": no executable file there (give its path)");
            }
        }
        final Path machineDir = dir != null ? dir : Files.createTempDirectory("iopersist-demo");
        boolean clean = false;
        try {
            final DemoReport report = run(machineDir);
            if (json) {
                System.out.println(jsonMapper().writeValueAsString(report));
            }
            clean = report.ok();
            return report.ok() ? 0 : 1;
        } catch (Exception e) {
            // The logs a message names are in the run's directory: a failed run keeps it.
            throw dir == null ? new IllegalStateException(e.getMessage() + " (" + machineDir + " is kept)", e) : e;
        } finally {
            // Every process of the run ends before its directory goes: a kernel still running
            // would write its sysfs mirror into it again.
            for (Role r : roles) {
                r.close();
            }
            if (dir == null && clean) {
                SelfCheck.deleteTree(machineDir);
            }
        }
    }

    private final List<Role> roles = new ArrayList<>();

    /** A child process of this JVM's own command: {@code iopersist ROLE ARGS}, its output in a log file. */
    private final class Role implements AutoCloseable {
        final Process process;
        final Path log;

        /** Any other program, e.g. a VMM written in C; its output in {@code log}. */
        Role(final Path log, final List<String> command) throws IOException {
            this.log = log;
            this.process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
            roles.add(this);
        }

        Role(final Path log, final List<String> javaOptions, final String... args) throws IOException {
            final List<String> cmd = new ArrayList<>();
            cmd.add(ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
            cmd.add("--enable-native-access=ALL-UNNAMED");
            cmd.add("-Xmx1g");
            cmd.addAll(javaOptions);
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add(Main.class.getName());
            cmd.addAll(List.of(args));
            this.log = log;
            this.process = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
            roles.add(this);
        }

        /** Waits for a whole line (one that matches {@code pattern}); returns its groups. */
        Matcher await(final String pattern, final long timeoutSeconds) throws Exception {
            final Pattern p = Pattern.compile(pattern);
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
            while (true) {
                for (String line : Files.readAllLines(log)) {
                    final Matcher m = p.matcher(line);
                    if (m.matches()) {
                        return m;
                    }
                }
                if (!process.isAlive() || System.nanoTime() > deadline) {
                    throw new IllegalStateException("no line like '" + pattern + "' came; see " + log);
                }
                Thread.sleep(2);
            }
        }

        /** Tells a staged kernel to boot: the kexec has happened. */
        void go() throws IOException {
            process.getOutputStream().write("boot\n".getBytes(StandardCharsets.UTF_8));
            process.getOutputStream().flush();
        }

        /** Ends stdin, which stops a machine or halts a kernel, and waits for the exit. */
        int stop() throws Exception {
            process.getOutputStream().close();
            if (!process.waitFor(30, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                throw new IllegalStateException("did not stop; see " + log);
            }
            return process.exitValue();
        }

        @Override
        public void close() {
            if (process.isAlive()) {
                process.destroyForcibly();
                try {
                    process.waitFor(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    /** What the VMM measured of one update, to be turned into the report once the devices stopped. */
    private record Timing(long finalizeNanos, long finalizedNanos, long rebootNanos, long kexecNanos, long servingNanos,
                          long reboundNanos, double kernelBootMs) {
    }

    private DemoReport run(final Path machineDir) throws Exception {
        // guestmemfs holds guest RAM and its own metadata; the machine adds 768 MiB for the kernels.
        // A large guest gets a GiB of slack, so that every GiB of it can be a 1 GiB-aligned run
        // (and a 1 GiB leaf) past the metadata at the carve-out's start. The LUO flow's RAM is a
        // memfd: ordinary memory, no carve-out.
        final long carveOut = Math.max(256 * MIB, guestRamBytes + (guestRamBytes >= 4 * 1024 * MIB ? 1024 : 64) * MIB);
        final String cmdline = flow == Flow.luo ? "liveupdate.finish_timeout=30"
                : "guestmemfs=" + (carveOut / MIB) + "M liveupdate.finish_timeout=30";
        final MachineConfig config = MachineConfig.small().withMemorySize(Math.max(MachineConfig.small().memorySize(),
                (flow == Flow.luo ? guestRamBytes : carveOut) + 768 * MIB));
        final Path sock = machineDir.resolve("kernel.sock");
        // With --json, stdout carries only the report: the summary lines move to stderr.
        final PrintStream say = json ? System.err : System.out;
        final int nDevices = config.devices().size();
        final DeviceBar[] bars = new DeviceBar[nDevices];
        // Long runs say how they go on stderr, so stdout stays the summary (or the JSON).
        final boolean longRun = updates > 1 || seconds * (updates + 1) >= 3;
        final Progress progress = longRun ? Progress.start(System.err, "demo", Duration.ofSeconds(1), () -> deviceStatus(bars))
                : Progress.silent();
        Files.createDirectories(machineDir);
        Board.create(machineDir, config).close(); // the directory as firmware describes it; the machine process powers it on
        final List<DemoReport.Kernel> kernels = new ArrayList<>();
        final List<DemoReport.Update> updateReports = new ArrayList<>();
        final List<DemoReport.Device> deviceReports = new ArrayList<>();
        final List<DemoReport.Mark> marks = new ArrayList<>();
        final Map<String, String> formats = new LinkedHashMap<>();
        final int[][] counts;
        final long startBin;
        final long originNanos;
        final double endMs;
        int problems = 0;
        try (progress; Role machine = new Role(machineDir.resolve("machine.log"), List.of(), "machine", machineDir.toString())) {
            progress.phase("machine starting");
            machine.await("machine ready .*", 60);
            Files.writeString(machineDir.resolve("boot").resolve("cmdline"), cmdline);
            say.printf("machine  %s: %d MiB, %d VT-d unit, devices %s (process %d)%n", machineDir, config.memorySize() >> 20,
                    config.units().size(), config.devices().stream().map(d -> d.bdf().toString()).toList(), machine.process.pid());
            try (Board board = Board.open(machineDir); CompletionTrace trace = CompletionTrace.open(machineDir)) {
                final long[] before = new long[nDevices];
                progress.phase("kernel 1 booting");
                Role kernel = new Role(machineDir.resolve("kernel1.log"), kernelJava(), "kernel", machineDir.toString(),
                        "--socket", sock.toString());
                try {
                    final Matcher ready = kernel.await(READY, 60);
                    say.printf("kernel 1 booted (%s) in %s ms, process %d, cmdline \"%s\"%n", ready.group(1), ready.group(2),
                            kernel.process.pid(), cmdline);
                    kernels.add(new DemoReport.Kernel(1, kernel.process.pid(), ready.group(1), Double.parseDouble(ready.group(2)),
                            out != null ? "kernel1.log" : null));
                } catch (RuntimeException e) {
                    kernel.close();
                    throw e;
                }

                // The VMM before the update.
                progress.phase("vmm 1 setting up");
                KernelClient vmm = KernelClient.connect(sock, machineDir.resolve("memory"));
                final LuoVmm luo = flow == Flow.luo ? new LuoVmm(guestRamBytes) : null;
                final int[] devIds;
                final int pid;
                final GuestRam ram;
                final String setUp;
                if (luo == null) {
                    ram = GuestRam.create(vmm, "vm0-ram", guestRamBytes);
                    final IommufdHandle iommufd = IommufdHandle.open(vmm);
                    pid = (int) iommufd.makePersistent();
                    final int ioas = iommufd.ioasAlloc();
                    final List<GuestRam.Region> regions = ram.mapForDma(iommufd, ioas, 1);
                    devIds = new int[nDevices];
                    for (int i = 0; i < nDevices; i++) {
                        final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, i);
                        devIds[i] = dev.bind(iommufd);
                        dev.attach(ioas);
                    }
                    setUp = String.format("guest RAM /guestmemfs/vm0-ram (%s) at IOVA %s, persistent iommufd %d, "
                            + "devices bound (dev_id %s) and running", size(guestRamBytes),
                            regions.size() == 1 ? "0" : "0 and 4G (q35 hole below 4 GiB)", pid, ids(devIds));
                } else {
                    setUp = luo.setUp(vmm, nDevices);
                    devIds = luo.devIds();
                    pid = 0;
                    ram = luo.ram();
                }
                // The timeline's 0: the start of the trace's millisecond in which the devices start.
                final long devicesStart = trace.originNanos() + trace.binOf(System.nanoTime()) * CompletionTrace.BIN_NANOS;
                for (int i = 0; i < nDevices; i++) {
                    // The guest's driver programs its device; the device runs in the machine's process.
                    final DeviceBar bar = new DeviceBar(board.deviceBar(i));
                    // Paced (10 k records/s each): a device's engine is not a host CPU, and this may be a 2-core box.
                    bar.start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i).withPace(PACE_NANOS));
                    bars[i] = bar;
                }
                say.println("vmm 1    " + setUp);
                progress.phase("devices running, " + updates + (updates == 1 ? " update" : " updates") + " to go");
                Thread.sleep((long) (seconds * 1000));
                for (int i = 0; i < nDevices; i++) {
                    before[i] = bars[i].counters().ops();
                }
                GuestRam current = ram;
                // Where the checker finds guest RAM: through the VMM's own mapping, or (the LUO flow with an
                // external VMM, which alone holds the memfd) the frames noted before the first kexec, which the
                // memfd keeps in place.
                LongUnaryOperator ramPhys = luo != null && vmmCommand != null ? framesOf(ram, bars) : ram::physOf;
                Role external = null;
                for (int u = 1; u <= updates; u++) {
                    final String step = "update " + u + "/" + updates + ": ";
                    // kexec_load first, as a live update does: the next kernel is staged (its process
                    // starts and waits) while the guest still runs. Then the RFC's finalize, and reboot(KEXEC).
                    progress.phase(step + "kernel " + (u + 1) + " staging");
                    vmm.kexecLoad(cmdline);
                    final Role next = new Role(machineDir.resolve("kernel" + (u + 1) + ".log"), kernelJava(), "kernel",
                            machineDir.toString(), "--socket", sock.toString(), "--staged");
                    final long t0;
                    final long tf;
                    final long tk0;
                    final long t1;
                    final long t2;
                    final Matcher ready;
                    final DemoReport.Handover handover;
                    try (Role old = kernel) {
                        next.await("kernel staged.*", 60);
                        progress.phase(step + "finalize and kexec");
                        t0 = System.nanoTime();
                        if (luo == null) {
                            vmm.writeFile("/sys/kernel/kho/finalize", "1");
                            tf = System.nanoTime();
                            // The handover is frozen now: read what it holds, outside every timed phase.
                            handover = readHandover(vmm, board, formats);
                        } else {
                            tf = t0; // no finalize: the reboot freezes the session and serializes it
                            handover = null;
                        }
                        tk0 = System.nanoTime();
                        vmm.rebootKexec();
                        old.await("kernel kexec: .*", 30);
                        t1 = System.nanoTime();
                        next.go(); // the jump: the old kernel's process only winds down from here
                        // No kernel runs for a moment; the devices do.
                        progress.phase(step + "kernel " + (u + 1) + " booting from the handover");
                        ready = next.await(READY, 60);
                        t2 = System.nanoTime();
                        if (!old.process.waitFor(30, TimeUnit.SECONDS) || old.process.exitValue() != 0) {
                            throw new IllegalStateException("kernel " + u + " did not end with its kexec; see " + old.log);
                        }
                    } catch (RuntimeException | IOException | InterruptedException e) {
                        next.close();
                        throw e;
                    }
                    vmm.close();
                    kernel = next;
                    say.printf("kexec %-3d %s %.1f ms; kernel %d (process %d) booted from the handover (%s)"
                            + " in %s ms, %.0f ms from the kexec to serving syscalls%n", u,
                            luo == null ? "finalize + kexec" : "reboot (freeze + serialize) + kexec", (tf - t0 + t1 - tk0) / 1e6, u + 1,
                            kernel.process.pid(), ready.group(1), ready.group(2), (t2 - t1) / 1e6);
                    kernels.add(new DemoReport.Kernel(u + 1, kernel.process.pid(), ready.group(1),
                            Double.parseDouble(ready.group(2)), out != null ? "kernel" + (u + 1) + ".log" : null));

                    if (luo != null && vmmCommand != null) {
                        // Another program retrieves the session (and preserves everything again for the next update).
                        progress.phase(step + "vmm " + (u + 1) + " retrieving");
                        if (external != null) {
                            external.stop(); // the VMM of the kernel before: its connection ended with the kexec
                        }
                        final List<String> cmd = new ArrayList<>(List.of(vmmCommand.trim().split("\\s+")));
                        cmd.addAll(List.of("--socket", sock.toString(), "--memory", machineDir.resolve("memory").toString(),
                                "--luo", "--session", "vm0", "--hold"));
                        external = new Role(machineDir.resolve("vmm" + (u + 1) + ".log"), cmd);
                        external.await(".*retrieved \\d+ devices.*", 60);
                        final long t3 = System.nanoTime();
                        final int[] again = new int[nDevices];
                        externalIds(external.log, "", again);
                        final boolean kept = java.util.Arrays.equals(again, devIds);
                        final boolean preserved = Files.readString(external.log).contains("preserved again in a new session vm0");
                        vmm = KernelClient.connect(sock, machineDir.resolve("memory"));
                        say.printf("vmm %-4d %s (process %d) retrieved session vm0: devices bound with dev_id %s, RAM, iommufd; "
                                + "finished (%.1f ms)%n", u + 1, Path.of(cmd.get(0)).getFileName(), external.process.pid(), ids(again),
                                (t3 - t2) / 1e6);
                        say.printf("session %-3d %s%n", u + 1, preserved ? "state, RAM, iommufd and devices preserved again in a "
                                + "new session vm0 by the external VMM" : "not preserved again: see " + external.log);
                        final int p = (kept ? 0 : 1) + (preserved ? 0 : 1);
                        problems += p;
                        final Timing timing = new Timing(t0, tf, tk0, t1, t2, t3, Double.parseDouble(ready.group(2)));
                        updateReports.add(new DemoReport.Update(u, phases(timing), null,
                                java.util.Arrays.stream(again).boxed().toList(), p == 0, null));
                        marks.add(mark("kexec", u, t1, devicesStart));
                        marks.add(mark("boot", u, t2, devicesStart));
                        marks.add(mark("reopen", u, t3, devicesStart));
                        progress.phase(u < updates ? "devices running, " + (updates - u) + " more to go" : "devices running, all updates done");
                        Thread.sleep((long) (seconds * 1000));
                        continue;
                    }
                    if (luo != null) {
                        // The restarted VMM retrieves its session: the devices come back bound and attached.
                        progress.phase(step + "vmm " + (u + 1) + " retrieving");
                        vmm = KernelClient.connect(sock, machineDir.resolve("memory"));
                        final String back = luo.afterKexec(vmm);
                        final long t3 = System.nanoTime();
                        current = luo.ram();
                        ramPhys = current::physOf;
                        say.printf("vmm %-4d %s (%.1f ms)%n", u + 1, back, (t3 - t2) / 1e6);
                        say.printf("session %-3d %s%n", u + 1, luo.check(vmm));
                        final int p = luo.problems();
                        problems += p;
                        final Timing timing = new Timing(t0, tf, tk0, t1, t2, t3, Double.parseDouble(ready.group(2)));
                        updateReports.add(new DemoReport.Update(u, phases(timing), null,
                                java.util.Arrays.stream(devIds).boxed().toList(), p == 0, null));
                        marks.add(mark("kexec", u, t1, devicesStart));
                        marks.add(mark("boot", u, t2, devicesStart));
                        marks.add(mark("reopen", u, t3, devicesStart));
                        progress.phase(u < updates ? "devices running, " + (updates - u) + " more to go" : "devices running, all updates done");
                        Thread.sleep((long) (seconds * 1000));
                        continue;
                    }
                    // The restarted VMM: reopen the iommufd through sysfs, rebind the devices, reopen guest RAM.
                    progress.phase(step + "vmm " + (u + 1) + " reopening");
                    final String node = Iommufd.persistedNode(pid);
                    final int[] again = new int[nDevices];
                    final long t3;
                    final long persistentId;
                    if (external != null) {
                        external.stop(); // the VMM of the kernel before: its connection ended with the kexec
                    }
                    if (vmmCommand == null) {
                        external = null;
                        vmm = KernelClient.connect(sock, machineDir.resolve("memory"));
                        final IommufdHandle reopened = IommufdHandle.of(vmm, vmm.open(node, Syscall.O_RDWR));
                        for (int i = 0; i < nDevices; i++) {
                            again[i] = VfioDeviceHandle.open(vmm, i).bind(reopened);
                        }
                        t3 = System.nanoTime();
                        persistentId = reopened.persistentId();
                    } else {
                        // Another program is the restarted VMM; this process keeps a connection of its own
                        // for what the demo checks (sysfs, guest RAM) and for the next update.
                        final List<String> cmd = new ArrayList<>(List.of(vmmCommand.trim().split("\\s+")));
                        cmd.addAll(List.of("--socket", sock.toString(), "--memory", machineDir.resolve("memory").toString(), "--hold"));
                        external = new Role(machineDir.resolve("vmm" + (u + 1) + ".log"), cmd);
                        external.await(".*rebound \\d+ devices.*", 60);
                        t3 = System.nanoTime();
                        persistentId = externalIds(external.log, node, again);
                        vmm = KernelClient.connect(sock, machineDir.resolve("memory"));
                    }
                    boolean kept = true;
                    for (int i = 0; i < nDevices; i++) {
                        kept &= again[i] == devIds[i];
                    }
                    problems += kept ? 0 : 1;
                    current = GuestRam.open(vmm, "vm0-ram");
                    ramPhys = current::physOf;
                    say.printf("vmm %-4d %sreopened %s (persistent id %d), devices rebound with dev_id %d, %d%n", u + 1,
                            external != null ? Path.of(vmmCommand.trim().split("\\s+")[0]).getFileName() + " (process "
                                    + external.process.pid() + ") " : "", node, persistentId, again[0], again[1]);
                    progress.phase(step + "scrub");
                    final String scrub = awaitScrub(vmm, pid);
                    say.printf("scrub %-3d %s%n", u + 1, scrub);
                    problems += scrub.startsWith("ok") ? 0 : 1;
                    final Timing timing = new Timing(t0, tf, tk0, t1, t2, t3, Double.parseDouble(ready.group(2)));
                    updateReports.add(new DemoReport.Update(u, phases(timing), handover,
                            java.util.Arrays.stream(again).boxed().toList(), kept, new DemoReport.Scrub(scrub.startsWith("ok"), scrub)));
                    marks.add(mark("finalize", u, t0, devicesStart));
                    marks.add(mark("kexec", u, t1, devicesStart));
                    marks.add(mark("boot", u, t2, devicesStart));
                    marks.add(mark("reopen", u, t3, devicesStart));
                    progress.phase(u < updates ? "devices running, " + (updates - u) + " more to go" : "devices running, all updates done");
                    Thread.sleep((long) (seconds * 1000));
                }
                progress.phase("checking every record");
                final RecordChecker checker = new RecordChecker(board.memory());
                final DeviceCounters[] finals = new DeviceCounters[nDevices];
                for (int i = 0; i < nDevices; i++) {
                    bars[i].stop();
                }
                final long devicesEnd = System.nanoTime();
                progress.close(); // the summary lines follow: no progress line between them
                originNanos = trace.originNanos();
                startBin = trace.binOf(devicesStart);
                final long endBin = Math.min(trace.binOf(devicesEnd), trace.bins() - 1);
                counts = new int[nDevices][(int) Math.max(0, endBin - startBin + 1)];
                endMs = (devicesEnd - devicesStart) / 1e6;
                for (int i = 0; i < nDevices; i++) {
                    final DeviceCounters c = bars[i].counters();
                    finals[i] = c;
                    trace.counts(i, startBin, counts[i]);
                    final RecordChecker.Report r = checker.check(bars[i].window(), ramPhys);
                    say.printf("device   vfio%d: %d records (%d after the first update), %d faults, %d corrupt, "
                            + "longest DMA gap %.2f ms; checker: %s%n", i, c.ops(), c.ops() - before[i], c.faults(),
                            c.corrupt(), c.maxGapNanos() / 1e6, r.clean() ? "every record in place" : r);
                    problems += c.faults() + c.corrupt() > 0 || !r.clean() ? 1 : 0;
                    deviceReports.add(deviceReport(i, config.devices().get(i).bdf().toString(), devIds[i], c, before[i],
                            counts[i], bars[i].latency(), r, marks));
                }
                vmm.close();
                if (external != null) {
                    external.stop(); // the devices are stopped: the restarted VMM may let its iommufd go
                }
                try (Role last = kernel) {
                    last.stop();
                }
                if (console) {
                    for (int k = 1; k <= updates + 1; k++) {
                        printLog(say, "kernel " + k, machineDir.resolve("kernel" + k + ".log"));
                    }
                }
                say.println(problems == 0 ? "demo: ok" : "demo: " + problems + " problems (faults, corruption or changed ids)");
            }
            machine.stop();
        }
        DemoReport.Files files = null;
        String image = null;
        if (out != null) {
            Files.createDirectories(out);
            final List<String> logs = new ArrayList<>();
            logs.add("machine.log");
            for (int k = 1; k <= updates + 1; k++) {
                logs.add("kernel" + k + ".log");
            }
            for (int k = 2; vmmCommand != null && k <= updates + 1; k++) {
                logs.add("vmm" + k + ".log");
            }
            for (String log : logs) {
                Files.copy(machineDir.resolve(log), out.resolve(log), StandardCopyOption.REPLACE_EXISTING);
            }
            image = "timeline.png";
            final List<String> names = new ArrayList<>();
            for (int i = 0; i < nDevices; i++) {
                names.add("vfio" + i + " (" + config.devices().get(i).bdf() + ")");
            }
            TimelineChart.write(out.resolve(image), names, counts, marks);
            files = new DemoReport.Files("report.json", image, logs);
        }
        final DemoReport report = new DemoReport(DemoReport.SCHEMA, DemoReport.VERSION, flow.name(), problems == 0, problems,
                new DemoReport.Versions(DemoReport.VERSION, Wire.ABI_VERSION, Fdt.VERSION, Kho.COMPATIBLE, formats,
                        DeviceRegisters.VERSION_VALUE, CompletionTrace.VERSION),
                new DemoReport.Machine(machineDir.toString(), config.memorySize(), config.units().size(),
                        config.devices().stream().map(d -> d.bdf().toString()).toList()),
                new DemoReport.Settings(seconds, guestRamBytes, updates, PACE_NANOS, cmdline),
                kernels, updateReports, deviceReports,
                new DemoReport.Timeline(originNanos, startBin, endMs, marks, image), files);
        if (out != null) {
            Files.writeString(out.resolve("report.json"), jsonMapper().writeValueAsString(report) + "\n");
        }
        return report;
    }

    static ObjectMapper jsonMapper() {
        return new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    }

    /** One progress line's worth of the devices: their records and faults so far. */
    private static String deviceStatus(final DeviceBar[] bars) {
        final StringBuilder b = new StringBuilder();
        long faults = 0;
        for (int i = 0; i < bars.length; i++) {
            final DeviceBar bar = bars[i];
            if (bar != null) {
                final DeviceCounters c = bar.counters();
                b.append(b.isEmpty() ? "" : ", ").append("vfio").append(i).append(' ').append(c.ops()).append(" records");
                faults += c.faults() + c.corrupt();
            }
        }
        return b.isEmpty() ? "" : b + (faults == 0 ? ", no fault" : ", " + faults + " faults or corrupt records");
    }

    private static DemoReport.Phases phases(final Timing t) {
        final double finalize = (t.finalizedNanos() - t.finalizeNanos()) / 1e6;
        final double read = (t.rebootNanos() - t.finalizedNanos()) / 1e6;
        return new DemoReport.Phases(finalize, (t.kexecNanos() - t.rebootNanos()) / 1e6, (t.servingNanos() - t.kexecNanos()) / 1e6,
                t.kernelBootMs(), (t.reboundNanos() - t.servingNanos()) / 1e6, (t.reboundNanos() - t.finalizeNanos()) / 1e6 - read, read);
    }

    private static DemoReport.Mark mark(final String event, final int update, final long nanos, final long startNanos) {
        return new DemoReport.Mark(event, update, Math.round((nanos - startNanos) / 1e3) / 1e3);
    }

    /**
     * Reads what finalize handed over, as a tool would: the KHO tree from
     * {@code /sys/kernel/kho/fdt}, and each blob and the tracker from physical memory, which stays
     * frozen until the kexec. Records each blob's {@code compatible} in {@code formats}.
     */
    private static DemoReport.Handover readHandover(final KernelClient vmm, final Board board, final Map<String, String> formats) {
        final byte[] tree = vmm.readAll("/sys/kernel/kho/fdt");
        try {
            final FdtReader root = FdtReader.open(tree);
            final List<DemoReport.Blob> blobs = new ArrayList<>();
            long total = root.totalSize();
            for (int node : root.children(root.root())) {
                final String name = root.nodeName(node);
                final long phys = root.u64(node, Kho.PROP_FDT);
                final long size = Integer.toUnsignedLong(Integer.reverseBytes(board.memory().load32(phys + Fdt.OFF_TOTALSIZE)));
                final FdtReader blob = FdtReader.open(board.memory().slice(phys, size));
                final String compatible = blob.string(blob.root(), "compatible");
                formats.putIfAbsent(name, compatible);
                blobs.add(new DemoReport.Blob(name, compatible, phys, size));
                total += size;
            }
            final List<PreservedMemoryMap.Node> nodes = PreservedMemoryMap.readLayout(board.memory(),
                    root.u64(root.root(), Kho.PROP_MEMORY_MAP));
            long frames = 0;
            long leaves = 0;
            for (PreservedMemoryMap.Node n : nodes) {
                if (n.level() != 0) {
                    continue;
                }
                leaves++;
                for (long w = 0; w < 4096; w += 8) {
                    frames += (long) Long.bitCount(board.memory().load64(n.phys() + w)) << n.order();
                }
            }
            final long trackerBytes = 4096L * nodes.size();
            return new DemoReport.Handover(root.totalSize(), blobs,
                    new DemoReport.Tracker(nodes.size(), leaves, trackerBytes, frames), total + trackerBytes);
        } catch (HandoverFormatException e) {
            throw new IllegalStateException("the handover finalize wrote does not read back: " + e.getMessage(), e);
        }
    }

    /** A device's part of the report; its gaps come from the completion trace, placed against the update phases. */
    private static DemoReport.Device deviceReport(final int index, final String bdf, final int devId, final DeviceCounters c,
                                                  final long before, final int[] counts, final LatencySummary lat,
                                                  final RecordChecker.Report r, final List<DemoReport.Mark> marks) {
        final Map<String, Long> byReason = new LinkedHashMap<>();
        final long[] reasons = c.faultsByReason();
        for (int code = 0; code < reasons.length; code++) {
            if (reasons[code] != 0) {
                final FaultReason reason = FaultReason.ofCode(code);
                byReason.put(reason != null ? reason.name() : "reason" + code, reasons[code]);
            }
        }
        long traced = 0;
        for (int n : counts) {
            traced += n;
        }
        return new DemoReport.Device(index, "vfio" + index, bdf, devId, c.ops(), c.ops() - before, traced, c.corrupt(),
                new DemoReport.Faults(c.faults(), byReason), c.maxGapNanos() / 1e6,
                new DemoReport.Latency(lat.count(), lat.p50(), lat.p90(), lat.p99(), lat.p999(), lat.max()),
                new DemoReport.Checker(r.clean(), r.checked(), r.found(), r.stale(), r.empty(), r.corrupt(), r.unmapped()),
                gaps(counts, marks));
    }

    /** At most this many gaps per device in the report: the longest. */
    static final int MAX_GAPS = 10;

    /**
     * Runs of whole milliseconds with no completion, from the device's first completion to the last
     * bin (partial, so not counted), the {@link #MAX_GAPS} longest in time order, each with the
     * phases it overlaps.
     */
    static List<DemoReport.Gap> gaps(final int[] counts, final List<DemoReport.Mark> marks) {
        final List<long[]> runs = new ArrayList<>();
        int i = 0;
        while (i < counts.length && counts[i] == 0) {
            i++; // not started yet
        }
        while (i < counts.length - 1) {
            if (counts[i] != 0) {
                i++;
                continue;
            }
            final int start = i;
            while (i < counts.length - 1 && counts[i] == 0) {
                i++;
            }
            runs.add(new long[] {start, i - start});
        }
        runs.sort((a, b) -> a[1] != b[1] ? Long.compare(b[1], a[1]) : Long.compare(a[0], b[0]));
        final List<long[]> kept = new ArrayList<>(runs.subList(0, Math.min(MAX_GAPS, runs.size())));
        kept.sort((a, b) -> Long.compare(a[0], b[0]));
        final List<DemoReport.Gap> out = new ArrayList<>();
        for (long[] run : kept) {
            out.add(new DemoReport.Gap(run[0], run[1], during(run[0], run[0] + run[1], marks)));
        }
        return out;
    }

    /** The update phases {@code [startMs, endMs)} overlaps: finalize, kexec (to the old kernel's end), boot, reopen. */
    private static String during(final long startMs, final long endMs, final List<DemoReport.Mark> marks) {
        final List<String> phases = new ArrayList<>();
        for (int m = 0; m + 3 < marks.size(); m += 4) {
            // finalize runs from its mark to the kexec's, kexec from there to the old kernel's end
            final double[] edges = {marks.get(m).ms(), marks.get(m + 1).ms(), marks.get(m + 2).ms(), marks.get(m + 3).ms()};
            final String[] names = {"finalize+kexec", "boot", "reopen"};
            for (int p = 0; p < 3; p++) {
                if (startMs < edges[p + 1] && edges[p] < endMs) {
                    phases.add(names[p] + " " + marks.get(m).update());
                }
            }
        }
        return phases.isEmpty() ? "running" : String.join(", ", phases);
    }

    /**
     * What an external VMM said it did, from its log: each {@code vfioN ... dev_id X} line fills
     * {@code devIds[N]}; returns the persistent id of its {@code reopened NODE ... persistent id P} line.
     */
    private static long externalIds(final Path log, final String node, final int[] devIds) throws IOException {
        final Pattern dev = Pattern.compile(".*\\bvfio(\\d+)\\b.*\\bdev_id (\\d+).*");
        final Pattern reopened = Pattern.compile(".*reopened " + Pattern.quote(node) + "\\b.*persistent id (\\d+).*");
        long pid = -1;
        for (String line : Files.readAllLines(log)) {
            final Matcher d = dev.matcher(line);
            if (d.matches() && Integer.parseInt(d.group(1)) < devIds.length) {
                devIds[Integer.parseInt(d.group(1))] = Integer.parseInt(d.group(2));
            }
            final Matcher r = reopened.matcher(line);
            if (r.matches()) {
                pid = Long.parseLong(r.group(1));
            }
        }
        return pid;
    }

    /**
     * Linux's LUO flow: guest RAM in a sealed memfd mapped with IOMMU_IOAS_MAP_FILE, both devices
     * attached to its IOAS and the HWPT marked; a state memfd (the ids the next VMM needs, as QEMU's
     * CPR state), the RAM memfd, the iommufd and both device files preserved in the session "vm0",
     * which stays open through the kexec. No finalize: the reboot freezes the session. After it,
     * RETRIEVE_SESSION, RETRIEVE_FD of each file (the devices come back bound and attached),
     * FINISH; then everything is preserved again in a new session, for the next update.
     */
    private static final class LuoVmm {
        private static final long STATE_TOKEN = 0;
        private static final long RAM_TOKEN = 1;
        private static final long IOMMUFD_TOKEN = 2;
        private static final long DEVICE_TOKEN = 16;
        private static final long HWPT_TOKEN = 0x4857_5054; // "HWPT"
        private final long ramBytes;
        private GuestRam ram;
        private int stateFd;
        private int iommufdFd;
        private int[] deviceFds;
        private int[] devIds;
        private int problems;

        LuoVmm(final long ramBytes) {
            this.ramBytes = ramBytes;
        }

        public String setUp(final KernelClient vmm, final int devices) {
            ram = GuestRam.createMemfd(vmm, "vm0-ram", ramBytes);
            final IommufdHandle iommufd = IommufdHandle.open(vmm);
            iommufdFd = iommufd.fd();
            final int ioas = iommufd.ioasAlloc();
            final List<GuestRam.Region> regions = ram.mapForDma(iommufd, ioas, 1);
            deviceFds = new int[devices];
            devIds = new int[devices];
            int hwpt = 0;
            for (int i = 0; i < devices; i++) {
                final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, i);
                devIds[i] = dev.bind(iommufd);
                hwpt = dev.attach(ioas); // both share the automatic HWPT of the IOAS
                deviceFds[i] = dev.fd();
            }
            iommufd.markPreserve(hwpt, HWPT_TOKEN);
            stateFd = vmm.memfdCreate("vm0-state");
            vmm.write(stateFd, ("ioas=" + ioas + " hwpt=" + hwpt + " devids=" + ids(devIds)).getBytes(StandardCharsets.UTF_8));
            preserve(vmm);
            return String.format("guest RAM memfd:vm0-ram (%s, sealed) at IOVA %s, iommufd with HWPT %d marked, devices bound "
                    + "(dev_id %s) and running; session vm0: state, RAM, iommufd and devices preserved", size(ramBytes),
                    regions.size() == 1 ? "0" : "0 and 4G (q35 hole below 4 GiB)", hwpt, ids(devIds));
        }

        private void preserve(final KernelClient vmm) {
            final LiveupdateHandle luo = LiveupdateHandle.open(vmm);
            final SessionHandle session = luo.createSession("vm0");
            luo.close(); // the session fd stays open, through the kexec
            session.preserveFd(stateFd, STATE_TOKEN);
            session.preserveFd(ram.fd(), RAM_TOKEN);
            session.preserveFd(iommufdFd, IOMMUFD_TOKEN);
            for (int i = 0; i < deviceFds.length; i++) {
                session.preserveFd(deviceFds[i], DEVICE_TOKEN + i);
            }
        }

        public String afterKexec(final KernelClient vmm) {
            final LiveupdateHandle luo = LiveupdateHandle.open(vmm);
            final SessionHandle session = luo.retrieveSession("vm0");
            luo.close();
            stateFd = session.retrieveFd(STATE_TOKEN);
            vmm.lseek(stateFd, 0, 0);
            final String state = new String(vmm.read(stateFd, 256), StandardCharsets.UTF_8);
            problems += state.endsWith("devids=" + ids(devIds)) ? 0 : 1;
            for (int i = 0; i < deviceFds.length; i++) {
                deviceFds[i] = session.retrieveFd(DEVICE_TOKEN + i); // bound and attached already
            }
            iommufdFd = session.retrieveFd(IOMMUFD_TOKEN);
            ram = GuestRam.ofMemfd(vmm, session.retrieveFd(RAM_TOKEN));
            session.finish();
            session.close();
            return "retrieved session vm0 (" + state + "): devices bound and attached, iommufd, guest RAM; finished";
        }

        public String check(final KernelClient vmm) {
            preserve(vmm); // for the next update, the guest running
            return "state, RAM, iommufd and devices preserved again in a new session vm0";
        }

        int[] devIds() {
            return devIds.clone();
        }

        public GuestRam ram() {
            return ram;
        }

        public int problems() {
            final int p = problems;
            problems = 0;
            return p;
        }
    }

    /** Each device window's page frames in guest RAM now, as a lookup (-1 outside them). */
    private static LongUnaryOperator framesOf(final GuestRam ram, final DeviceBar[] bars) {
        final Map<Long, Long> frames = new java.util.HashMap<>();
        for (DeviceBar bar : bars) {
            final RecordChecker.Expectation e = RecordChecker.Expectation.fromBar(bar.window());
            for (long gpa = e.iovaBase() & ~4095L; gpa < e.iovaBase() + e.length(); gpa += 4096) {
                frames.put(gpa, ram.physOf(gpa));
            }
        }
        return gpa -> {
            final Long frame = frames.get(gpa & ~4095L);
            return frame == null ? -1 : frame + (gpa & 4095);
        };
    }

    private static String ids(final int[] ids) {
        final StringBuilder b = new StringBuilder();
        for (int i = 0; i < ids.length; i++) {
            b.append(i == 0 ? "" : ", ").append(ids[i]);
        }
        return b.toString();
    }

    /** The kernel checks the adopted tables leaf by leaf after the rebind, in the background: its verdict. */
    private static String awaitScrub(final KernelClient vmm, final int pid) throws InterruptedException {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        String s;
        do {
            s = vmm.readFile(Iommufd.persistedDir(pid) + "/scrub").trim();
            if (!s.equals("pending") && !s.startsWith("running")) {
                return s;
            }
            Thread.sleep(5);
        } while (System.nanoTime() < deadline);
        return "still " + s + " after 60 s";
    }

    static String size(final long bytes) {
        return bytes % (1L << 40) == 0 ? (bytes >> 40) + " TiB" : bytes % (1L << 30) == 0 ? (bytes >> 30) + " GiB" : (bytes >> 20) + " MiB";
    }

    private static void printLog(final PrintStream say, final String who, final Path log) throws IOException {
        for (String line : Files.readAllLines(log)) {
            say.println("  " + who + " " + line);
        }
    }
}
