package org.iopersist.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
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
        if (seconds <= 0 || seconds > 3600) {
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
        if (flow == Flow.luo && guestRamBytes > 4L << 30) {
            throw new IllegalArgumentException("--flow luo keeps guest RAM in a memfd of 4 KiB pages: at most 4G");
        }
        if (dir != null && Files.exists(dir.resolve(MachineConfig.FILE))) {
            throw new IllegalArgumentException(dir + " already holds a machine; give a new directory");
        }
        final Path machineDir = dir != null ? dir : Files.createTempDirectory("iopersist-demo");
        try {
            return run(machineDir);
        } finally {
            if (dir == null) {
                SelfCheck.deleteTree(machineDir);
            }
        }
    }

    /** A child process of this JVM's own command: {@code iopersist ROLE ARGS}, its output in a log file. */
    private static final class Role implements AutoCloseable {
        final Process process;
        final Path log;

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
            }
        }
    }

    private int run(final Path machineDir) throws Exception {
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
        Files.createDirectories(machineDir);
        Board.create(machineDir, config).close(); // the directory as firmware describes it; the machine process powers it on
        try (Role machine = new Role(machineDir.resolve("machine.log"), List.of(), "machine", machineDir.toString())) {
            machine.await("machine ready .*", 60);
            Files.writeString(machineDir.resolve("boot").resolve("cmdline"), cmdline);
            System.out.printf("machine  %s: %d MiB, %d VT-d unit, devices %s (process %d)%n", machineDir, config.memorySize() >> 20,
                    config.units().size(), config.devices().stream().map(d -> d.bdf().toString()).toList(), machine.process.pid());
            try (Board board = Board.open(machineDir)) {
                final DeviceBar[] bars = new DeviceBar[config.devices().size()];
                final long[] before = new long[bars.length];
                Role kernel = new Role(machineDir.resolve("kernel1.log"), kernelJava(), "kernel", machineDir.toString(),
                        "--socket", sock.toString());
                try {
                    final Matcher ready = kernel.await(READY, 60);
                    System.out.printf("kernel 1 booted (%s) in %s ms, process %d, cmdline \"%s\"%n", ready.group(1), ready.group(2),
                            kernel.process.pid(), cmdline);
                } catch (RuntimeException e) {
                    kernel.close();
                    throw e;
                }

                // The VMM before the update.
                KernelClient vmm = KernelClient.connect(sock, machineDir.resolve("memory"));
                final Vmm flowVmm = flow == Flow.luo ? new LuoVmm(guestRamBytes) : new RfcVmm(guestRamBytes);
                final String setUp = flowVmm.setUp(vmm, bars.length);
                for (int i = 0; i < bars.length; i++) {
                    // The guest's driver programs its device; the device runs in the machine's process.
                    bars[i] = new DeviceBar(board.deviceBar(i));
                    // Paced (10 k records/s each): a device's engine is not a host CPU, and this may be a 2-core box.
                    bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i).withPace(PACE_NANOS));
                }
                System.out.println("vmm 1    " + setUp);
                Thread.sleep((long) (seconds * 1000));
                for (int i = 0; i < bars.length; i++) {
                    before[i] = bars[i].counters().ops();
                }
                int problems = 0;
                for (int u = 1; u <= updates; u++) {
                    // kexec_load first, as a live update does: the next kernel is staged (its process
                    // starts and waits) while the guest still runs. Then the RFC's finalize, and reboot(KEXEC).
                    vmm.kexecLoad(cmdline);
                    final Role next = new Role(machineDir.resolve("kernel" + (u + 1) + ".log"), kernelJava(), "kernel",
                            machineDir.toString(), "--socket", sock.toString(), "--staged");
                    final long t0;
                    final long t1;
                    final long t2;
                    final Matcher ready;
                    try (Role old = kernel) {
                        next.await("kernel staged.*", 60);
                        t0 = System.nanoTime();
                        flowVmm.beforeReboot(vmm);
                        vmm.rebootKexec();
                        old.await("kernel kexec: .*", 30);
                        t1 = System.nanoTime();
                        next.go(); // the jump: the old kernel's process only winds down from here
                        // No kernel runs for a moment; the devices do.
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
                    System.out.printf("kexec %-3d %s %.1f ms; kernel %d (process %d) booted from the handover (%s)"
                            + " in %s ms, %.0f ms from the kexec to serving syscalls%n", u, flowVmm.rebootWhat(), (t1 - t0) / 1e6,
                            u + 1, kernel.process.pid(), ready.group(1), ready.group(2), (t2 - t1) / 1e6);

                    // The restarted VMM takes its state back.
                    vmm = KernelClient.connect(sock, machineDir.resolve("memory"));
                    final long r0 = System.nanoTime();
                    final String back = flowVmm.afterKexec(vmm);
                    System.out.printf("vmm %-4d %s (%.1f ms)%n", u + 1, back, (System.nanoTime() - r0) / 1e6);
                    final String check = flowVmm.check(vmm);
                    if (check != null) {
                        System.out.printf("%s %-3d %s%n", flowVmm.checkWhat(), u + 1, check);
                    }
                    problems += flowVmm.problems();
                    Thread.sleep((long) (seconds * 1000));
                }
                final RecordChecker checker = new RecordChecker(board.memory());
                final GuestRam current = flowVmm.ram();
                for (int i = 0; i < bars.length; i++) {
                    bars[i].stop();
                    final DeviceCounters c = bars[i].counters();
                    final RecordChecker.Report r = checker.check(bars[i].window(), current::physOf);
                    System.out.printf("device   vfio%d: %d records (%d after the first update), %d faults, %d corrupt, "
                            + "longest DMA gap %.2f ms; checker: %s%n", i, c.ops(), c.ops() - before[i], c.faults(),
                            c.corrupt(), c.maxGapNanos() / 1e6, r.clean() ? "every record in place" : r);
                    problems += c.faults() + c.corrupt() > 0 || !r.clean() ? 1 : 0;
                }
                vmm.close();
                try (Role last = kernel) {
                    last.stop();
                }
                if (console) {
                    for (int k = 1; k <= updates + 1; k++) {
                        printLog("kernel " + k, machineDir.resolve("kernel" + k + ".log"));
                    }
                }
                System.out.println(problems == 0 ? "demo: ok" : "demo: " + problems + " problems (faults, corruption or changed ids)");
                machine.stop();
                return problems == 0 ? 0 : 1;
            }
        }
    }

    /** What the VMM does around each update: the same devices and checks, by flow. */
    private interface Vmm {
        /** Guest RAM, the iommufd and every device bound and attached; the line that says so. */
        String setUp(KernelClient vmm, int devices);

        /** Right before reboot(KEXEC). */
        void beforeReboot(KernelClient vmm);

        /** What the kexec line times. */
        String rebootWhat();

        /** The restarted VMM takes its state back; the line that says so. */
        String afterKexec(KernelClient vmm) throws Exception;

        /** A check after the update (the RFC's scrub), or null. */
        String check(KernelClient vmm) throws Exception;

        String checkWhat();

        /** Guest RAM as the current VMM has it. */
        GuestRam ram();

        /** Problems seen since the last call (changed ids, a failed check). */
        int problems();
    }

    /**
     * The seed RFC's VMM: guest RAM on guestmemfs, a persistent iommufd, both devices attached to its
     * IOAS; finalize before the reboot; after it, reopen the iommufd through sysfs and bind again.
     */
    private static final class RfcVmm implements Vmm {
        private final long ramBytes;
        private int[] devIds;
        private int pid;
        private GuestRam ram;
        private int problems;

        RfcVmm(final long ramBytes) {
            this.ramBytes = ramBytes;
        }

        @Override
        public String setUp(final KernelClient vmm, final int devices) {
            ram = GuestRam.create(vmm, "vm0-ram", ramBytes);
            final IommufdHandle iommufd = IommufdHandle.open(vmm);
            pid = (int) iommufd.makePersistent();
            final int ioas = iommufd.ioasAlloc();
            final List<GuestRam.Region> regions = ram.mapForDma(iommufd, ioas, 1);
            devIds = new int[devices];
            for (int i = 0; i < devices; i++) {
                final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, i);
                devIds[i] = dev.bind(iommufd);
                dev.attach(ioas);
            }
            return String.format("guest RAM /guestmemfs/vm0-ram (%s) at IOVA %s, persistent iommufd %d, devices bound "
                    + "(dev_id %s) and running", size(ramBytes), regions.size() == 1 ? "0" : "0 and 4G (q35 hole below 4 GiB)", pid,
                    ids(devIds));
        }

        @Override
        public void beforeReboot(final KernelClient vmm) {
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
        }

        @Override
        public String rebootWhat() {
            return "finalize + kexec";
        }

        @Override
        public String afterKexec(final KernelClient vmm) {
            final String node = Iommufd.persistedNode(pid);
            final IommufdHandle reopened = IommufdHandle.of(vmm, vmm.open(node, Syscall.O_RDWR));
            final int[] again = new int[devIds.length];
            for (int i = 0; i < devIds.length; i++) {
                again[i] = VfioDeviceHandle.open(vmm, i).bind(reopened);
                problems += again[i] != devIds[i] ? 1 : 0;
            }
            ram = GuestRam.open(vmm, "vm0-ram");
            return String.format("reopened %s (persistent id %d), devices rebound with dev_id %s", node, reopened.persistentId(),
                    ids(again));
        }

        @Override
        public String check(final KernelClient vmm) throws InterruptedException {
            final String scrub = awaitScrub(vmm, pid);
            problems += scrub.startsWith("ok") ? 0 : 1;
            return scrub;
        }

        @Override
        public String checkWhat() {
            return "scrub";
        }

        @Override
        public GuestRam ram() {
            return ram;
        }

        @Override
        public int problems() {
            final int p = problems;
            problems = 0;
            return p;
        }
    }

    /**
     * Linux's LUO flow: guest RAM in a sealed memfd mapped with IOMMU_IOAS_MAP_FILE, both devices
     * attached to its IOAS and the HWPT marked; a state memfd (the ids the next VMM needs, as QEMU's
     * CPR state), the RAM memfd, the iommufd and both device files preserved in the session "vm0",
     * which stays open through the kexec. No finalize: the reboot freezes the session. After it,
     * RETRIEVE_SESSION, RETRIEVE_FD of each file (the devices come back bound and attached),
     * FINISH; then everything is preserved again in a new session, for the next update.
     */
    private static final class LuoVmm implements Vmm {
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

        @Override
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

        @Override
        public void beforeReboot(final KernelClient vmm) {
            // Nothing: the reboot itself freezes and serializes the session.
        }

        @Override
        public String rebootWhat() {
            return "reboot (freeze + serialize) + kexec";
        }

        @Override
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

        @Override
        public String check(final KernelClient vmm) {
            preserve(vmm); // for the next update, the guest running
            return "state, RAM, iommufd and devices preserved again in a new session vm0";
        }

        @Override
        public String checkWhat() {
            return "session";
        }

        @Override
        public GuestRam ram() {
            return ram;
        }

        @Override
        public int problems() {
            final int p = problems;
            problems = 0;
            return p;
        }
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

    private static void printLog(final String who, final Path log) throws IOException {
        for (String line : Files.readAllLines(log)) {
            System.out.println("  " + who + " " + line);
        }
    }
}
