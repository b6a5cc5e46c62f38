package org.iopersist.kernel.iommufd;

import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.iommu.IommuCore;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Iommufd;

/**
 * One open {@code /dev/iommu}: its objects and its accounting mode. Also the ioctl dispatcher, which
 * applies iommufd's framing rules before any handler runs:
 * <ol>
 *   <li>an unknown command is ENOTTY;</li>
 *   <li>the {@code u32 size} at the argument must be readable (EFAULT);</li>
 *   <li>a size below the command's minimum is EINVAL;</li>
 *   <li>a size above the kernel's struct must have an all-zero tail (else E2BIG); a shorter struct
 *       reads as zero-extended.</li>
 * </ol>
 */
public final class IommufdCtx {
    /** Accounting of pinned pages, as IOPT_PAGES_ACCOUNT_USER / _MM. */
    static final int ACCOUNT_USER = 1;
    static final int ACCOUNT_MM = 2;

    final ObjectTable objects = new ObjectTable();
    /** Serialises attach, detach, replace and unbind: they move references between several objects. */
    final Object attachLock = new Object();
    private final PhysicalMemory memory;
    private final FrameRefs refs;
    private final IommuCore iommu;
    private final PersistentContexts registry;
    private final int ownerUid;
    private int persistentId; // guarded by this
    /** The open file plus every bound device (iommufd_ctx_get), as the file's refcount. */
    private final java.util.concurrent.atomic.AtomicInteger fileRefs = new java.util.concurrent.atomic.AtomicInteger(1);
    private volatile int accountMode = ACCOUNT_USER;

    /** A context without devices or persistence: those calls answer ENODEV and EOPNOTSUPP. */
    public IommufdCtx(final PhysicalMemory memory, final FrameRefs refs) {
        this(memory, refs, null, null);
    }

    public IommufdCtx(final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommuOrNull,
            final PersistentContexts registryOrNull) {
        this(memory, refs, iommuOrNull, registryOrNull, 0);
    }

    /** A context opened by {@code ownerUid}. */
    public IommufdCtx(final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommuOrNull,
            final PersistentContexts registryOrNull, final int ownerUid) {
        this.memory = memory;
        this.refs = refs;
        this.iommu = iommuOrNull;
        this.registry = registryOrNull;
        this.ownerUid = ownerUid;
    }

    public int ownerUid() {
        return ownerUid;
    }

    PersistentContexts registry() {
        return registry;
    }

    /** A context re-hydrated from a handover: it keeps its persistent id, the kernel holds it. */
    static IommufdCtx restored(final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final PersistentContexts registry, final int ownerUid, final int persistentId) {
        final IommufdCtx ctx = new IommufdCtx(memory, refs, iommu, registry, ownerUid);
        ctx.persistentId = persistentId;
        return ctx;
    }

    /**
     * A persistent context losing its fd or a device while a live update is finalized (a VMM
     * closing it, or dying): what the handover describes is going away, so the finalize is undone
     * first, and the teardown then runs as on any other day.
     */
    void abortFinalizeIfFrozen(final String why) {
        if (registry != null && persistent() && registry.frozen()) {
            registry.abortFinalize("persistent iommufd " + persistentId() + " " + why + " after KHO finalize");
        }
    }

    /** EBUSY for a change to a persistent context while a live update is finalized. */
    void checkMutable(final String what) {
        if (registry != null && persistent() && registry.frozen()) {
            throw new KernelException(Errno.EBUSY, what + " on persistent iommufd " + persistentId() + " after KHO finalize");
        }
    }

    /** The persistent id, or 0. */
    public synchronized int persistentId() {
        return persistentId;
    }

    public boolean persistent() {
        return persistentId() != 0;
    }

    /** IOMMU_OPTION_PERSISTENT SET: only on a context without objects (EBUSY). */
    synchronized int makePersistent() {
        if (registry == null) {
            throw new KernelException(Errno.EOPNOTSUPP, "this kernel has no persistent iommufds");
        }
        if (persistentId != 0) {
            return persistentId;
        }
        if (!objects.empty()) {
            throw new KernelException(Errno.EBUSY, "a context with " + objects.count() + " objects cannot become persistent");
        }
        persistentId = registry.register(this);
        return persistentId;
    }

