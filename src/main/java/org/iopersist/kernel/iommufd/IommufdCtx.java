package org.iopersist.kernel.iommufd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;

/**
 * One open {@code /dev/iommu} ({@code main.c}): its objects, its accounting mode, its persistence,
 * and the ioctl dispatcher, which applies iommufd's framing rules before any handler runs:
 * <ol>
 *   <li>a number outside iommufd's table goes to the VFIO type1 compatibility ioctls
 *       ({@link VfioCompat}), which answer ENOTTY for what they do not know;</li>
 *   <li>the {@code u32 size} at the argument must be readable (EFAULT);</li>
 *   <li>a number in the table with no command is ENOTTY;</li>
 *   <li>a size below the command's minimum is EINVAL;</li>
 *   <li>a size above the kernel's struct must have an all-zero tail (else E2BIG); a shorter struct
 *       reads as zero-extended.</li>
 * </ol>
 * DESTROY and OPTION, which are not about one object kind, are here too.
 */
public final class IommufdCtx {
    /** Accounting of pinned pages, as IOPT_PAGES_ACCOUNT_USER / _MM. */
    static final int ACCOUNT_USER = 1;
    static final int ACCOUNT_MM = 2;

    final ObjectTable objects;
    /** Where this context's calls can be made to fail (fail_nth), as Linux's iommufd has its points. */
    final FailPoints fail;
    /** Serialises attach, detach, replace and unbind: they move references between several objects. */
    final Object attachLock = new Object();
    private final PhysicalMemory memory;
    private final FrameRefs refs;
    private final IommuCore iommu;
    private final PersistentIommufds persistent;
    private final int ownerUid;
    private int persistentId; // guarded by this
    /** The open file plus every bound device and access (iommufd_ctx_get), as the file's refcount. */
    private final AtomicInteger fileRefs = new AtomicInteger(1);
    private volatile int accountMode = ACCOUNT_USER;
    /** Preserved in a LUO session (outgoing), or restored from one and not finished; guarded by attachLock. */
    private boolean liveupdatePreserved;

    /** iommufd_fops_open: the context a process gets by opening {@code /dev/iommu}, owned by {@code ownerUid}. */
    public IommufdCtx(final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final PersistentIommufds persistent, final int ownerUid) {
        this.memory = memory;
        this.refs = refs;
        this.iommu = iommu;
        this.persistent = persistent;
        this.ownerUid = ownerUid;
        this.fail = new FailPoints(refs.faults(), this::tempMemoryLimit);
        this.objects = new ObjectTable(fail);
    }

    /**
     * iommufd_fops_open of {@code /dev/iommu}: the context's kzalloc is a fail_nth site (ENOMEM),
     * the only one of the open that is iommufd's.
     */
    public static IommufdCtx open(final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final PersistentIommufds persistent, final int ownerUid) {
        org.iopersist.kernel.FaultInjection.check(refs.faults(), org.iopersist.kernel.FaultInjection.Site.SLAB);
        return new IommufdCtx(memory, refs, iommu, persistent, ownerUid);
    }

    /** TEMP_MEMORY_LIMIT: the selftest's iommufd_test_memory_limit when its driver is loaded. */
    int tempMemoryLimit() {
        final MockIommu mock = iommu.busDriver(MockIommu.class);
        return mock == null ? FailPoints.TEMP_MEMORY_LIMIT : mock.memoryLimit();
    }

    /**
     * iommufd_fops_open through {@code /dev/vfio/vfio} (CONFIG_IOMMUFD_VFIO_CONTAINER): the same
     * context, accounting pinned pages to the mm as VFIO does.
     */
    public static IommufdCtx openVfioContainer(final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final PersistentIommufds persistent, final int ownerUid) {
        final IommufdCtx ctx = open(memory, refs, iommu, persistent, ownerUid);
        ctx.accountMode = ACCOUNT_MM;
        return ctx;
    }

    /**
     * A context re-hydrated from a handover: it keeps its persistent id and accounting mode, and the
     * kernel holds it (the reference finish or the reopener's close drops, by {@link #put}).
     */
    public static IommufdCtx restore(final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final PersistentIommufds persistent, final int ownerUid, final int persistentId, final int accountMode) {
        final IommufdCtx ctx = new IommufdCtx(memory, refs, iommu, persistent, ownerUid);
        ctx.persistentId = persistentId;
        ctx.accountMode = accountMode;
        return ctx;
    }

    public int ownerUid() {
        return ownerUid;
    }

    /** The persistent id, or 0. */
    public synchronized int persistentId() {
        return persistentId;
    }

    public boolean persistent() {
        return persistentId() != 0;
    }

    PhysicalMemory memory() {
        return memory;
    }

    FrameRefs refs() {
        return refs;
    }

    IommuCore iommu() {
        return iommu;
    }

    /** IOPT_PAGES_ACCOUNT_USER or _MM. */
    public int accountMode() {
        return accountMode;
    }

    void setAccountMode(final int mode) {
        this.accountMode = mode;
    }

    public int objectCount() {
        return objects.count();
    }

