package org.iopersist.kernel.liveupdate.luo;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Liveupdate;

/**
 * The Live Update Orchestrator ({@code kernel/liveupdate/luo_core.c}, {@code luo_session.c},
 * {@code luo_file.c}): named sessions of preserved files, driven from {@code /dev/liveupdate}, as
 * one {@link LiveUpdateHandler} of the live-update core beside the RFC's handlers. Its blob is the
 * KHO subtree {@code LUO}, compatible {@code luo-v1} ({@link LuoHandover}).
 *
 * <pre>
 *   /dev/liveupdate ──CREATE_SESSION──► outgoing session ──PRESERVE_FD(fd, token)──► file handler: preserve
 *        │                                  │ close before the kexec: every file unpreserved
 *        │                       reboot(KEXEC): the core finalizes (no separate step): every file
 *        │                                  frozen and serialized; a freeze failure fails the reboot
 *        └──RETRIEVE_SESSION (next boot)──► incoming session ──RETRIEVE_FD(token)──► a new fd
 *                                           │ FINISH, or close: files finished, the session goes
 *                                           │ never retrieved: freed at the core's finish (explicit,
 *                                           │ timeout, or when nothing is pending any more)
 * </pre>
 *
 * The handover is validated whole at boot, like every handler's: a record no file handler knows,
 * or a file whose handler finds it wrong, makes the boot cold (Linux leaks the session and fails
 * {@code open(/dev/liveupdate)} with EIO instead; here nothing is half-restored).
 *
 * <p>Lock order: the {@link Kho} monitor first (finalize holds it when it calls {@link #serialize},
 * and a preserve takes it before this one, since handlers preserve memory through KHO), then this
 * object's monitor, then what file handlers lock (iommufd, the iommu driver). The core's own calls
 * ({@code abortIfFinalized}, {@code finishIfIdle}) are made with neither held.
 */
public final class Luo implements LiveUpdateHandler<Luo.Plan> {
    /** What validate found: the sessions, each file's handler already holding its plan. */
    public record Plan(long liveupdateNumber, List<LuoSession> sessions) {
        public Plan {
            sessions = List.copyOf(sessions);
        }
    }

    private final KernelLog log;
    private final List<LuoFileHandler> handlers = new ArrayList<>(); // guarded by this
    private final Map<String, LuoSession> outgoing = new LinkedHashMap<>(); // guarded by this
    private final Map<String, LuoSession> incoming = new LinkedHashMap<>(); // guarded by this
    /** luo_preserved_files: a file is preserved in one session at most (EBUSY). Guarded by this. */
    private final Set<KernelFile> preservedFiles = Collections.newSetFromMap(new IdentityHashMap<>());
    private boolean deviceOpen; // guarded by this
    private boolean frozen; // guarded by this
    private long liveupdateNumber; // guarded by this: live updates this machine went through before this boot
    private LiveUpdate core; // set once, at registration
    private Kho kho;

    public Luo(final KernelLog log) {
        this.log = log;
    }

    /** Registers a file handler (liveupdate_register_file_handler); EEXIST for a known compatible. */
    public synchronized void register(final LuoFileHandler handler) {
        if (handler.compatible().getBytes(StandardCharsets.UTF_8).length >= LuoFileHandler.COMPAT_LENGTH) {
            throw new IllegalArgumentException("compatible '" + handler.compatible() + "' is too long");
        }
        for (LuoFileHandler h : handlers) {
            if (h.compatible().equals(handler.compatible())) {
                throw new KernelException(Errno.EEXIST, "file handler " + handler.compatible() + " is registered");
            }
        }
        handlers.add(handler);
    }

    private synchronized LuoFileHandler handler(final String compatible) {
        for (LuoFileHandler h : handlers) {
            if (h.compatible().equals(compatible)) {
                return h;
            }
        }
        return null;
    }

    @Override
    public String name() {
        return LuoHandover.NAME;
    }

    @Override
    public synchronized void bind(final LiveUpdate liveUpdate) {
        this.core = liveUpdate;
        this.kho = liveUpdate.kho();
    }

    /** This boot's KHO, where file handlers preserve memory (set at registration with the core). */
    public synchronized Kho kho() {
        return kho;
    }

    private synchronized LiveUpdate core() {
        return core;
    }

    /** Live updates this machine went through before this boot ({@code liveupdate-number}). */
    public synchronized long liveupdateNumber() {
        return liveupdateNumber;
    }

    // ------------------------------------------------------------------ /dev/liveupdate

