package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
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
        u.ctx.objects.destroy(u.u32("id"));
        return 0;
    }

    static long alloc(final Ucmd u) {
        u.ctx.checkMutable("IOAS_ALLOC");
        if (u.u32("flags") != 0) {
            throw Ucmd.unsupported("IOAS_ALLOC flags");
        }
        final int id = u.ctx.objects.reserve();
        final Ioas ioas = new Ioas();
        try {
            u.putU32("out_ioas_id", id);
            u.respond();
        } catch (KernelException e) {
            u.ctx.objects.abort(id);
            throw e;
        }
        u.ctx.objects.finalizeObject(id, ioas);
        return 0;
    }

    static long iovaRanges(final Ucmd u) {
        if (u.u32("__reserved") != 0) {
            throw Ucmd.unsupported("IOAS_IOVA_RANGES __reserved");
        }
        final Ioas ioas = u.ctx.objects.get(u.u32("ioas_id"), ObjectType.IOAS, Ioas.class);
        final long max = Integer.toUnsignedLong(u.u32("num_iovas"));
        final long rangesVa = u.u64("allowed_iovas");
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
            elm.set(Ucmd.U64, 0, ranges.get(i).start());
            elm.set(Ucmd.U64, 8, ranges.get(i).last());
            u.process.mm().copyToUser(rangesVa + 16L * i, elm, 0, 16);
        }
        u.putU32("num_iovas", ranges.size());
        u.putU64("out_iova_alignment", alignment);
        u.respond();
        if (ranges.size() > max) {
            throw new KernelException(Errno.EMSGSIZE, ranges.size() + " ranges, room for " + max);
        }
        return 0;
    }

    static long allowIovas(final Ucmd u) {
        if (u.u32("__reserved") != 0) {
            throw Ucmd.unsupported("IOAS_ALLOW_IOVAS __reserved");
        }
        u.ctx.checkMutable("IOAS_ALLOW_IOVAS"); // allowed ranges are in the handover
        final Ioas ioas = u.ctx.objects.get(u.u32("ioas_id"), ObjectType.IOAS, Ioas.class);
        final long count = Integer.toUnsignedLong(u.u32("num_iovas"));
        if (count > 1 << 16) {
            throw new KernelException(Errno.ENOMEM, "num_iovas " + count);
        }
        final long va = u.u64("allowed_iovas");
        final List<IovaRange> ranges = new ArrayList<>();
        final MemorySegment elm = MemorySegment.ofArray(new long[2]);
        for (int i = 0; i < count; i++) {
            u.process.mm().copyFromUser(va + 16L * i, elm, 0, 16);
            final long start = elm.get(Ucmd.U64, 0);
            final long last = elm.get(Ucmd.U64, 8);
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
        if (u.u32("object_id") != 0) {
            throw Ucmd.unsupported("PERSISTENT is a context option; object_id must be 0");
        }
        switch (u.u16("op")) {
            case Iommufd.IOMMU_OPTION_OP_GET -> u.putU64("val64", u.ctx.persistentId());
            case Iommufd.IOMMU_OPTION_OP_SET -> u.putU64("val64", u.ctx.makePersistent());
            default -> throw Ucmd.unsupported("option op " + u.u16("op"));
        }
    }

    static long option(final Ucmd u) {
        if (u.u16("__reserved") != 0) {
            throw Ucmd.unsupported("OPTION __reserved");
        }
        switch (u.u32("option_id")) {
            case Iommufd.IOMMU_OPTION_RLIMIT_MODE -> rlimitMode(u);
            case Iommufd.IOMMU_OPTION_HUGE_PAGES -> hugePages(u);
            case Iommufd.IOMMU_OPTION_PERSISTENT -> persistent(u);
            default -> throw Ucmd.unsupported("option " + u.u32("option_id"));
        }
        // Only val64 goes back, as Linux copies just that field.
        final MemorySegment val = MemorySegment.ofArray(new long[] {u.u64("val64")});
        u.process.mm().copyToUser(u.userVa + Iommufd.offsetof(Iommufd.IOMMU_OPTION_LAYOUT, "val64"), val, 0, 8);
        return 0;
    }

    private static void rlimitMode(final Ucmd u) {
        if (u.u32("object_id") != 0) {
            throw Ucmd.unsupported("RLIMIT_MODE is global: object_id must be 0");
        }
        switch (u.u16("op")) {
            case Iommufd.IOMMU_OPTION_OP_GET -> u.putU64("val64", u.ctx.accountMode() == IommufdCtx.ACCOUNT_MM ? 1 : 0);
            case Iommufd.IOMMU_OPTION_OP_SET -> {
                if (!u.process.root()) {
                    throw new KernelException(Errno.EPERM, "RLIMIT_MODE needs CAP_SYS_RESOURCE");
                }
                if (!u.ctx.objects.empty()) {
                    throw new KernelException(Errno.EBUSY, "RLIMIT_MODE with objects in the context");
                }
                final long v = u.u64("val64");
                if (v == 0) {
                    u.ctx.setAccountMode(IommufdCtx.ACCOUNT_USER);
                } else if (v == 1) {
                    u.ctx.setAccountMode(IommufdCtx.ACCOUNT_MM);
                } else {
                    throw new KernelException(Errno.EINVAL, "RLIMIT_MODE " + v);
                }
            }
            default -> throw Ucmd.unsupported("option op " + u.u16("op"));
        }
    }

    private static void hugePages(final Ucmd u) {
        final Ioas ioas = u.ctx.objects.get(u.u32("object_id"), ObjectType.IOAS, Ioas.class);
        switch (u.u16("op")) {
            case Iommufd.IOMMU_OPTION_OP_GET -> {
                ioas.iovaLock.readLock().lock();
                try {
                    u.putU64("val64", ioas.iopt.largePagesDisabled() ? 0 : 1);
                } finally {
                    ioas.iovaLock.readLock().unlock();
                }
            }
            case Iommufd.IOMMU_OPTION_OP_SET -> {
                final long v = u.u64("val64");
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
            default -> throw Ucmd.unsupported("option op " + u.u16("op"));
        }
    }
}
