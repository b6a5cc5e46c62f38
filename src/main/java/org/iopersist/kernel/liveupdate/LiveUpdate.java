package org.iopersist.kernel.liveupdate;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.Board;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.kernel.mm.PhysRange;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.SysfsAttribute;
import org.iopersist.uapi.Errno;

/**
 * Live-update control for one boot: the outgoing handover (finalize, abort), the kexec that ends
 * the boot, and the incoming handover's finish. Each preserving subsystem plugs in as a
 * {@link LiveUpdateHandler}; this class calls their outgoing steps and {@code finish}, in
 * registration order ({@link IncomingBoot} calls the incoming ones).
 *
 * <pre>
 *   NORMAL ──finalize──► FINALIZED ──kexec──► GONE (the next Kernel.boot takes over)
 *     ▲                     │
 *     └──────abort──────────┘
 * </pre>
 *
 * Finish (of the handover this boot came from) is independent: an explicit write to
 * {@code /sys/kernel/liveupdate/finish}, or {@code liveupdate.finish_timeout=} seconds after boot.
 * A kexec before finish carries every unclaimed preserved block into the next handover.
 */
public final class LiveUpdate {
    public enum State { NORMAL, FINALIZED, GONE }

    /** The boot record's handover ({@code struct kho_data}): written at a kexec, whole or not at all. */
    public static final String SETUP_DATA = "setup_data";
    /** Next to {@link #SETUP_DATA}: the kernel booted from it has let processes run; no boot takes it again. */
    public static final String SETUP_DATA_USED = "setup_data.used";

    /**
     * Runs at kexec before anything else: the end of userspace, so that no process, not even one
     * exiting right then, changes what the handover describes while it is written and shut down.
     */
    @FunctionalInterface
    public interface KexecHook {
        void kexec(boolean handedOver);
    }

    private final Board board;
    private final FrameAllocator frames;
    private final KernelLog log;
    private final Kho kho;
    private final KhoIncoming incoming;
    private final List<LiveUpdateHandler<?>> handlers = new ArrayList<>(); // guarded by this
    private final List<KexecHook> hooks = new ArrayList<>(); // guarded by this
    private final CountDownLatch gone = new CountDownLatch(1);
    private State state = State.NORMAL; // guarded by this
    private SetupData setup; // guarded by this
    private Thread finishTimer;
    private Breakpoint breakpoint = new Breakpoint("", null);
    private boolean bootRecordUsed; // guarded by this

    public LiveUpdate(final Board board, final FrameAllocator frames, final KernelLog log, final PhysRange scratch,
            final KhoIncoming incomingOrNull) {
        this.board = board;
        this.frames = frames;
        this.log = log;
        this.kho = new Kho(board.memory(), frames, scratch.start(), scratch.size(), log::info);
        this.incoming = incomingOrNull;
        if (incomingOrNull != null) {
            kho.carryOver(incomingOrNull);
        }
    }

    public Kho kho() {
        return kho;
    }

    /** {@code liveupdate.break=}: where this boot stops for good, if anywhere. */
    public void breakpoint(final Breakpoint b) {
        this.breakpoint = b;
        kho.onStep(b::at);
    }

    /** The handover this boot came from, or null after a cold boot. */
    public KhoIncoming incoming() {
        return incoming;
    }

    /**
     * Plugs a preserving subsystem in. Register in dependency order: the same order serializes at
     * freeze, shuts down at kexec and finishes, as {@link IncomingBoot} validates and adopts.
     */
    public void register(final LiveUpdateHandler<?> handler) {
        synchronized (this) {
            handlers.add(handler);
        }
        kho.register(handler);
        handler.bind(this);
    }

    public synchronized void onKexec(final KexecHook hook) {
        hooks.add(hook);
    }

    public synchronized State state() {
        return state;
    }

    /** Serializes every subsystem and freezes preserved state; EBUSY if already finalized. */
    public synchronized SetupData finalizeHandover() {
        requireAlive();
        if (state == State.FINALIZED) {
            throw new KernelException(Errno.EBUSY, "KHO is already finalized");
        }
        for (LiveUpdateHandler<?> h : handlers) {
            h.beforeFreeze();
        }
        setup = kho.finalizeHandover();
        state = State.FINALIZED;
        return setup;
    }

