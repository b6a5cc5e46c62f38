package org.iopersist.kernel.init;

import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import org.iopersist.hw.Board;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.fs.DevNull;
import org.iopersist.kernel.fs.Permission;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.SysfsAttribute;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.fs.Vfs;
import org.iopersist.kernel.guestmemfs.Guestmemfs;
import org.iopersist.kernel.guestmemfs.GuestmemfsLiveUpdate;
import org.iopersist.kernel.guestmemfs.GuestmemfsLuoHandler;
import org.iopersist.kernel.guestmemfs.GuestmemfsMount;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.intel.IntelIommuDriver;
import org.iopersist.kernel.iommu.intel.IntelIommuLiveUpdate;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdFile;
import org.iopersist.kernel.iommufd.MockIommu;
import org.iopersist.kernel.iommufd.persist.IommufdLiveUpdate;
import org.iopersist.kernel.iommufd.persist.IommufdLuoHandler;
import org.iopersist.kernel.liveupdate.IncomingBoot;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.liveupdate.luo.Luo;
import org.iopersist.kernel.liveupdate.luo.LuoFileHandler;
import org.iopersist.kernel.liveupdate.luo.MemfdLuoHandler;
import org.iopersist.kernel.mm.EarlyFrames;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.PhysRange;
import org.iopersist.kernel.syscall.LiveUpdateControl;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.kernel.syscall.Syscalls;
import org.iopersist.kernel.vfio.VfioDevice;
import org.iopersist.kernel.vfio.VfioLuoHandler;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Liveupdate;
import org.iopersist.uapi.Vfio;

/**
 * One boot of the host kernel on a machine. Everything it knows comes from the board: the
 * platform description (as firmware tables), the boot record in {@code boot/}, and physical
 * memory. No state passes between two {@code Kernel} objects except through those.
 *
 * <p>Boot order matters: early frames come from the KHO scratch region only; every remapping unit
 * is brought up with all devices blocked and its caches invalidated; only then does the frame
 * allocator open, because until then a device left running by an earlier kernel could be writing
 * into any frame outside scratch.
 */
public final class Kernel {
    public static final String CMDLINE_FILE = "cmdline";
    public static final String SETUP_DATA_FILE = "setup_data";
    /** Below 1 MiB is firmware's, as on x86. */
    public static final PhysRange LOW_MEMORY = new PhysRange(0, 1L << 20);
    private static final long SZ_2M = 1L << 21;
    /** Char major of VFIO device cdevs (dynamic in Linux; fixed here so sysfs reads are stable). */
    public static final int VFIO_CDEV_MAJOR = 511;

    public enum BootKind { COLD, LIVE_UPDATE }

    private final Board board;
    private final KernelLog log;
    private final BootParams params;
    private final PhysRange scratch;
    private final PhysRange guestmemfs;
    private final FrameAllocator frames;
    private final IntelIommuDriver intel;
    private final IommuCore iommu;
    private final BootKind kind;
    private final String coldBootReason;
    private final Sysfs sysfs = new Sysfs();
    private final IommufdLiveUpdate persisted;
    private final Luo luo;
    private final FrameRefs refs;
    private final Vfs vfs;
    private final Syscalls syscalls;
    private volatile String stagedCmdline;
    private final LiveUpdate liveUpdate;
    private final Guestmemfs guestmemfsFs;
    private final List<SyscallServer> servers = new CopyOnWriteArrayList<>();

    /** The preserving subsystems, in the order the live-update core runs their steps. */
    private record Handlers(IntelIommuLiveUpdate vtd, GuestmemfsLiveUpdate guestmemfs, IommufdLiveUpdate iommufd, Luo luo,
            List<VfioDevice> vfio) {
        List<LiveUpdateHandler<?>> inOrder() {
            return List.of(vtd, guestmemfs, iommufd, luo);
        }
    }