    /** luo_open: root only (the misc node is 0600: EACCES), one open at a time (EBUSY). */
    public DeviceFile openDevice(final UserProcess p) {
        if (!p.root()) {
            throw new KernelException(Errno.EACCES, Liveupdate.DEV_PATH + " is root's");
        }
        synchronized (this) {
            if (deviceOpen) {
                throw new KernelException(Errno.EBUSY, Liveupdate.DEV_PATH + " is open already");
            }
            deviceOpen = true;
        }
        return new DeviceFile(this);
    }

    synchronized void deviceReleased() {
        deviceOpen = false;
    }

    /**
     * luo_session_create: a new outgoing session named by the NUL-terminated bytes of {@code name}
     * (EINVAL if empty or without a NUL in 64 bytes), unique among outgoing sessions (EEXIST); EBUSY
     * once this boot's handover is frozen.
     */
    synchronized LuoSession createSession(final byte[] name) {
        final String n = sessionName(name);
        if (frozen) {
            throw new KernelException(Errno.EBUSY, "sessions are frozen for the kexec");
        }
        if (outgoing.containsKey(n)) {
            throw new KernelException(Errno.EEXIST, "session '" + n + "' exists");
        }
        final LuoSession s = new LuoSession(n, false);
        s.open = true;
        outgoing.put(n, s);
        return s;
    }

    /** luo_session_retrieve: the incoming session by name (ENOENT), once (EINVAL). */
    synchronized LuoSession retrieveSession(final byte[] name) {
        final String n = nameUpToNul(name);
        final LuoSession s = incoming.get(n);
        if (s == null) {
            throw new KernelException(Errno.ENOENT, "no incoming session '" + n + "'");
        }
        if (s.retrieved) {
            throw new KernelException(Errno.EINVAL, "session '" + n + "' was retrieved already");
        }
        s.retrieved = true;
        s.open = true;
        return s;
    }

    /** A session created by the ioctl whose answer could not be written: it never existed. */
    synchronized void forgetSession(final LuoSession s) {
        if (s.incoming) {
            s.retrieved = false;
            s.open = false;
        } else {
            outgoing.remove(s.name, s);
        }
    }

    /** The name as the kernel keeps it: bytes up to the NUL, 1..63 of them (EINVAL otherwise). */
    private static String sessionName(final byte[] name) {
        int len = 0;
        while (len < name.length && name[len] != 0) {
            len++;
        }
        if (len == 0 || len > Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH - 1) {
            throw new KernelException(Errno.EINVAL, "session name of " + len + " bytes (1.."
                    + (Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH - 1) + ", NUL-terminated)");
        }
        return new String(name, 0, len, StandardCharsets.ISO_8859_1);
    }

    /** strncmp's view of a 64-byte field: the bytes before the first NUL (all 64 if none). */
    private static String nameUpToNul(final byte[] name) {
        int len = 0;
        while (len < name.length && name[len] != 0) {
            len++;
        }
        return new String(name, 0, len, StandardCharsets.ISO_8859_1);
    }

    // ------------------------------------------------------------------ session fds

    /**
     * luo_preserve_file, in its order: the token is new in the session (EEXIST), {@code fd} is open
     * (EBADF), some handler takes the file (ENOENT), the file is preserved nowhere else (EBUSY),
     * then the handler's own checks. EBUSY once the handover is frozen.
     */
    void preserveFd(final LuoSession s, final UserProcess p, final int fd, final long token) {
        final Kho k;
        synchronized (this) {
            k = kho;
        }
        synchronized (k) {
            synchronized (this) {
                if (frozen) {
                    throw new KernelException(Errno.EBUSY, "sessions are frozen for the kexec");
                }
                if (s.file(token) != null) {
                    throw new KernelException(Errno.EEXIST, "token 0x" + Long.toHexString(token) + " is used in " + s);
                }
                final OpenFile f = p.fds().fget(fd); // LUO co-owns the file from here: put by unpreserve or finish
                try {
                    LuoFileHandler h = null;
                    for (LuoFileHandler c : handlers) {
                        if (c.canPreserve(f.file())) {
                            h = c;
                            break;
                        }
                    }
                    if (h == null) {
                        throw new KernelException(Errno.ENOENT, "no live-update handler for " + f.file().describe());
                    }
                    if (preservedFiles.contains(f.file())) {
                        throw new KernelException(Errno.EBUSY, f.file().describe() + " is preserved already");
                    }
                    final LuoFileHandler.Preserved preserved = h.preserve(f, token, s);
                    s.files.add(new LuoSession.File(token, h, f, preserved));
                    preservedFiles.add(f.file());
                    log.info("liveupdate: %s: preserved %s as token 0x%x (%s)", s, f.file().describe(), token, h.compatible());
                } catch (RuntimeException e) {
                    f.put();
                    throw e;
                }
            }
        }
    }