    /** Every published object, by id. */
    public List<IommufdObject> objects() {
        return objects.objects();
    }

    // ------------------------------------------------------------------ persistence

    /**
     * A persistent context losing its fd or a device while a live update is finalized (a VMM
     * closing it, or dying): what the handover describes is going away, so the finalize is undone
     * first, and the teardown then runs as on any other day.
     */
    void abortFinalizeIfFrozen(final String why) {
        if (persistent() && persistent.frozen()) {
            persistent.abortFinalize("persistent iommufd " + persistentId() + " " + why + " after KHO finalize");
        }
    }

    /** EBUSY for a change to a persistent context while a live update is finalized. */
    void checkMutable(final String what) {
        if (persistent() && persistent.frozen()) {
            throw new KernelException(Errno.EBUSY, what + " on persistent iommufd " + persistentId() + " after KHO finalize");
        }
    }

    /** IOMMU_OPTION_PERSISTENT SET: only on a context without objects (EBUSY). */
    private synchronized int makePersistent() {
        if (persistentId != 0) {
            return persistentId;
        }
        if (!objects.empty()) {
            throw new KernelException(Errno.EBUSY, "a context with " + objects.count() + " objects cannot become persistent");
        }
        persistentId = persistent.register(this); // released by put()'s unregister
        return persistentId;
    }

    /** IOMMU_IOAS_CHANGE_PROCESS for every IOAS: the pinned-page accounting moves to {@code next} (a reopen). */
    public void changeProcess(final UserProcess next) {
        for (IommufdObject o : objects.objects()) {
            if (o instanceof Ioas ioas) {
                ioas.iopt.changeProcess(next);
            }
        }
    }

    /** Whether this context is preserved in a LUO session (or restored from one and not finished). Attach lock. */
    public boolean liveupdatePreserved() {
        return liveupdatePreserved;
    }

    /** Set by the iommufd file handler under the attach lock ({@link #attachLock()}). */
    public void liveupdatePreserved(final boolean on) {
        liveupdatePreserved = on;
    }

    /** The lock that orders attach, detach, HWPT marks and their preservation. */
    public Object attachLock() {
        return attachLock;
    }

    /**
     * The accounting check: adds, per process, the pages its IOASes' pinned areas charge it, each
     * shared pages range once across {@code seen} (a context may be reached twice: by its fd and by
     * a device bound to it).
     */
    public void sumPinned(final java.util.Map<UserProcess, Long> byOwner, final java.util.Set<Object> seen) {
        if (!seen.add(this)) {
            return;
        }
        for (IommufdObject o : objects.objects()) {
            if (o instanceof Ioas ioas) {
                ioas.iopt.sumPinned(byOwner, seen);
            }
        }
    }

    // ------------------------------------------------------------------ references

    /** iommufd_ctx_get: a device bind or an access keeps the context alive after its fd is closed. */
    void get() {
        fileRefs.incrementAndGet();
    }

    /**
     * iommufd_ctx_get for an in-kernel user that may race the last put (a background scrub):
     * false if the context is already gone. A true return is released by {@link #put}.
     */
    public boolean tryGet() {
        int n;
        do {
            n = fileRefs.get();
            if (n == 0) {
                return false;
            }
        } while (!fileRefs.compareAndSet(n, n + 1));
        return true;
    }

    /**
     * iommufd_ctx_put: drops a reference (a bind's, an access's, the open file's, or the kernel's
     * on a restored context); the last one destroys every object (iommufd_fops_release).
     */
    public void put() {
        if (fileRefs.decrementAndGet() == 0) {
            abortFinalizeIfFrozen("closed"); // normally done already, by the fd's release or a device's unbind
            objects.destroyAll();
            synchronized (this) {
                if (persistentId != 0) {
                    persistent.unregister(persistentId, this);
                    persistentId = 0;
                }
            }
        }
    }

    /** Close of the fd: once no bound device holds the context either, destroys every object, leaf first. */
    public void release() {
        abortFinalizeIfFrozen("closed");
        // Devices restored by a live update and not yet bound again by the reopener are held by
        // the kernel's binding alone; with the fd gone nobody can adopt them: unbind (block) them.
        unbindRestoredDevices();
        put();
    }

    /** Whether a device restored into this context still waits for its VMM to bind it again. */
    public boolean hasRestoredDevices() {
        for (IommufdObject o : objects.objects()) {
            if (o instanceof IommufdDevice d && (d.restored || d.adopting)) {
                return true;
            }
        }
        return false;
    }

    void restoredDevicesRebound() {
        persistent.devicesRebound(this);
    }

    /**
     * A scrub found {@code h}'s tables wrong: every device attached to it is detached, so it is
     * blocked, even while a live update is finalized (a wrong table must not stay reachable).
     * Returns how many.
     */
    public int blockDevicesOf(final HwptPaging h) {
        int n = 0;
        synchronized (attachLock) {
            for (IommufdObject o : objects.objects()) {
                if (o instanceof IommufdDevice d && d.hwpt() == h) {
                    IommufdDevice.detachLocked(d);
                    n++;
                }
            }
        }
        return n;
    }

