package org.iopersist.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommufd.persist.IommufdHandover;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.iopersist.vmm.VfioDeviceHandle;

/**
 * One machine with a VMM on it, set up as the demo does: guest RAM on guestmemfs, mapped at IOVA =
 * GPA in a persistent IOAS, every device of the machine bound and attached to it and writing and
 * verifying records in guest RAM. {@link #liveUpdate} is one update as the benches time it;
 * {@link #rebuildInFreshKernel} is what an update that kept nothing would do instead.
 *
 * <p>Device {@code i} writes a 1 MiB window at GPA {@code (1 + i)} MiB. The devices together write
 * {@link #RECORDS_PER_SECOND}, however many there are: real devices do not take a host CPU, and
 * this machine has two.
 */
final class UpdateRig implements AutoCloseable {
    static final long MIB = 1L << 20;
    static final long GIB = 1L << 30;
    static final long RECORDS_PER_SECOND = 20_000;
    private static final String RAM = "vm0-ram";

    /** The phases of one live update, in nanoseconds. Blackout is finalize to devices rebound. */
    /**
     * The phases of one update, and the scrub that follows it, off the blackout: the kernel's
     * leaf-by-leaf check of the adopted tables after the rebind ({@code scrubNanos} as the kernel
     * reports it; {@code scrub} its sysfs line).
     */
    record Update(long finalizeNanos, long kexecNanos, long bootNanos, long reopenNanos, long scrubNanos, String scrub,
            long preserveNanos, long blobBytes) {
        long blackoutNanos() {
            return finalizeNanos + kexecNanos + bootNanos + reopenNanos;
        }
    }

    /** What the devices saw over the whole run. */
    record Dma(long faults, long corrupt, boolean recordsInPlace, double longestGapMs) {
    }

    /**
     * How the VMM hands its state over: the RFC's (guestmemfs RAM, a persistent iommufd, finalize,
     * sysfs reopen and rebind) or LUO's (a sealed memfd, the HWPT marked, memfd, iommufd and device
     * files preserved in a session; no finalize, the reboot freezes; retrieve by token, finish).
     */
    enum Flow { RFC, LUO }

    private static final long MEMFD_TOKEN = 1;
    private static final long IOMMUFD_TOKEN = 2;
    private static final long CDEV_TOKEN = 16;

    private final Path work;
    private final Flow flow;
    private final Machine machine;
    private final long guestBytes;
    private final int areas;
    private final String cmdline;
    private final DeviceBar[] bars;
    private Kernel kernel;
    private SyscallServer server;
    private KernelClient vmm;
    private IommufdHandle iommufd;
    private GuestRam ram;
    private String node;
    private int pid;
    private int ioas;
    private static final java.util.regex.Pattern SCRUB_MS = java.util.regex.Pattern.compile(" in ([0-9.]+) ms");
    private int boots;

    private UpdateRig(final Path work, final Machine machine, final long guestBytes, final int areas,
            final long carveOutBytes, final Flow flow, final String extraCmdline) {
        this.work = work;
        this.flow = flow;
        this.machine = machine;
        this.guestBytes = guestBytes;
        this.areas = areas;
        this.cmdline = (flow == Flow.LUO ? "liveupdate.finish_timeout=0"
                : "guestmemfs=" + (carveOutBytes / MIB) + "M liveupdate.finish_timeout=0") + extraCmdline;
        this.bars = new DeviceBar[machine.devices().size()];
    }

    /**
     * A guestmemfs carve-out for a guest of {@code guestBytes}, with room for guestmemfs's own
     * layout (bitmap and extent table) and, with {@code alignedGibs}, a GiB of slack so that every
     * GiB of the file can get a 1 GiB-aligned GiB of memory (and so a 1 GiB leaf).
     */
    static long carveOutBytes(final long guestBytes, final boolean alignedGibs) {
        return guestBytes + (alignedGibs ? GIB : 64 * MIB);
    }

    /**
     * The machine's memory for a carve-out of {@code carveOutBytes}: the carve-out, the kernel's
     * own memory, and room for VT-d tables when the leaves are 4 KiB (8 bytes per 4 KiB of guest).
     */
    static long machineBytes(final long carveOutBytes, final boolean smallLeaves) {
        final long tables = smallLeaves ? carveOutBytes / 512 + carveOutBytes / (512 * 512) : 0;
        return carveOutBytes + GIB + ((tables + GIB - 1) & -GIB);
    }