    PhysicalMemory memory() {
        return memory;
    }

    IommuCore iommu() {
        if (iommu == null) {
            throw new KernelException(Errno.ENODEV, "this iommufd has no iommu behind it");
        }
        return iommu;
    }

    /** A device bind keeps the context alive after its fd is closed. */
    void get() {
        fileRefs.incrementAndGet();
    }

    /** Drops a reference; the last one destroys every object. */
    void put() {
        if (fileRefs.decrementAndGet() == 0) {
            abortFinalizeIfFrozen("closed"); // normally done already, by the fd's release or a device's unbind
            objects.destroyAll();
            synchronized (this) {
                if (persistentId != 0) {
                    registry.unregister(persistentId, this);
                    persistentId = 0;
                }
            }
        }
    }

    FrameRefs refs() {
        return refs;
    }

    int accountMode() {
        return accountMode;
    }

    void setAccountMode(final int mode) {
        this.accountMode = mode;
    }

    public int objectCount() {
        return objects.count();
    }

    /** Every object as {@code id:TYPE}, by id: what a live update must keep. */
    public java.util.List<String> objectsById() {
        return objects.objects().stream().sorted(java.util.Comparator.comparingInt(IommufdObject::id))
                .map(o -> o.id() + ":" + o.type()).toList();
    }

    /** The ioctl entry point: returns 0 or a value, or throws with the errno. */
    public long ioctl(final UserProcess p, final int cmd, final long argVa) {
        final IoctlOp op = IoctlOp.of(cmd);
        if (op == null) {
            throw new KernelException(Errno.ENOTTY, "iommufd ioctl 0x" + Integer.toHexString(cmd));
        }
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment sizeBuf = arena.allocate(4);
            p.mm().copyFromUser(argVa, sizeBuf, 0, 4);
            final long userSize = Integer.toUnsignedLong(Iommufd.size(sizeBuf));
            if (userSize < op.minSize) {
                throw new KernelException(Errno.EINVAL, "size " + userSize + " below the minimum " + op.minSize);
            }
            final long kernelSize = op.size;
            final MemorySegment cmdBuf = arena.allocate(kernelSize, 8);
            p.mm().copyFromUser(argVa, cmdBuf, 0, Math.min(userSize, kernelSize));
            if (userSize > kernelSize) {
                checkZeroTail(p, argVa + kernelSize, userSize - kernelSize);
            }
            return op.handler.handle(new Ucmd(this, p, argVa, userSize, cmdBuf));
        }
    }

    /** copy_struct_from_user's rule: bytes the kernel does not understand must be zero (E2BIG). */
    private static void checkZeroTail(final UserProcess p, final long va, final long length) {
        if (length > 1 << 20) {
            throw new KernelException(Errno.E2BIG, "struct larger than the kernel's by " + length + " bytes");
        }
        final byte[] tail = new byte[(int) length];
        p.mm().copyFromUser(va, MemorySegment.ofArray(tail), 0, length);
        for (byte b : tail) {
            if (b != 0) {
                throw new KernelException(Errno.E2BIG, "non-zero bytes beyond the kernel's struct");
            }
        }
    }

    /** Close of the fd: once no bound device holds the context either, destroys every object, leaf first. */
    public void release() {
        abortFinalizeIfFrozen("closed");
        // Devices restored by a live update and not yet bound again by the reopener are held by
        // the kernel's binding alone; with the fd gone nobody can adopt them: unbind (block) them.
        final java.util.List<IommufdDevice> orphans = new java.util.ArrayList<>();
        synchronized (attachLock) {
            for (IommufdObject o : objects.objects()) {
                if (o instanceof IommufdDevice d && d.restored) {
                    d.restored = false;
                    orphans.add(d);
                }
            }
        }
        for (IommufdDevice d : orphans) {
            DeviceOps.unbind(d);
        }
        put();
    }
}
