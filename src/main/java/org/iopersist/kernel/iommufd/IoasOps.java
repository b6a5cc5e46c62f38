package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuIovaRange;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;

/**
 * The IOAS ioctls and the object-generic ones (DESTROY, OPTION), as {@code ioas.c} and {@code main.c}.
 * Each handler checks in Linux's order: unknown flags and reserved fields (EOPNOTSUPP), overflow
 * (EOVERFLOW), semantics (EINVAL), then lookups (ENOENT); nothing changes before the last check.
 */
final class IoasOps {
    private IoasOps() {
    }

    static long destroy(final Ucmd u) {
        u.ctx.checkMutable("DESTROY");
        u.ctx.objects.destroy(IommuDestroy.id(u.cmd));
        return 0;
    }

    static long alloc(final Ucmd u) {
        u.ctx.checkMutable("IOAS_ALLOC");
        if (IommuIoasAlloc.flags(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_ALLOC flags");
        }
        final int id = u.ctx.objects.reserve();
        final Ioas ioas = new Ioas();
        try {
            IommuIoasAlloc.outIoasId(u.cmd, id);
            u.respond();
        } catch (KernelException e) {
            u.ctx.objects.abort(id);
            throw e;
        }
        u.ctx.objects.finalizeObject(id, ioas);
        return 0;
    }

    static long iovaRanges(final Ucmd u) {
        if (IommuIoasIovaRanges.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_IOVA_RANGES __reserved");
        }
        final Ioas ioas = u.ctx.objects.get(IommuIoasIovaRanges.ioasId(u.cmd), ObjectType.IOAS, Ioas.class);
        final long max = Integer.toUnsignedLong(IommuIoasIovaRanges.numIovas(u.cmd));
        final long rangesVa = IommuIoasIovaRanges.allowedIovas(u.cmd);
        final List<IovaRange> ranges;
        final long alignment;
        ioas.iovaLock.readLock().lock();
        try {
            ranges = ioas.iopt.usableRanges();
            alignment = ioas.iopt.iovaAlignment();
        } finally {
            ioas.iovaLock.readLock().unlock();
        }
        final MemorySegment elm = MemorySegment.ofArray(new long[2]);
        for (int i = 0; i < ranges.size() && i < max; i++) {
            IommuIovaRange.start(elm, ranges.get(i).start());
            IommuIovaRange.last(elm, ranges.get(i).last());
            u.process.mm().copyToUser(rangesVa + IommuIovaRange.SIZE * i, elm, 0, IommuIovaRange.SIZE);
        }
        IommuIoasIovaRanges.numIovas(u.cmd, ranges.size());
        IommuIoasIovaRanges.outIovaAlignment(u.cmd, alignment);
        u.respond();
        if (ranges.size() > max) {
            throw new KernelException(Errno.EMSGSIZE, ranges.size() + " ranges, room for " + max);
        }
        return 0;
    }

    static long allowIovas(final Ucmd u) {
        if (IommuIoasAllowIovas.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_ALLOW_IOVAS __reserved");
        }
        u.ctx.checkMutable("IOAS_ALLOW_IOVAS"); // allowed ranges are in the handover
        final Ioas ioas = u.ctx.objects.get(IommuIoasAllowIovas.ioasId(u.cmd), ObjectType.IOAS, Ioas.class);
        final long count = Integer.toUnsignedLong(IommuIoasAllowIovas.numIovas(u.cmd));
        if (count > 1 << 16) {
            throw new KernelException(Errno.ENOMEM, "num_iovas " + count);
        }
        final long va = IommuIoasAllowIovas.allowedIovas(u.cmd);
        final List<IovaRange> ranges = new ArrayList<>();
        final MemorySegment elm = MemorySegment.ofArray(new long[2]);
        for (int i = 0; i < count; i++) {
            u.process.mm().copyFromUser(va + IommuIovaRange.SIZE * i, elm, 0, IommuIovaRange.SIZE);
            final long start = IommuIovaRange.start(elm);
            final long last = IommuIovaRange.last(elm);
            if (Long.compareUnsigned(start, last) >= 0) {
                throw new KernelException(Errno.EINVAL, String.format("allowed range [0x%x, 0x%x] is empty", start, last));
            }
            ranges.add(new IovaRange(start, last));
        }
        ioas.iovaLock.writeLock().lock();
        try {
            ioas.iopt.setAllowed(ranges);
        } finally {
            ioas.iovaLock.writeLock().unlock();
        }
        return 0;
    }

    /**
     * IOMMU_OPTION_PERSISTENT (a context option: object_id 0). GET answers the persistent id, 0 if
     * none. SET marks an empty context persistent and answers its new id; a context that already
     * holds objects is EBUSY, as RLIMIT_MODE answers (the RFC's EFAULT names a bad pointer, which
     * this is not); SET on a persistent context answers its id again.
     */
    private static void persistent(final Ucmd u) {
        if (IommuOption.objectId(u.cmd) != 0) {
            throw Ucmd.unsupported("PERSISTENT is a context option; object_id must be 0");
        }
        switch (IommuOption.op(u.cmd)) {
            case Iommufd.IOMMU_OPTION_OP_GET -> IommuOption.val64(u.cmd, u.ctx.persistentId());
            case Iommufd.IOMMU_OPTION_OP_SET -> IommuOption.val64(u.cmd, u.ctx.makePersistent());
            default -> throw Ucmd.unsupported("option op " + IommuOption.op(u.cmd));
        }
    }

    static long option(final Ucmd u) {
        if (IommuOption.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("OPTION __reserved");
        }
        switch (IommuOption.optionId(u.cmd)) {
            case Iommufd.IOMMU_OPTION_RLIMIT_MODE -> rlimitMode(u);
            case Iommufd.IOMMU_OPTION_HUGE_PAGES -> hugePages(u);
            case Iommufd.IOMMU_OPTION_PERSISTENT -> persistent(u);
            default -> throw Ucmd.unsupported("option " + IommuOption.optionId(u.cmd));
        }
        // Only val64 goes back, as Linux copies just that field.
        u.process.mm().copyToUser(u.userVa + IommuOption.VAL64_OFFSET, u.cmd, IommuOption.VAL64_OFFSET, Long.BYTES);
        return 0;
    }

    private static void rlimitMode(final Ucmd u) {
        if (IommuOption.objectId(u.cmd) != 0) {
            throw Ucmd.unsupported("RLIMIT_MODE is global: object_id must be 0");
        }
        switch (IommuOption.op(u.cmd)) {
            case Iommufd.IOMMU_OPTION_OP_GET -> IommuOption.val64(u.cmd, u.ctx.accountMode() == IommufdCtx.ACCOUNT_MM ? 1 : 0);
            case Iommufd.IOMMU_OPTION_OP_SET -> {
                if (!u.process.root()) {
                    throw new KernelException(Errno.EPERM, "RLIMIT_MODE needs CAP_SYS_RESOURCE");
                }
                if (!u.ctx.objects.empty()) {
                    throw new KernelException(Errno.EBUSY, "RLIMIT_MODE with objects in the context");
                }
                final long v = IommuOption.val64(u.cmd);
                if (v == 0) {
                    u.ctx.setAccountMode(IommufdCtx.ACCOUNT_USER);
                } else if (v == 1) {
                    u.ctx.setAccountMode(IommufdCtx.ACCOUNT_MM);
                } else {
                    throw new KernelException(Errno.EINVAL, "RLIMIT_MODE " + v);
                }
            }
            default -> throw Ucmd.unsupported("option op " + IommuOption.op(u.cmd));
        }
    }

    private static void hugePages(final Ucmd u) {
        final Ioas ioas = u.ctx.objects.get(IommuOption.objectId(u.cmd), ObjectType.IOAS, Ioas.class);
        switch (IommuOption.op(u.cmd)) {
            case Iommufd.IOMMU_OPTION_OP_GET -> {
                ioas.iovaLock.readLock().lock();
                try {
                    IommuOption.val64(u.cmd, ioas.iopt.largePagesDisabled() ? 0 : 1);
                } finally {
                    ioas.iovaLock.readLock().unlock();
                }
            }
            case Iommufd.IOMMU_OPTION_OP_SET -> {
                final long v = IommuOption.val64(u.cmd);
                if (v != 0 && v != 1) {
                    throw new KernelException(Errno.EINVAL, "HUGE_PAGES " + v);
                }
                u.ctx.checkMutable("HUGE_PAGES"); // handed over with the IOAS
                ioas.iovaLock.writeLock().lock();
                try {
                    ioas.setLargePages(v == 1);
                } finally {
                    ioas.iovaLock.writeLock().unlock();
                }
            }
            default -> throw Ucmd.unsupported("option op " + IommuOption.op(u.cmd));
        }
    }
}