    /**
     * Powers on {@code config} under {@code work}, boots with a guestmemfs carve-out of
     * {@code carveOutBytes}, and sets the VMM up with DMA running.
     */
    static UpdateRig start(final Path work, final MachineConfig config, final long guestBytes, final int areas,
            final long carveOutBytes) throws IOException {
        return start(work, config, guestBytes, areas, carveOutBytes, Flow.RFC, "");
    }

    /** As {@link #start}, the VMM following {@code flow} (LUO: guest RAM in a memfd, no carve-out). */
    static UpdateRig start(final Path work, final MachineConfig config, final long guestBytes, final int areas,
            final long carveOutBytes, final Flow flow) throws IOException {
        return start(work, config, guestBytes, areas, carveOutBytes, flow, "");
    }

    /** As above, every kernel booted with {@code extraCmdline} appended (" page_poison=on"). */
    static UpdateRig start(final Path work, final MachineConfig config, final long guestBytes, final int areas,
            final long carveOutBytes, final Flow flow, final String extraCmdline) throws IOException {
        final Machine machine = Machine.create(work.resolve("m"), config).start();
        final UpdateRig rig = new UpdateRig(work, machine, guestBytes, areas, carveOutBytes, flow, extraCmdline);
        try {
            rig.setUp();
            return rig;
        } catch (IOException | RuntimeException e) {
            rig.close();
            throw e;
        }
    }