    private Kernel(final Board board, final KernelLog log, final BootParams params, final PhysRange scratch,
            final PhysRange guestmemfs, final FrameAllocator frames, final IntelIommuDriver intel, final IommuCore iommu,
            final FrameRefs refs, final IncomingBoot incoming, final Handlers handlers) {
        this.board = board;
        this.log = log;
        this.params = params;
        this.scratch = scratch;
        this.guestmemfs = guestmemfs;
        this.frames = frames;
        this.intel = intel;
        this.iommu = iommu;
        this.kind = incoming.restoring() ? BootKind.LIVE_UPDATE : BootKind.COLD;
        this.coldBootReason = incoming.coldReason();
        this.refs = refs;
        this.persisted = handlers.iommufd();
        this.vfs = new Vfs(sysfs);
        // The modes Linux gives the nodes: iommufd's misc device 0660, its /dev/vfio/vfio 0666, VFIO
        // device cdevs (no devnode mode) 0600; all root's until an administrator hands them out.
        vfs.registerDevice(Iommufd.DEV_PATH, Permission.root(0660), (p, path, flags) -> new IommufdFile(IommufdCtx.open(board.memory(),
                refs, iommu, persisted.contexts(), p.uid())));
        vfs.registerDevice(Vfio.CONTAINER_PATH, Permission.root(0666), (p, path, flags) -> new IommufdFile(
                IommufdCtx.openVfioContainer(board.memory(), refs, iommu, persisted.contexts(), p.uid())));
        final List<IommuDevice> devs = iommu.devices();
        for (int i = 0; i < devs.size(); i++) {
            final VfioDevice vd = handlers.vfio().get(i);
            vfs.registerDevice(vd.cdevPath(), Permission.root(0600), (p, path, flags) -> vd.open());
            final String dir = Vfio.vfioDevSysfsDir(devs.get(i).bdf().toString(), i);
            sysfs.mkdirs(dir);
            final int minor = i;
            sysfs.add(dir, SysfsAttribute.readOnly("dev", () -> VFIO_CDEV_MAJOR + ":" + minor));
            sysfs.add(org.iopersist.uapi.Vfio.pciSysfsDir(devs.get(i).bdf().toString()), SysfsAttribute.readOnly("iommu_unit",
                    () -> Integer.toString(vd.device().unit())));
        }
        this.syscalls = new Syscalls(board.memory(), frames, refs, vfs, new Control());
        if (handlers.guestmemfs().fs() == null && guestmemfs.size() > 0) {
            handlers.guestmemfs().attach(Guestmemfs.format(board.memory(), guestmemfs, log));
        }
        this.guestmemfsFs = handlers.guestmemfs().fs();
        if (guestmemfsFs != null) {
            vfs.mount(GuestmemfsMount.MOUNT_POINT, new GuestmemfsMount(guestmemfsFs, board.memory()));
        }
        this.liveUpdate = new LiveUpdate(board, frames, log, scratch, incoming.restoring() ? incoming.handover().kho() : null);
        liveUpdate.register(handlers.vtd());
        if (guestmemfsFs != null) {
            liveUpdate.register(handlers.guestmemfs()); // without guestmemfs= the handover has no guestmemfs node
        }
        liveUpdate.register(persisted);
        this.luo = handlers.luo();
        liveUpdate.register(luo); // last: its file handlers read the plans of all the others
        vfs.registerDevice(Liveupdate.DEV_PATH, (p, path, flags) -> luo.openDevice(p));
        vfs.registerDevice(DevNull.PATH, Permission.root(0666), (p, path, flags) -> new DevNull());
        liveUpdate.onKexec(handedOver -> stopServers());
        persisted.publish(sysfs, (pid, ctx) -> vfs.registerDevice(Iommufd.persistedNode(pid),
                new Permission(0600, ctx.ownerUid(), 0), // its owner's, as the context was
                (p, path, flags) -> new IommufdFile(persisted.reopen(pid, p))));
        populateSysfs();
        liveUpdate.populateSysfs(sysfs);
    }

    private void populateSysfs() {
        sysfs.mkdirs("/sys/kernel/mm/frames");
        sysfs.add("/sys/kernel/mm/frames", SysfsAttribute.readOnly("total", () -> Long.toString(frames.stats().totalFrames())));
        sysfs.add("/sys/kernel/mm/frames", SysfsAttribute.readOnly("free", () -> Long.toString(frames.stats().freeFrames())));
        sysfs.add("/sys/kernel/mm/frames", SysfsAttribute.readOnly("reserved", () -> Long.toString(frames.stats().reservedFrames())));
        sysfs.add("/sys/kernel/mm/frames", SysfsAttribute.readOnly("allocated", () -> Long.toString(frames.stats().allocatedFrames())));
        sysfs.add("/sys/kernel/mm/frames", SysfsAttribute.readOnly("poison_violations",
                () -> Long.toString(frames.stats().poisonViolations())));
        sysfs.mkdirs("/sys/kernel/boot");
        sysfs.add("/sys/kernel/boot", SysfsAttribute.readOnly("kind", () -> kind.name().toLowerCase(Locale.ROOT)));
        sysfs.add("/sys/kernel/boot", SysfsAttribute.readOnly("cold_boot_reason", () -> coldBootReason == null ? "" : coldBootReason));
        sysfs.add("/sys/kernel/boot", SysfsAttribute.readOnly("cmdline", params::cmdline));
    }