    /** A frozen object went away (its VMM died after finalize): the handover is void. */
    public synchronized void abortIfFinalized() {
        if (state == State.FINALIZED) {
            abort();
        }
    }

    /** Unfreezes and frees the handover; ENOENT if not finalized. */
    public synchronized void abort() {
        requireAlive();
        if (state != State.FINALIZED) {
            throw new KernelException(Errno.ENOENT, "KHO is not finalized");
        }
        kho.abort();
        setup = null;
        state = State.NORMAL;
    }

    /**
     * Ends this boot: writes the next kernel's boot record ({@code cmdline}, and {@code setup_data}
     * if the handover is finalized; without one the next kernel cold-boots), runs the kexec hooks
     * (which block every device that is not preserved), and marks the boot gone. Nothing of this
     * kernel runs afterwards.
     *
     * <p>A handler with something to hand over and no finalize yet (LUO's sessions) makes the kexec
     * finalize first, the reboot being LUO's freeze point; if that fails, the kexec fails with the
     * same errno and this boot goes on.
     */
    public void kexec(final String cmdline) {
        final boolean handedOver;
        final List<LiveUpdateHandler<?>> toShut;
        final List<KexecHook> toRun;
        synchronized (this) {
            requireAlive();
            if (state == State.NORMAL) {
                for (LiveUpdateHandler<?> h : handlers) {
                    if (h.wantsHandover()) {
                        finalizeHandover();
                        break;
                    }
                }
            }
            toRun = List.copyOf(hooks);
        }
        for (KexecHook h : toRun) {
            h.kexec(finalized());
        }
        synchronized (this) {
            requireAlive();
            handedOver = state == State.FINALIZED;
            writeBootRecord(cmdline, handedOver ? setup : null);
            state = State.GONE;
            toShut = List.copyOf(handlers);
        }
        stopFinishTimer();
        for (LiveUpdateHandler<?> h : toShut) {
            h.shutdown(handedOver);
        }
        log.info("kexec: %s; the next kernel takes over", handedOver ? "handover in boot/setup_data"
                : "no finalized handover, the next kernel cold-boots");
        gone.countDown();
    }