    /**
     * luo_retrieve_file: the file handed over under {@code token} (ENOENT); retrieving it again gives
     * the same file; a retrieve that failed fails the same way for good. The caller holds a new
     * reference on the answer.
     */
    synchronized OpenFile retrieveFd(final LuoSession s, final UserProcess p, final long token) {
        final LuoSession.File f = s.file(token);
        if (f == null) {
            throw new KernelException(Errno.ENOENT, "no file under token 0x" + Long.toHexString(token) + " in " + s);
        }
        if (f.retrieveStatus < 0) {
            throw new KernelException(Errno.of(-f.retrieveStatus), "token 0x" + Long.toHexString(token)
                    + ": its retrieve failed before");
        }
        if (f.retrieveStatus == 0) {
            try {
                f.retrieved = f.restorable.retrieve(p); // the session's reference, put at finish
            } catch (KernelException e) {
                f.retrieveStatus = -e.errno().number;
                log.info("liveupdate: %s: retrieve of token 0x%x failed: %s", s, token, e.getMessage());
                throw e;
            }
            f.retrieveStatus = 1;
        }
        return f.retrieved.get();
    }

    /**
     * luo_file_finish: every file may finish (else EBUSY, and nothing changes), then each finishes,
     * last preserved first; the session's references go with them.
     */
    void finishSession(final LuoSession s) {
        synchronized (this) {
            finishLocked(s, false);
        }
        finishIfIdle();
    }

    private void finishLocked(final LuoSession s, final boolean force) {
        if (!force) {
            for (LuoSession.File f : s.files) {
                if (!f.restorable.canFinish(f.retrieveStatus > 0)) {
                    throw new KernelException(Errno.EBUSY, s + ": token 0x" + Long.toHexString(f.token) + " cannot finish yet");
                }
            }
        }
        for (int i = s.files.size() - 1; i >= 0; i--) {
            final LuoSession.File f = s.files.get(i);
            f.restorable.finish(f.retrieveStatus > 0);
            if (f.retrieved != null) {
                f.retrieved.put();
            }
        }
        if (!s.files.isEmpty() || !s.finished) {
            log.info("liveupdate: %s finished", s);
        }
        s.files.clear();
        s.finished = true;
    }

    /**
     * luo_session_release: an outgoing session is unpreserved (its files handed back, last first),
     * after undoing a finalize that described it; an incoming one finishes, and if it cannot, stays
     * until the core's finish frees it.
     */
    void closeSession(final LuoSession s) {
        if (s.incoming) {
            boolean done = false;
            synchronized (this) {
                s.open = false;
                try {
                    finishLocked(s, false);
                    incoming.remove(s.name, s);
                    done = true;
                } catch (KernelException e) {
                    log.info("liveupdate: unable to finish %s on release: %s", s, e.getMessage());
                }
            }
            if (done) {
                finishIfIdle();
            }
            return;
        }
        for (int attempt = 0; ; attempt++) {
            final LiveUpdate c = core();
            if (c != null) {
                c.abortIfFinalized(); // the handover names these files: undo it first
            }
            synchronized (kho) {
                synchronized (this) {
                    if (frozen && attempt < 3) {
                        continue; // finalized again meanwhile
                    }
                    if (frozen) {
                        // Only a finalize that cannot be undone (this kernel is going away) leaves it frozen.
                        log.info("liveupdate: %s closed while the handover is frozen: kept", s);
                        s.open = false;
                        return;
                    }
                    for (int i = s.files.size() - 1; i >= 0; i--) {
                        final LuoSession.File f = s.files.get(i);
                        f.preserved.unpreserve();
                        preservedFiles.remove(f.file.file());
                        f.file.put();
                    }
                    if (!s.files.isEmpty()) {
                        log.info("liveupdate: %s closed: %d files unpreserved", s, s.files.size());
                    }
                    s.files.clear();
                    s.open = false;
                    outgoing.remove(s.name, s);
                    return;
                }
            }
        }
    }

    // ------------------------------------------------------------------ the core's steps

