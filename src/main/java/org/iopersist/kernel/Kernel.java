package org.iopersist.kernel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.iopersist.hw.Board;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.iommu.RestoredDomain;
import org.iopersist.kernel.iommu.intel.IntelIommuPreservation;
import org.iopersist.kernel.kho.PreservedMemoryMap;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.kernel.iommu.intel.IntelIommuDriver;
import org.iopersist.kernel.kho.HandoverFormatException;
import org.iopersist.kernel.kho.KhoIncoming;
import org.iopersist.kernel.kho.SetupData;
import org.iopersist.kernel.mm.EarlyFrames;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.kernel.mm.PhysRange;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdFile;
import org.iopersist.kernel.syscall.FrameRefs;
import org.iopersist.kernel.syscall.LiveUpdateControl;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.kernel.syscall.Syscalls;
import org.iopersist.kernel.syscall.UserProcess;
import org.iopersist.kernel.syscall.Vfs;
import org.iopersist.kernel.sysfs.Sysfs;
import org.iopersist.kernel.sysfs.SysfsAttribute;

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
    private final org.iopersist.kernel.iommufd.PersistentContexts persisted;
    private final FrameRefs refs;
    private final Vfs vfs;
    private final Syscalls syscalls;
    private volatile String stagedCmdline;
    private final LiveUpdate liveUpdate;
    private final org.iopersist.kernel.guestmemfs.Guestmemfs guestmemfsFs;
    private final List<SyscallServer> servers = new java.util.concurrent.CopyOnWriteArrayList<>();

    private Kernel(final Board board, final KernelLog log, final BootParams params, final PhysRange scratch,
            final PhysRange guestmemfs, final FrameAllocator frames, final IntelIommuDriver intel, final IommuCore iommu,
            final BootKind kind, final String coldBootReason, final KhoIncoming incoming,
            final org.iopersist.kernel.guestmemfs.Guestmemfs mountedGmfs) {
        this.board = board;
        this.log = log;
        this.params = params;
        this.scratch = scratch;
        this.guestmemfs = guestmemfs;
        this.frames = frames;
        this.intel = intel;
        this.iommu = iommu;
        this.kind = kind;
        this.coldBootReason = coldBootReason;
        this.refs = new FrameRefs(frames);
        this.persisted = new org.iopersist.kernel.iommufd.PersistentContexts(log);
        this.vfs = new Vfs(sysfs);
        vfs.registerDevice(org.iopersist.uapi.Iommufd.DEV_PATH, (p, path, flags) -> new IommufdFile(new IommufdCtx(board.memory(), refs, iommu, persisted, p.uid())));
        final java.util.List<org.iopersist.kernel.iommu.IommuDevice> devs = iommu.devices();
        for (int i = 0; i < devs.size(); i++) {
            final org.iopersist.kernel.vfio.VfioDevice vd = new org.iopersist.kernel.vfio.VfioDevice(i, devs.get(i));
            vfs.registerDevice(vd.cdevPath(), (p, path, flags) -> new org.iopersist.kernel.vfio.VfioDeviceFile(vd));
            final String dir = org.iopersist.uapi.Vfio.vfioDevSysfsDir(devs.get(i).bdf().toString(), i);
            sysfs.mkdirs(dir);
            final int minor = i;
            sysfs.add(dir, SysfsAttribute.readOnly("dev", () -> VFIO_CDEV_MAJOR + ":" + minor));
            sysfs.add(org.iopersist.uapi.Vfio.pciSysfsDir(devs.get(i).bdf().toString()), SysfsAttribute.readOnly("iommu_unit",
                    () -> Integer.toString(vd.device().unit())));
        }
        this.syscalls = new Syscalls(board.memory(), frames, refs, vfs, new Control());
        this.guestmemfsFs = mountedGmfs != null ? mountedGmfs : guestmemfs.size() > 0
                ? org.iopersist.kernel.guestmemfs.Guestmemfs.format(board.memory(), guestmemfs, log) : null;
        if (guestmemfsFs != null) {
            vfs.mount(org.iopersist.kernel.guestmemfs.GuestmemfsMount.MOUNT_POINT,
                    new org.iopersist.kernel.guestmemfs.GuestmemfsMount(guestmemfsFs, board.memory()));
        }
        this.liveUpdate = new LiveUpdate(board, frames, log, scratch, incoming);
        final IntelIommuPreservation vtd = new IntelIommuPreservation(intel, log);
        liveUpdate.register(vtd);
        if (guestmemfsFs != null) {
            liveUpdate.register(new org.iopersist.kernel.guestmemfs.GuestmemfsPreservation(guestmemfsFs));
        }
        liveUpdate.register(persisted);
        persisted.onAbort(() -> {
            if (liveUpdate.finalized()) {
                liveUpdate.abort();
            }
        });
        liveUpdate.onFinish(persisted::finish);
        persisted.onAllReopened(() -> {
            log.info("iommufd: every persisted context was reopened: finishing the live update");
            liveUpdate.finish();
        });
        liveUpdate.onKexec(handedOver -> vtd.quiesce(handedOver));
        liveUpdate.onKexec(handedOver -> stopServers());
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
        sysfs.add("/sys/kernel/boot", SysfsAttribute.readOnly("kind", () -> kind.name().toLowerCase(java.util.Locale.ROOT)));
        sysfs.add("/sys/kernel/boot", SysfsAttribute.readOnly("cold_boot_reason", () -> coldBootReason == null ? "" : coldBootReason));
        sysfs.add("/sys/kernel/boot", SysfsAttribute.readOnly("cmdline", params::cmdline));
    }

    /** kexec_load stages the next kernel's command line; reboot(KEXEC) ends this boot with it. */
    private final class Control implements LiveUpdateControl {
        @Override
        public void kexecLoad(final UserProcess caller, final String cmdline) {
            if (caller.uid() != 0) {
                throw new KernelException(org.iopersist.uapi.Errno.EPERM, "kexec_load needs uid 0");
            }
            stagedCmdline = cmdline;
            log.info("kexec: staged next kernel, command line \"%s\"", cmdline);
        }

        @Override
        public void rebootKexec(final UserProcess caller) {
            if (caller.uid() != 0) {
                throw new KernelException(org.iopersist.uapi.Errno.EPERM, "reboot needs uid 0");
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
            throw new KernelException(org.iopersist.uapi.Errno.EINVAL, "reboot(KEXEC) with no kernel loaded");
        }
        liveUpdate.kexec(next);
    }

    private void stopServers() {
        // The caller may be a syscall worker of one of these servers: stop them from elsewhere.
        final List<SyscallServer> all = List.copyOf(servers);
        Thread.ofPlatform().name("kexec-stop").start(() -> {
            for (SyscallServer s : all) {
                s.stop(false);
            }
        });
    }

    /** kexec_load from inside the JVM (tests, the demo): stages the next command line. */
    public void kexecLoad(final String cmdline) {
        stagedCmdline = cmdline;
        log.info("kexec: staged next kernel, command line \"%s\"", cmdline);
    }

    /** Serves processes on a Unix socket at {@code socket}; the caller stops the server. */
    public SyscallServer serve(final Path socket) throws IOException {
        if (liveUpdate.state() == LiveUpdate.State.GONE) {
            throw new IllegalStateException("this kernel has kexec'd");
        }
        final SyscallServer server = new SyscallServer(socket, syscalls, log::info);
        servers.add(server);
        return server;
    }

    private void restorePersisted(final org.iopersist.kernel.iommufd.PersistentContexts.Plan plan,
            final java.util.Map<Long, org.iopersist.kernel.iommu.IommuDomain> domainsByKey) {
        persisted.restore(plan, board.memory(), refs, iommu, guestmemfsFs, domainsByKey, sysfs, (pid, ctx) -> {
            final String node = org.iopersist.uapi.Iommufd.persistedNode(pid);
            vfs.registerDevice(node, (p, path, flags) -> new IommufdFile(persisted.reopen(pid, p)));
        });
    }

    public org.iopersist.kernel.iommufd.PersistentContexts persistedContexts() {
        return persisted;
    }

    /** The guestmemfs filesystem, or null without {@code guestmemfs=}. */
    public org.iopersist.kernel.guestmemfs.Guestmemfs guestmemfs() {
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

    /** Boots on {@code board}; {@code consoleOrNull} sees the log as it is written. */
    public static Kernel boot(final Board board, final Consumer<String> consoleOrNull) {
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

        // The handover, if any: every part of it is checked before anything is adopted. A record
        // that does not validate means a cold boot, never a partial one.
        final FrameAllocator frames = new FrameAllocator(board.memory(), memSize, params.pagePoison());
        final IntelIommuDriver intel = new IntelIommuDriver(board, frames, log);
        String reason = null;
        SetupData setup = null;
        KhoIncoming incoming = null;
        IommuDriver.HandoverPlan vtdPlan = null;
        org.iopersist.kernel.guestmemfs.Guestmemfs mountedGmfs = null;
        org.iopersist.kernel.iommufd.PersistentContexts.Plan iommufdPlan = null;
        PhysRange scratch = new PhysRange(LOW_MEMORY.end(), params.khoScratchSize());
        final byte[] setupBytes = readBootBytes(board, SETUP_DATA_FILE);
        if (!params.kho()) {
            reason = "kho=off";
        } else if (setupBytes == null) {
            reason = "no handover in the boot record";
        } else {
            try {
                setup = SetupData.decode(setupBytes);
                incoming = KhoIncoming.parse(board.memory(), setup);
                final PhysRange handedScratch = new PhysRange(setup.scratchAddr(), setup.scratchSize());
                vtdPlan = intel.validateHandover(incoming);
                final PhysRange carve = carveGuestmemfs(params, memSize, handedScratch, null);
                if (carve.size() > 0) {
                    mountedGmfs = org.iopersist.kernel.guestmemfs.GuestmemfsPreservation.validate(incoming, board.memory(), carve, log);
                }
                iommufdPlan = org.iopersist.kernel.iommufd.PersistentContexts.validate(incoming, mountedGmfs, intel.devices(),
                        vtdPlan);
                scratch = handedScratch;
            } catch (HandoverFormatException e) {
                reason = "handover rejected: " + e.getMessage();
                setup = null;
                incoming = null;
                mountedGmfs = null;
                iommufdPlan = null;
            }
        }
        if (scratch.end() > memSize) {
            throw new KernelException(org.iopersist.uapi.Errno.ENOMEM, "KHO scratch " + scratch + " does not fit in memory");
        }
        final PhysRange guestmemfs = carveGuestmemfs(params, memSize, scratch, log);
        frames.reserve(LOW_MEMORY, "firmware");
        frames.reserve(scratch, "kho scratch");
        if (guestmemfs.size() > 0) {
            frames.reserve(guestmemfs, "guestmemfs");
        }
        final List<RestoredDomain> restored;
        if (incoming != null) {
            // Every preserved frame is reserved before anything is allocated; early frames come
            // from scratch, past the incoming tree.
            incoming.reserveAll(new PreservedMemoryMap.Visitor() {
                @Override
                public void block(final long phys, final int order) {
                    frames.reserve(new PhysRange(phys, PhysicalMemory.FRAME_SIZE << order), "kho preserved");
                }

                @Override
                public void metadata(final long phys) {
                    frames.reserve(new PhysRange(phys, PhysicalMemory.FRAME_SIZE), "kho tracker");
                }
            });
            final EarlyFrames early = new EarlyFrames(board.memory(), scratch, setup.fdtAddr() + setup.fdtSize());
            restored = intel.adopt(vtdPlan, early);
            if (mountedGmfs != null) {
                org.iopersist.kernel.guestmemfs.GuestmemfsPreservation.claim(incoming, guestmemfs);
            }
            log.info("KHO: live update: %d preserved frames reserved", incoming.unclaimedFrames());
        } else {
            intel.init(new EarlyFrames(board.memory(), scratch, scratch.start()));
            restored = List.of();
            log.info("DMAR: cold boot (%s): every device blocked", reason);
        }
        final IommuCore iommu = new IommuCore(intel, log);
        final List<org.iopersist.kernel.iommu.IommuDomain> restoredDomains = iommu.restore(restored);
        final java.util.Map<Long, org.iopersist.kernel.iommu.IommuDomain> domainsByKey = new java.util.HashMap<>();
        for (int i = 0; i < restored.size(); i++) {
            domainsByKey.put(restored.get(i).ops().handoverKey(), restoredDomains.get(i));
        }

        frames.open();
        intel.lateInit();
        final FrameAllocator.Stats s = frames.stats();
        log.info("Memory: %d frames free, %d reserved%s", s.freeFrames(), s.reservedFrames(),
                params.pagePoison() ? ", page poisoning on" : "");
        final Kernel k = new Kernel(board, log, params, scratch, guestmemfs, frames, intel, iommu,
                incoming != null ? BootKind.LIVE_UPDATE : BootKind.COLD, reason, incoming, mountedGmfs);
        if (iommufdPlan != null) {
            k.restorePersisted(iommufdPlan, domainsByKey);
        }
        k.liveUpdate.startFinishTimer(params.finishTimeoutSec());
        return k;
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
        return b == null ? null : new String(b, java.nio.charset.StandardCharsets.UTF_8);
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