    /** kexec_load stages the next kernel's command line; reboot(KEXEC) ends this boot with it. */
    private final class Control implements LiveUpdateControl {
        @Override
        public void kexecLoad(final UserProcess caller, final String cmdline) {
            Kernel.this.kexecLoad(caller, cmdline);
        }

        @Override
        public void rebootKexec(final UserProcess caller) {
            if (caller.uid() != 0) {
                throw new KernelException(Errno.EPERM, "reboot needs uid 0");
            }
            kexec();
        }
    }

    /**
     * reboot(LINUX_REBOOT_CMD_KEXEC): EINVAL without a kexec_load first. Writes the boot record,
     * blocks what is not preserved, and cuts every process off without running a release, as a
     * kexec does. In one JVM the caller then boots the next kernel on the same board.
     */
    public void kexec() {
        final String next = stagedCmdline;
        if (next == null) {
            throw new KernelException(Errno.EINVAL, "reboot(KEXEC) with no kernel loaded");
        }
        liveUpdate.kexec(next);
    }

    private void stopServers() {
        final List<SyscallServer> all = List.copyOf(servers);
        for (SyscallServer s : all) {
            s.cutOff(); // now, before the kexec returns: no release may run on this kernel any more
        }
        // The caller may be a syscall worker of one of these servers: join them from elsewhere, and
        // only once the boot record is written, so that no process sees its connection end (its
        // reboot "return") before the next kernel's record is whole.
        Thread.ofPlatform().name("kexec-stop").start(() -> {
            try {
                liveUpdate.awaitKexec(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            for (SyscallServer s : all) {
                s.stop(false);
            }
        });
    }

    /** kexec_load(2) on behalf of {@code caller}: stages the next command line; EPERM unless root. */
    public void kexecLoad(final UserProcess caller, final String cmdline) {
        if (caller.uid() != 0) {
            throw new KernelException(Errno.EPERM, "kexec_load needs uid 0");
        }
        stagedCmdline = cmdline;
        log.info("kexec: staged next kernel, command line \"%s\"", cmdline);
    }

    /** Serves processes on a Unix socket at {@code socket}; the caller stops the server. */
    public SyscallServer serve(final Path socket) throws IOException {
        if (liveUpdate.state() == LiveUpdate.State.GONE) {
            throw new IllegalStateException("this kernel has kexec'd");
        }
        liveUpdate.consumeBootRecord(); // processes may change what the handover describes from now on
        final SyscallServer server = new SyscallServer(socket, syscalls, log::info);
        servers.add(server);
        return server;
    }

    /** The Live Update Orchestrator: /dev/liveupdate and its sessions. */
    public Luo luo() {
        return luo;
    }

    /**
     * The books now ({@link Accounting}): what this kernel has handed out, and whether each process
     * of every server is charged what its contexts pin.
     */
    public Accounting accounting() {
        final List<UserProcess> processes = new java.util.ArrayList<>();
        for (SyscallServer s : servers) {
            processes.addAll(s.processes());
        }
        return Accounting.of(this, processes);
    }

    public IommufdLiveUpdate persistedContexts() {
        return persisted;
    }

    /** The guestmemfs filesystem, or null without {@code guestmemfs=}. */
    public Guestmemfs guestmemfs() {
        return guestmemfsFs;
    }

    public LiveUpdate liveUpdate() {
        return liveUpdate;
    }

    public Sysfs sysfs() {
        return sysfs;
    }

    public Vfs vfs() {
        return vfs;
    }

    public Syscalls syscalls() {
        return syscalls;
    }

    public FrameRefs frameRefs() {
        return refs;
    }

    public static Kernel boot(final Board board) {
        return boot(board, null);
    }

    /**
     * Boots on {@code board}; {@code consoleOrNull} sees the log as it is written. A handover in the
     * boot record is validated whole ({@link IncomingBoot}); any failure means a cold boot with
     * every device blocked, never a partial one.
     */
    public static Kernel boot(final Board board, final Consumer<String> consoleOrNull) {
        return boot(board, consoleOrNull, List.of());
    }

    /**
     * As {@link #boot(Board, Consumer)}, with file handlers of modules loaded before the live-update
     * core validates (each {@code liveupdate_register_file_handler}s at its init, as a built-in
     * handler does): {@code luoModules} make them from the orchestrator.
     */
    public static Kernel boot(final Board board, final Consumer<String> consoleOrNull,
            final List<java.util.function.Function<Luo, LuoFileHandler>> luoModules) {
        final KernelLog log = new KernelLog(consoleOrNull);
        final String cmdline = readBootFile(board, CMDLINE_FILE);
        final BootParams params = BootParams.parse(cmdline == null ? "" : cmdline);
        log.info("Command line: %s", params.cmdline());
        if (!params.unknown().isEmpty()) {
            log.info("Unknown kernel command line parameters \"%s\", will be passed to user space.",
                    String.join(" ", params.unknown()));
        }
        for (String bad : params.malformed()) {
            log.info("Malformed kernel command line parameter %s, default kept", bad);
        }
        final long memSize = board.memory().size();
        log.info("Memory: %d MiB, %d remapping units, %d devices", memSize >> 20, board.config().units().size(),
                board.config().devices().size());

        final FrameAllocator frames = new FrameAllocator(board.memory(), memSize, params.pagePoison(), new FaultInjection(log::info));
        final IntelIommuDriver intel = new IntelIommuDriver(board, frames, log);
        final IommuCore iommu = new IommuCore(intel, log);
        if (params.iommufdSelftest()) {
            new MockIommu(log, frames.faults()).register(iommu); // iommufd_test_init: the mock IOMMU's bus
            log.info("iommufd: selftest interface on (IOMMU_TEST_CMD, mock IOMMU)");
        }
        final FrameRefs refs = new FrameRefs(frames);
        final Handlers handlers = handlers(board, params, memSize, frames, intel, iommu, refs, log, luoModules);

        final org.iopersist.kernel.liveupdate.Breakpoint breakpoint = new org.iopersist.kernel.liveupdate.Breakpoint(
                params.breakAt(), log);
        final IncomingBoot incoming = validateBootRecord(board, params, handlers, log);
        if (incoming.restoring()) {
            breakpoint.at("validate");
        }
        final PhysRange scratch = incoming.scratch(new PhysRange(LOW_MEMORY.end(), params.khoScratchSize()));
        if (scratch.end() > memSize) {
            throw new KernelException(Errno.ENOMEM, "KHO scratch " + scratch + " does not fit in memory");
        }
        final PhysRange guestmemfs = carveGuestmemfs(params, memSize, scratch, log);
        frames.reserve(LOW_MEMORY, "firmware");
        frames.reserve(scratch, "kho scratch");
        if (guestmemfs.size() > 0) {
            frames.reserve(guestmemfs, "guestmemfs");
        }
        if (incoming.restoring()) {
            incoming.reserve(frames);
            incoming.adopt(breakpoint);
        } else {
            intel.init(new EarlyFrames(board.memory(), scratch, scratch.start()));
            log.info("DMAR: cold boot (%s): every device blocked", incoming.coldReason());
        }

        frames.open();
        intel.lateInit();
        final FrameAllocator.Stats s = frames.stats();
        log.info("Memory: %d frames free, %d reserved%s", s.freeFrames(), s.reservedFrames(),
                params.pagePoison() ? ", page poisoning on" : "");
        final Kernel k = new Kernel(board, log, params, scratch, guestmemfs, frames, intel, iommu, refs, incoming, handlers);
        k.liveUpdate.breakpoint(breakpoint);
        k.liveUpdate.startFinishTimer(params.finishTimeoutSec());
        return k;
    }

    /** The boot record's handover, validated whole by {@code handlers}, or the reason the boot is cold. */
    private static IncomingBoot validateBootRecord(final Board board, final BootParams params, final Handlers handlers,
            final KernelLog log) {
        final byte[] setupData = readBootBytes(board, SETUP_DATA_FILE);
        return setupData != null && Files.exists(board.bootDirectory().resolve(LiveUpdate.SETUP_DATA_USED))
                ? IncomingBoot.cold(handlers.inOrder(), "the handover in the boot record was used by an earlier boot ("
                        + LiveUpdate.SETUP_DATA_USED + ")", log)
                : IncomingBoot.validate(board.memory(), setupData, params.kho(), handlers.inOrder(), log);
    }

    /**
     * What the next boot would make of the handover in {@code board}'s boot record, without
     * booting: the same validation, in the same order, reading memory and registers only (a dry
     * run, as one asks before a kexec whether it would restore). The result says
     * {@link IncomingBoot#restoring()} or gives the cold-boot reason.
     */
    public static IncomingBoot validateHandover(final Board board) {
        final KernelLog log = new KernelLog(null);
        final String cmdline = readBootFile(board, CMDLINE_FILE);
        final BootParams params = BootParams.parse(cmdline == null ? "" : cmdline);
        final long memSize = board.memory().size();
        final FrameAllocator frames = new FrameAllocator(board.memory(), memSize, false);
        final IntelIommuDriver intel = new IntelIommuDriver(board, frames, log);
        final IommuCore iommu = new IommuCore(intel, log);
        final Handlers handlers = handlers(board, params, memSize, frames, intel, iommu, new FrameRefs(frames), log, List.of());
        return validateBootRecord(board, params, handlers, log);
    }

    /** Every live-update handler of a boot, in the order the core runs them. */
    private static Handlers handlers(final Board board, final BootParams params, final long memSize, final FrameAllocator frames,
            final IntelIommuDriver intel, final IommuCore iommu, final FrameRefs refs, final KernelLog log,
            final List<java.util.function.Function<Luo, LuoFileHandler>> luoModules) {
        final IntelIommuLiveUpdate vtd = new IntelIommuLiveUpdate(intel, iommu, log);
        final GuestmemfsLiveUpdate gmfs = new GuestmemfsLiveUpdate(board.memory(),
                handedScratch -> carveGuestmemfs(params, memSize, handedScratch, null), log);
        final IommufdLiveUpdate rfc = new IommufdLiveUpdate(log, board.memory(), refs, iommu, gmfs, vtd);
        final List<VfioDevice> vfio = new java.util.ArrayList<>();
        for (int i = 0; i < iommu.devices().size(); i++) {
            vfio.add(new VfioDevice(i, iommu.devices().get(i))); // cdevs in BDF order, the same N every boot
        }
        // The orchestrator's file handlers, in dependency order: a file's record follows those it names.
        final Luo luo = new Luo(log);
        luo.register(new MemfdLuoHandler(luo, board.memory(), frames, refs));
        luo.register(new GuestmemfsLuoHandler(gmfs));
        luo.register(new IommufdLuoHandler(log, board.memory(), refs, iommu, rfc, vtd));
        luo.register(new VfioLuoHandler(log, iommu, vfio));
        for (java.util.function.Function<Luo, LuoFileHandler> module : luoModules) {
            luo.register(module.apply(luo));
        }
        return new Handlers(vtd, gmfs, rfc, luo, List.copyOf(vfio));
    }

    private static PhysRange carveGuestmemfs(final BootParams params, final long memSize, final PhysRange scratch,
            final KernelLog log) {
        if (params.guestmemfsSize() == 0) {
            return new PhysRange(0, 0);
        }
        final long size = (params.guestmemfsSize() + SZ_2M - 1) & -SZ_2M;
        final long start = (memSize - size) & -SZ_2M;
        if (size >= memSize || start < scratch.end()) {
            if (log != null) {
                log.info("guestmemfs: %d MiB does not fit above the scratch region; disabled", size >> 20);
            }
            return new PhysRange(0, 0);
        }
        final PhysRange r = new PhysRange(start, size);
        if (log != null) {
            log.info("guestmemfs: carve-out %s", r);
        }
        return r;
    }

    private static String readBootFile(final Board board, final String name) {
        final byte[] b = readBootBytes(board, name);
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    private static byte[] readBootBytes(final Board board, final String name) {
        final Path p = board.bootDirectory().resolve(name);
        try {
            return Files.exists(p) ? Files.readAllBytes(p) : null;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read boot record " + p + ": " + e.getMessage(), e);
        }
    }

    public Board board() {
        return board;
    }

    public KernelLog log() {
        return log;
    }

    public BootParams params() {
        return params;
    }

    public FrameAllocator frames() {
        return frames;
    }

    /** This boot's fault injection ({@code /proc/thread-self/fail-nth}). */
    public FaultInjection faults() {
        return frames.faults();
    }

    public IommuCore iommu() {
        return iommu;
    }

    public IntelIommuDriver intelIommu() {
        return intel;
    }

    public BootKind bootKind() {
        return kind;
    }

    /** Why this boot was cold, or null after a live update. */
    public String coldBootReason() {
        return coldBootReason;
    }

    public PhysRange khoScratch() {
        return scratch;
    }

    /** The guestmemfs carve-out (size 0 if none). */
    public PhysRange guestmemfsRegion() {
        return guestmemfs;
    }
}