    /**
     * The next boot's record. A kexec that dies part way (a kill, a power loss) must leave either
     * the new record whole or none: the old {@code setup_data} goes first, then the mark that it
     * was used, and the new one appears whole by a rename.
     */
    private void writeBootRecord(final String cmdline, final SetupData next) {
        final Path bootDir = board.bootDirectory();
        try {
            Files.createDirectories(bootDir);
            Files.writeString(bootDir.resolve("cmdline"), cmdline, StandardCharsets.UTF_8);
            final Path sd = bootDir.resolve(SETUP_DATA);
            Files.deleteIfExists(sd);
            Files.deleteIfExists(bootDir.resolve(SETUP_DATA_USED));
            breakpoint.at("kexec");
            if (next != null) {
                final Path tmp = bootDir.resolve(SETUP_DATA + ".new");
                Files.write(tmp, next.encode());
                Files.move(tmp, sd, java.nio.file.StandardCopyOption.ATOMIC_MOVE, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("kexec: cannot write the boot record in " + bootDir + ": " + e.getMessage(), e);
        }
    }

    /**
     * The first process is about to run: from here on this boot changes what its handover
     * describes (and a cold boot, memory the handover named), so the boot record it came from must
     * never be booted from again: a kernel that dies from now on leaves the next boot cold, as a
     * reset after a crash would. Marks {@code boot/setup_data}, if any, used; once.
     */
    public synchronized void consumeBootRecord() {
        if (bootRecordUsed) {
            return;
        }
        if (incoming != null) {
            breakpoint.at("serve");
        }
        try {
            if (Files.exists(board.bootDirectory().resolve(SETUP_DATA))) {
                Files.write(board.bootDirectory().resolve(SETUP_DATA_USED), new byte[0]);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot mark the boot record used: " + e.getMessage(), e);
        }
        bootRecordUsed = true;
    }

    /** Waits until a kexec ended this boot; true if it did within the timeout. */
    public boolean awaitKexec(final long timeout, final TimeUnit unit) throws InterruptedException {
        return gone.await(timeout, unit);
    }

    /**
     * Frees every preserved block of the incoming handover that no subsystem claimed. ENOENT after a
     * cold boot; a second finish does nothing.
     */
    public long finish() {
        if (incoming == null) {
            throw new KernelException(Errno.ENOENT, "this boot did not come from a handover");
        }
        synchronized (this) {
            requireAlive();
        }
        stopFinishTimer();
        final boolean wasFinished = incoming.finished();
        if (!wasFinished) {
            final List<LiveUpdateHandler<?>> toFinish;
            synchronized (this) {
                toFinish = List.copyOf(handlers);
            }
            for (LiveUpdateHandler<?> h : toFinish) {
                h.finish();
            }
        }
        final long freed = incoming.finish(frames);
        if (!wasFinished) {
            log.info("liveupdate: finished: %d unclaimed preserved frames freed", freed);
        }
        return freed;
    }

    /**
     * Finishes once no handler is pending (the last context reopened, the last session finished),
     * if this boot came from a handover that is not finished yet; otherwise does nothing.
     */
    public void finishIfIdle() {
        if (incoming == null || incoming.finished()) {
            return;
        }
        final List<LiveUpdateHandler<?>> all;
        synchronized (this) {
            if (state == State.GONE) {
                return;
            }
            all = List.copyOf(handlers);
        }
        for (LiveUpdateHandler<?> h : all) {
            if (h.pending()) {
                return;
            }
        }
        log.info("liveupdate: nothing restored is pending any more: finishing the live update");
        finish();
    }

    /** Starts the finish timeout ({@code liveupdate.finish_timeout=}); 0 disables it. */
    public synchronized void startFinishTimer(final int seconds) {
        if (incoming == null || seconds <= 0) {
            return;
        }
        finishTimer = Thread.ofPlatform().daemon().name("liveupdate-finish").start(() -> {
            try {
                Thread.sleep(seconds * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            try {
                log.info("liveupdate: finish timeout of %d s expired", seconds);
                finish();
            } catch (KernelException e) {
                // The boot ended first: nothing to finish.
            }
        });
    }

    private void stopFinishTimer() {
        final Thread t;
        synchronized (this) {
            t = finishTimer;
            finishTimer = null;
        }
        if (t != null && t != Thread.currentThread()) {
            t.interrupt();
        }
    }

    private void requireAlive() {
        if (state == State.GONE) {
            throw new KernelException(Errno.ESHUTDOWN, "this kernel has kexec'd");
        }
    }

    /** {@code /sys/kernel/kho/{finalize,fdt}} and {@code /sys/kernel/liveupdate/{finish,state}}. */
    public void populateSysfs(final Sysfs sysfs) {
        sysfs.mkdirs("/sys/kernel/kho");
        sysfs.add("/sys/kernel/kho", SysfsAttribute.readWrite("finalize", () -> state() == State.FINALIZED ? "1" : "0", v -> {
            switch (v) {
                case "1" -> finalizeHandover();
                case "0" -> abort();
                default -> throw new KernelException(Errno.EINVAL, "finalize takes 1 or 0, not '" + v + "'");
            }
        }));
        sysfs.add("/sys/kernel/kho", SysfsAttribute.binary("fdt", kho::tree));
        sysfs.mkdirs("/sys/kernel/liveupdate");
        sysfs.add("/sys/kernel/liveupdate", SysfsAttribute.readWrite("finish",
                () -> incoming == null ? "none" : incoming.finished() ? "1" : "0", v -> {
                    if (!"1".equals(v)) {
                        throw new KernelException(Errno.EINVAL, "finish takes 1, not '" + v + "'");
                    }
                    finish();
                }));
        sysfs.add("/sys/kernel/liveupdate", SysfsAttribute.readOnly("state", () -> state().name().toLowerCase(java.util.Locale.ROOT)));
    }

    /** Preserved frames the incoming handover still holds unclaimed (0 after finish or a cold boot). */
    public long unclaimedFrames() {
        return incoming == null ? 0 : incoming.unclaimedFrames();
    }

    /** Frames finish will free of the handover itself: unclaimed blocks and the tracker's frames. */
    public long handoverFramesLeft() {
        return incoming == null ? 0 : incoming.unclaimedFrames() + incoming.trackerFrames();
    }

    public synchronized boolean finalized() {
        return state == State.FINALIZED;
    }
}