    /**
     * Unbinds (blocks) every device restored by a live update that no VMM bound again: at close,
     * or at finish for a context nobody reopened, before its last reference goes.
     */
    public void unbindRestoredDevices() {
        final List<IommufdDevice> orphans = new ArrayList<>();
        synchronized (attachLock) {
            for (IommufdObject o : objects.objects()) {
                if (o instanceof IommufdDevice d && d.restored) {
                    d.restored = false;
                    orphans.add(d);
                }
            }
        }
        for (IommufdDevice d : orphans) {
            IommufdDevice.unbind(d); // detaches: the device is blocked from now on
        }
    }

    // ------------------------------------------------------------------ ioctls

    /** iommufd_fops_ioctl: returns 0 or a value, or throws with the errno. */
    public long ioctl(final UserProcess p, final int cmd, final long argVa) {
        if (!IoctlOp.inTable(cmd)) {
            return VfioCompat.ioctl(this, p, cmd, argVa);
        }
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment sizeBuf = arena.allocate(4);
            p.mm().getUser(argVa, sizeBuf, 0, 4); // get_user: no fail_nth site
            final IoctlOp op = IoctlOp.of(cmd);
            if (op == null) {
                throw new KernelException(Errno.ENOTTY, "iommufd ioctl 0x" + Integer.toHexString(cmd));
            }
            final long userSize = Integer.toUnsignedLong(Iommufd.size(sizeBuf));
            if (userSize < op.minSize) {
                throw new KernelException(Errno.EINVAL, "size " + userSize + " below the minimum " + op.minSize);
            }
            final long kernelSize = op.size;
            // copy_struct_from_user: the tail beyond the kernel's struct first, then the one copy.
            if (userSize > kernelSize) {
                checkZeroTail(p, argVa + kernelSize, userSize - kernelSize);
            }
            final MemorySegment cmdBuf = arena.allocate(kernelSize, 8);
            p.mm().copyFromUser(argVa, cmdBuf, 0, Math.min(userSize, kernelSize));
            return op.handler.handle(new Ucmd(this, p, argVa, userSize, cmdBuf));
        }
    }

    /** check_zeroed_user (no fail_nth site): bytes the kernel does not understand must be zero (E2BIG). */
    private static void checkZeroTail(final UserProcess p, final long va, final long length) {
        if (length > 1 << 20) {
            throw new KernelException(Errno.E2BIG, "struct larger than the kernel's by " + length + " bytes");
        }
        final byte[] tail = new byte[(int) length];
        p.mm().getUser(va, MemorySegment.ofArray(tail), 0, length);
        for (byte b : tail) {
            if (b != 0) {
                throw new KernelException(Errno.E2BIG, "non-zero bytes beyond the kernel's struct");
            }
        }
    }

    /** iommufd_destroy (IOMMU_DESTROY): EBUSY while anything else holds the object, an ioctl included. */
    static long destroy(final Ucmd u) {
        u.ctx.checkMutable("DESTROY");
        u.ctx.objects.destroy(IommuDestroy.id(u.cmd));
        return 0;
    }

    /** iommufd_option (IOMMU_OPTION): dispatches on option_id, then copies back val64 alone. */
    static long option(final Ucmd u) {
        if (IommuOption.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("OPTION __reserved");
        }
        switch (IommuOption.optionId(u.cmd)) {
            case Iommufd.IOMMU_OPTION_RLIMIT_MODE -> Ioas.rlimitMode(u);
            case Iommufd.IOMMU_OPTION_HUGE_PAGES -> Ioas.option(u);
            case Iommufd.IOMMU_OPTION_PERSISTENT -> persistentOption(u);
            default -> throw Ucmd.unsupported("option " + IommuOption.optionId(u.cmd));
        }
        // Only val64 goes back, as Linux copies just that field.
        u.process.mm().copyToUser(u.userVa + IommuOption.VAL64_OFFSET, u.cmd, IommuOption.VAL64_OFFSET, Long.BYTES);
        return 0;
    }

    /**
     * IOMMU_OPTION_PERSISTENT (a context option: object_id 0). GET answers the persistent id, 0 if
     * none. SET marks an empty context persistent and answers its new id; a context that already
     * holds objects is EBUSY, as RLIMIT_MODE answers (the RFC's EFAULT names a bad pointer, which
     * this is not); SET on a persistent context answers its id again.
     */
    private static void persistentOption(final Ucmd u) {
        if (IommuOption.objectId(u.cmd) != 0) {
            throw Ucmd.unsupported("PERSISTENT is a context option; object_id must be 0");
        }
        switch (IommuOption.op(u.cmd)) {
            case Iommufd.IOMMU_OPTION_OP_GET -> IommuOption.val64(u.cmd, u.ctx.persistentId());
            case Iommufd.IOMMU_OPTION_OP_SET -> IommuOption.val64(u.cmd, u.ctx.makePersistent());
            default -> throw Ucmd.unsupported("option op " + IommuOption.op(u.cmd));
        }
    }
}