    /** The reboot itself is the freeze point: with sessions to hand over, reboot(KEXEC) finalizes. */
    @Override
    public synchronized boolean wantsHandover() {
        return !outgoing.isEmpty();
    }

    /** Incoming sessions still waiting for their owner to finish them. */
    @Override
    public synchronized boolean pending() {
        for (LuoSession s : incoming.values()) {
            if (!s.finished) {
                return true;
            }
        }
        return false;
    }

    private void finishIfIdle() {
        final LiveUpdate c = core();
        if (c != null) {
            c.finishIfIdle();
        }
    }

    /**
     * Before any handler serializes: incoming sessions nobody finished are not handed over again
     * (Linux resets them at the next live update), so what they kept alive in hardware is dropped
     * from this handover.
     */
    @Override
    public synchronized void beforeFreeze() {
        for (LuoSession s : incoming.values()) {
            for (LuoSession.File f : s.files) {
                f.restorable.dropped();
            }
        }
    }

    /**
     * luo_session_serialize: freezes every file of every outgoing session, in order (a failure
     * unfreezes the ones before and fails the finalize), and writes the {@code luo-v1} blob. With no
     * session there is nothing to hand over (null), and the sessions are still frozen.
     */
    @Override
    public synchronized byte[] serialize(final Kho k) {
        final List<LuoSession.File> done = new ArrayList<>();
        try {
            for (LuoSession s : outgoing.values()) {
                for (LuoSession.File f : s.files) {
                    f.preserved.freeze();
                    done.add(f);
                }
            }
        } catch (RuntimeException e) {
            for (int i = done.size() - 1; i >= 0; i--) {
                done.get(i).preserved.unfreeze();
            }
            log.info("liveupdate: freeze failed: %s", e.getMessage());
            throw e;
        }
        frozen = true;
        if (outgoing.isEmpty()) {
            return null;
        }
        final byte[] blob = LuoHandover.write(liveupdateNumber + 1, List.copyOf(outgoing.values()));
        log.info("liveupdate: %d sessions, %d files serialized (live update %d)", outgoing.size(), done.size(),
                liveupdateNumber + 1);
        return blob;
    }

    /** luo_file_unfreeze, for the whole finalize being undone. */
    @Override
    public synchronized void abort() {
        if (!frozen) {
            return;
        }
        for (LuoSession s : outgoing.values()) {
            for (LuoSession.File f : s.files) {
                f.preserved.unfreeze();
            }
        }
        frozen = false;
    }

    /**
     * luo_session_deserialize, at boot and in full: every session and every file, each file through
     * its handler's validate, in the order they were preserved (so a file's dependencies come first).
     */
    @Override
    public Plan validate(final IncomingHandover in) throws HandoverFormatException {
        final FdtReader blob = in.kho().retrieveSubtree(LuoHandover.NAME);
        if (blob == null) {
            return new Plan(0, List.of());
        }
        return LuoHandover.read(blob, in, this::handler);
    }

    /** Each file's adopt, in order; then the sessions wait for RETRIEVE_SESSION. */
    @Override
    public void adopt(final Plan plan, final IncomingHandover in) {
        for (LuoSession s : plan.sessions()) {
            for (LuoSession.File f : s.files) {
                f.restorable.adopt(in);
            }
        }
        synchronized (this) {
            liveupdateNumber = plan.liveupdateNumber();
            for (LuoSession s : plan.sessions()) {
                incoming.put(s.name, s);
            }
        }
        if (!plan.sessions().isEmpty()) {
            log.info("liveupdate: live update %d: %d sessions restored", plan.liveupdateNumber(), plan.sessions().size());
        }
    }

    /**
     * The core's finish: incoming sessions nobody holds (never retrieved, or whose finish failed at
     * close) finish now, by force: unretrieved files are freed and their devices blocked.
     */
    @Override
    public synchronized void finish() {
        for (LuoSession s : List.copyOf(incoming.values())) {
            if (s.open) {
                continue; // its owner finishes it
            }
            log.info("liveupdate: finish: %s was %s; freed", s, s.retrieved ? "not finished" : "never retrieved");
            finishLocked(s, true);
            incoming.remove(s.name, s);
        }
    }

    /** Names of the outgoing sessions, in creation order (for tests and sysfs). */
    public synchronized List<String> outgoingSessions() {
        return List.copyOf(outgoing.keySet());
    }

    /** Names of the incoming sessions not yet gone (for tests and sysfs). */
    public synchronized List<String> incomingSessions() {
        return List.copyOf(incoming.keySet());
    }
}