    private void setUp() throws IOException {
        Files.writeString(work.resolve("m").resolve("boot").resolve("cmdline"), cmdline);
        kernel = Kernel.boot(machine.board());
        connect();
        ram = flow == Flow.LUO ? GuestRam.createMemfd(vmm, RAM, guestBytes) : GuestRam.create(vmm, RAM, guestBytes);
        iommufd = IommufdHandle.open(vmm);
        if (flow == Flow.RFC) {
            pid = (int) iommufd.makePersistent();
            node = Iommufd.persistedNode(pid);
        }
        ioas = iommufd.ioasAlloc();
        final java.util.Set<Integer> hwpts = new java.util.TreeSet<>();
        final int[] devFds = new int[bars.length];
        for (int i = 0; i < bars.length; i++) {
            final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, i);
            dev.bind(iommufd);
            hwpts.add(dev.attach(ioas));
            devFds[i] = dev.fd();
        }
        ram.mapForDma(iommufd, ioas, areas);
        if (flow == Flow.LUO) {
            for (int h : hwpts) {
                iommufd.markPreserve(h, 0x1000 + h);
            }
            cdevFds = devFds;
            preserve();
        }
        final long pace = 1_000_000_000L * bars.length / RECORDS_PER_SECOND;
        for (int i = 0; i < bars.length; i++) {
            bars[i] = new DeviceBar(machine.board().deviceBar(i));
            bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i).withPace(pace));
        }
        for (DeviceBar bar : bars) {
            bar.awaitSeq(50);
        }
    }

    private int[] cdevFds;
    private LiveupdateHandle luo;

    /** LUO: a session with the RAM memfd, the iommufd and every device file; it stays open through the kexec. */
    private long preserve() {
        final long t0 = System.nanoTime();
        if (luo == null) {
            luo = LiveupdateHandle.open(vmm);
        }
        final SessionHandle session = luo.createSession(RAM);
        session.preserveFd(ram.fd(), MEMFD_TOKEN);
        session.preserveFd(iommufd.fd(), IOMMUFD_TOKEN);
        for (int i = 0; i < cdevFds.length; i++) {
            session.preserveFd(cdevFds[i], CDEV_TOKEN + i);
        }
        return System.nanoTime() - t0;
    }

    private void connect() throws IOException {
        server = kernel.serve(work.resolve("k" + boots++ + ".sock"));
        vmm = KernelClient.connect(server.path(), work.resolve("m").resolve("memory"));
    }

    Machine machine() {
        return machine;
    }

    Kernel kernel() {
        return kernel;
    }

    GuestRam ram() {
        return ram;
    }

    int devices() {
        return bars.length;
    }

    /** The VMM's persistent iommufd (the one reopened by the last update) and its IOAS. */
    IommufdHandle iommufd() {
        return iommufd;
    }

    int ioas() {
        return ioas;
    }

    /** Every device restarted back to back, with no pace (the soak's devices), a new generation each. */
    void unpace() {
        for (int i = 0; i < bars.length; i++) {
            bars[i].stop();
            bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 100 + i).withPace(0));
        }
        for (DeviceBar bar : bars) {
            bar.awaitSeq(50);
        }
    }

    /**
     * One live update as a VMM does it: finalize, kexec_load and reboot(KEXEC); the next kernel
     * boots from the handover; the restarted VMM reopens its iommufd through sysfs, binds every
     * device again and reopens guest RAM.
     */
    Update liveUpdate() throws IOException, InterruptedException {
        return liveUpdate(0);
    }

    /**
     * As {@link #liveUpdate()}; first, between the kexec and the boot and not timed, the next boot's
     * validation runs {@code dryRuns} times ({@link Kernel#validateHandover}). A warm-up: the loops
     * whose trip count grows with the guest then run compiled in the timed boots, as a real
     * kernel's do, where a couple of warm-up updates would leave them to the interpreter.
     */
    Update liveUpdate(final int dryRuns) throws IOException, InterruptedException {
        if (flow == Flow.LUO) {
            return liveUpdateLuo(dryRuns);
        }
        final Kernel old = kernel;
        final long t0 = System.nanoTime();
        vmm.writeFile("/sys/kernel/kho/finalize", "1");
        final long t1 = System.nanoTime();
        vmm.kexecLoad(cmdline);
        vmm.rebootKexec();
        if (!old.liveUpdate().awaitKexec(60, TimeUnit.SECONDS)) {
            throw new IllegalStateException("update " + boots + ": the kexec did not happen");
        }
        final long t2 = System.nanoTime();
        final long blob = blobBytes(IommufdHandover.NAME);
        dryRuns(dryRuns);
        final long t2b = System.nanoTime();
        kernel = Kernel.boot(machine.board());
        final long t3 = System.nanoTime();
        if (kernel.bootKind() != Kernel.BootKind.LIVE_UPDATE) {
            throw new IllegalStateException("update " + boots + " cold-booted: " + kernel.coldBootReason());
        }
        vmm.close();
        connect();
        iommufd = IommufdHandle.of(vmm, vmm.open(node, Syscall.O_RDWR));
        for (int i = 0; i < bars.length; i++) {
            VfioDeviceHandle.open(vmm, i).bind(iommufd);
        }
        ram = GuestRam.open(vmm, RAM);
        final long t4 = System.nanoTime();
        // The scrub runs in the background once the devices are rebound; it is not in the blackout,
        // but the next update waits for it so that it never competes with a timed phase.
        final String scrub = kernel.persistedContexts().awaitScrub(pid, 300, TimeUnit.SECONDS);
        if (scrub == null || !scrub.startsWith("ok")) {
            throw new IllegalStateException("update " + boots + ": scrub " + scrub);
        }
        final java.util.regex.Matcher m = SCRUB_MS.matcher(scrub);
        final long scrubNanos = m.find() ? (long) (Double.parseDouble(m.group(1)) * 1e6) : -1;
        return new Update(t1 - t0, t2 - t1, t3 - t2b, t4 - t3, scrubNanos, scrub, 0, blob);
    }

    /**
     * One live update the LUO way: kexec_load and reboot(KEXEC), which freezes and serializes the
     * session (no finalize); the next kernel boots from the handover; the restarted VMM retrieves
     * its session, device files (bound and attached already), iommufd and RAM memfd, and finishes.
     * Then, off the blackout, it preserves them in a new session for the next update.
     */
    /** The next boot's validation, {@code n} times, as a dry run: a warm-up update's, so never in a timed phase. */
    private void dryRuns(final int n) {
        for (int i = 0; i < n; i++) {
            if (!Kernel.validateHandover(machine.board()).restoring()) {
                throw new IllegalStateException("update " + boots + ": the dry run would cold-boot");
            }
        }
    }

    private Update liveUpdateLuo(final int dryRuns) throws IOException, InterruptedException {
        final Kernel old = kernel;
        final long t0 = System.nanoTime();
        vmm.kexecLoad(cmdline);
        vmm.rebootKexec();
        if (!old.liveUpdate().awaitKexec(60, TimeUnit.SECONDS)) {
            throw new IllegalStateException("update " + boots + ": the kexec did not happen");
        }
        final long t1 = System.nanoTime();
        final long blob = blobBytes("LUO");
        dryRuns(dryRuns);
        final long t1b = System.nanoTime();
        kernel = Kernel.boot(machine.board());
        final long t2 = System.nanoTime();
        if (kernel.bootKind() != Kernel.BootKind.LIVE_UPDATE) {
            throw new IllegalStateException("update " + boots + " cold-booted: " + kernel.coldBootReason());
        }
        vmm.close();
        luo = null;
        connect();
        luo = LiveupdateHandle.open(vmm);
        final SessionHandle s = luo.retrieveSession(RAM);
        for (int i = 0; i < cdevFds.length; i++) {
            cdevFds[i] = s.retrieveFd(CDEV_TOKEN + i);
        }
        iommufd = IommufdHandle.of(vmm, s.retrieveFd(IOMMUFD_TOKEN));
        ram = GuestRam.ofMemfd(vmm, s.retrieveFd(MEMFD_TOKEN));
        s.finish();
        final long t3 = System.nanoTime();
        return new Update(0, t1 - t0, t2 - t1b, t3 - t2, 0, "none", preserve(), blob);
    }

    /**
     * The size of the flow's blob in the handover just written, read between the kexec and the
     * boot (off the timed phases): after the next kernel's finish its frames are free and reused.
     */
    private long blobBytes(final String name) {
        return Handovers.subtree(machine.board(), name).totalSize();
    }

    /** Stops every device and checks the records each left in guest RAM. */
    Dma stopDevices() {
        long faults = 0;
        long corrupt = 0;
        long gap = 0;
        boolean clean = true;
        final RecordChecker checker = new RecordChecker(machine.board().memory());
        final GuestRam current = ram;
        for (DeviceBar bar : bars) {
            bar.stop();
            final DeviceCounters c = bar.counters();
            faults += c.faults();
            corrupt += c.corrupt();
            gap = Math.max(gap, c.maxGapNanos());
            clean &= checker.check(bar.window(), current::physOf).clean();
        }
        return new Dma(faults, corrupt, clean, gap / 1e6);
    }

    /**
     * With the devices stopped: what a VMM pays when the update kept nothing. A kexec without a
     * finalized handover, so the next kernel cold-boots; the VMM creates guest RAM again, opens a
     * new iommufd and binds and attaches every device (not timed), then maps all of guest RAM
     * (timed: pin and map). Returns nanoseconds.
     */
    long rebuildInFreshKernel() throws IOException, InterruptedException {
        final Kernel old = kernel;
        vmm.kexecLoad(cmdline);
        vmm.rebootKexec();
        if (!old.liveUpdate().awaitKexec(60, TimeUnit.SECONDS)) {
            throw new IllegalStateException("the kexec did not happen");
        }
        vmm.close();
        kernel = Kernel.boot(machine.board());
        if (kernel.bootKind() != Kernel.BootKind.COLD) {
            throw new IllegalStateException("a kexec without a finalized handover booted from a handover");
        }
        connect();
        ram = GuestRam.create(vmm, RAM, guestBytes);
        iommufd = IommufdHandle.open(vmm);
        final int ioas = iommufd.ioasAlloc();
        for (int i = 0; i < bars.length; i++) {
            final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, i);
            dev.bind(iommufd);
            dev.attach(ioas);
        }
        final long t0 = System.nanoTime();
        ram.mapForDma(iommufd, ioas, areas);
        return System.nanoTime() - t0;
    }

    /**
     * With the devices stopped, in the current (warm) kernel: maps all of guest RAM into a fresh IOAS
     * and unmaps it again, {@code times} times. Returns the p50 of the maps in ms.
     */
    double remapWarm(final int times) {
        final org.HdrHistogram.Histogram h = new org.HdrHistogram.Histogram(3);
        final int ioas = iommufd.ioasAlloc();
        for (int k = 0; k < times; k++) {
            final long r0 = System.nanoTime();
            ram.mapForDma(iommufd, ioas, areas);
            h.recordValue(System.nanoTime() - r0);
            iommufd.unmap(ioas, 0, -1L);
        }
        return h.getValueAtPercentile(50) / 1e6;
    }

    @Override
    public void close() {
        try {
            if (vmm != null) {
                vmm.close();
            }
            if (server != null) {
                server.close();
            }
        } finally {
            machine.close();
        }
    }
}
