package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.guestmemfs.GuestmemFile;
import org.iopersist.kernel.mm.AddressSpace;
import org.iopersist.kernel.mm.memfd.MemFd;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasMapFile;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.IommuIovaRange;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;

/**
 * IOMMUFD_OBJ_IOAS, an IO address space, and its ioctls ({@code ioas.c}): IOAS_ALLOC, IOVA_RANGES,
 * ALLOW_IOVAS, MAP, MAP_FILE, COPY, UNMAP, and the IOAS and RLIMIT_MODE options. The IOVA
 * bookkeeping and every algorithm over it are the {@link IoPagetable}'s; each domain attached (a
 * {@link HwptPaging}) mirrors it.
 *
 * <p>Each handler checks in Linux's order: unknown flags and reserved fields (EOPNOTSUPP), overflow
 * (EOVERFLOW), semantics (EINVAL), then lookups (ENOENT); nothing changes before the last check.
 * A handler holds a short-term reference on every IOAS it looked up until it returns.
 *
 * <p>References held on an IOAS: the object table's, one per HWPT over it, one per access attached,
 * and one per ioctl in flight that named it.
 */
public final class Ioas extends IommufdObject {
    private static final int MAP_FLAGS = Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA | Iommufd.IOMMU_IOAS_MAP_WRITEABLE
            | Iommufd.IOMMU_IOAS_MAP_READABLE;

    final IoPagetable iopt;

    Ioas(final FailPoints fail) {
        super(ObjectType.IOAS);
        this.iopt = new IoPagetable(fail);
    }

    /** iommufd_get_ioas: the IOAS {@code id} with a short-term reference, put by the caller. @throws KernelException ENOENT */
    static Ioas get(final IommufdCtx ctx, final int id) {
        return ctx.objects.getObject(id, ObjectType.IOAS, Ioas.class);
    }

    /** iommufd_ioas_destroy: iopt_destroy_table; never fails. */
    @Override
    void destroy() {
        iopt.destroyTable();
    }

    /** MAP, MAP_FILE and COPY: a flag outside IOMMU_IOAS_MAP_* is EOPNOTSUPP. */
    private static void checkMapFlags(final int flags, final String what) {
        if ((flags & ~MAP_FLAGS) != 0) {
            throw Ucmd.unsupported(what + " flags");
        }
    }

    /** conv_iommu_prot; neither READABLE nor WRITEABLE is EINVAL. */
    private static int iommuProt(final int flags) {
        final int prot = ((flags & Iommufd.IOMMU_IOAS_MAP_READABLE) != 0 ? IoasDomain.IOMMU_READ : 0)
                | ((flags & Iommufd.IOMMU_IOAS_MAP_WRITEABLE) != 0 ? IoasDomain.IOMMU_WRITE : 0);
        if (prot == 0) {
            throw new KernelException(Errno.EINVAL, "neither READABLE nor WRITEABLE");
        }
        return prot;
    }

    /** Whether the caller left the IOVA to the kernel (no IOMMU_IOAS_MAP_FIXED_IOVA). */
    private static boolean allocIova(final int flags) {
        return (flags & Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA) == 0;
    }

    // ------------------------------------------------------------------ ioctls

    /** iommufd_ioas_alloc_ioctl. */
    static long alloc(final Ucmd u) {
        u.ctx.checkMutable("IOAS_ALLOC");
        if (IommuIoasAlloc.flags(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_ALLOC flags");
        }
        final int id = u.ctx.objects.reserve();
        final Ioas ioas = new Ioas(u.ctx.fail);
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

    /** iommufd_ioas_iova_ranges. */
    static long iovaRanges(final Ucmd u) {
        if (IommuIoasIovaRanges.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_IOVA_RANGES __reserved");
        }
        final Ioas ioas = get(u.ctx, IommuIoasIovaRanges.ioasId(u.cmd));
        try {
            final long max = Integer.toUnsignedLong(IommuIoasIovaRanges.numIovas(u.cmd));
            final long rangesVa = IommuIoasIovaRanges.allowedIovas(u.cmd);
            final List<IovaInterval> ranges;
            final long alignment;
            ioas.iopt.iovaLock.readLock().lock();
            try {
                ranges = ioas.iopt.usableRanges();
                alignment = ioas.iopt.iovaAlignment();
            } finally {
                ioas.iopt.iovaLock.readLock().unlock();
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
        } finally {
            u.ctx.objects.putObject(ioas);
        }
    }

    /** iommufd_ioas_allow_iovas. */
    static long allowIovas(final Ucmd u) {
        if (IommuIoasAllowIovas.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_ALLOW_IOVAS __reserved");
        }
        u.ctx.checkMutable("IOAS_ALLOW_IOVAS"); // allowed ranges are in the handover
        final Ioas ioas = get(u.ctx, IommuIoasAllowIovas.ioasId(u.cmd));
        try {
            final long count = Integer.toUnsignedLong(IommuIoasAllowIovas.numIovas(u.cmd));
            if (count > 1 << 16) {
                throw new KernelException(Errno.ENOMEM, "num_iovas " + count);
            }
            final long va = IommuIoasAllowIovas.allowedIovas(u.cmd);
            final List<IovaInterval> ranges = new ArrayList<>();
            final MemorySegment elm = MemorySegment.ofArray(new long[2]);
            for (int i = 0; i < count; i++) {
                u.process.mm().copyFromUser(va + IommuIovaRange.SIZE * i, elm, 0, IommuIovaRange.SIZE);
                final long start = IommuIovaRange.start(elm);
                final long last = IommuIovaRange.last(elm);
                if (Long.compareUnsigned(start, last) >= 0) {
                    throw new KernelException(Errno.EINVAL, String.format("allowed range [0x%x, 0x%x] is empty", start, last));
                }
                u.ctx.fail.kzalloc("iopt_allowed"); // iommufd_ioas_load_iovas, one per range
                ranges.add(new IovaInterval(start, last));
            }
            ioas.iopt.iovaLock.writeLock().lock();
            try {
                ioas.iopt.setAllowed(ranges);
            } finally {
                ioas.iopt.iovaLock.writeLock().unlock();
            }
            return 0;
        } finally {
            u.ctx.objects.putObject(ioas);
        }
    }

    /** iommufd_ioas_map: iopt_map_user_pages over the caller's memory (a guestmemfs mapping becomes file pages). */
    static long map(final Ucmd u) {
        u.ctx.checkMutable("IOAS_MAP");
        final int flags = IommuIoasMap.flags(u.cmd);
        checkMapFlags(flags, "IOAS_MAP");
        if (IommuIoasMap.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_MAP __reserved");
        }
        final long iova = IommuIoasMap.iova(u.cmd);
        final long length = IommuIoasMap.length(u.cmd);
        IovaMath.checkNotUlongMax("iova or length", iova, length);
        final int prot = iommuProt(flags);
        final Ioas ioas = get(u.ctx, IommuIoasMap.ioasId(u.cmd));
        try {
            ioas.checkLiveupdateMutable("IOAS_MAP");
            IommuIoasMap.iova(u.cmd, mapUserPages(u.ctx, u.process, ioas, IommuIoasMap.userVa(u.cmd), length, iova,
                    allocIova(flags), prot));
            u.respond();
            return 0;
        } finally {
            u.ctx.objects.putObject(ioas);
        }
    }

    /**
     * iopt_map_user_pages: maps the caller's {@code [uptr, uptr + length)} at {@code iova} (or an IOVA
     * the IOAS chooses) and returns it. A guestmemfs mapping becomes file pages; a persistent context
     * maps nothing else (EINVAL). Shared by IOAS_MAP and VFIO_IOMMU_MAP_DMA.
     */
    static long mapUserPages(final IommufdCtx ctx, final UserProcess process, final Ioas ioas, final long uptr,
            final long length, final long iova, final boolean allocIova, final int prot) {
        final AddressSpace.FileRange backing = process.mm().fileRange(uptr, length);
        final IoptPages pages;
        if (backing != null && backing.file() instanceof GuestmemFile g) {
            pages = IoptPages.ofGuestmem(process, g, backing.offset(), length, ctx.refs());
        } else if (ctx.persistent()) {
            throw new KernelException(Errno.EINVAL, String.format(
                    "persistent iommufd %d: [0x%x, +0x%x) is not all one guestmemfs mapping", ctx.persistentId(), uptr, length));
        } else {
            pages = IoptPages.ofUser(process, uptr, length, (prot & IoasDomain.IOMMU_WRITE) != 0, ctx.refs());
        }
        ctx.fail.kzalloc("iopt_pages"); // iopt_alloc_pages, after its checks
        return ioas.iopt.mapCommon(pages, uptr, length, iova, allocIova, prot);
    }

    /** iommufd_ioas_map_file: iopt_map_file_pages over a memfd or a guestmemfs file. */
    static long mapFile(final Ucmd u) {
        u.ctx.checkMutable("IOAS_MAPFILE");
        final int flags = IommuIoasMapFile.flags(u.cmd);
        checkMapFlags(flags, "IOAS_MAP_FILE");
        final long iova = IommuIoasMapFile.iova(u.cmd);
        final long length = IommuIoasMapFile.length(u.cmd);
        final long start = IommuIoasMapFile.start(u.cmd);
        IovaMath.checkNotUlongMax("iova, start or length", iova, length, start);
        final int prot = iommuProt(flags);
        final Ioas ioas = get(u.ctx, IommuIoasMapFile.ioasId(u.cmd));
        try {
            ioas.checkLiveupdateMutable("IOAS_MAP_FILE");
            final int fd = IommuIoasMapFile.fd(u.cmd);
            if (fd < 0) {
                throw new KernelException(Errno.EBADF, "fd " + fd);
            }
            final KernelFile f = u.process.fds().get(fd);
            final IoptPages pages;
            if (f instanceof GuestmemFile g) {
                pages = IoptPages.ofGuestmem(u.process, g, start, length, u.ctx.refs()).mappedByFile();
            } else if (u.ctx.persistent()) {
                throw new KernelException(Errno.EINVAL, "persistent iommufd " + u.ctx.persistentId() + ": " + f.describe()
                        + " is not a guestmemfs file");
            } else if (f instanceof MemFd memfd) {
                if (Long.compareUnsigned(start + length, memfd.size()) > 0 || Long.compareUnsigned(start + length, start) < 0) {
                    throw new KernelException(Errno.EINVAL, "range beyond the end of " + f.describe());
                }
                pages = IoptPages.ofFile(u.process, memfd, start, length);
            } else {
                throw new KernelException(Errno.EINVAL, f.describe() + " cannot back DMA (not a memfd or guestmemfs file)");
            }
            u.ctx.fail.kzalloc("iopt_pages"); // iopt_alloc_file_pages, after its checks
            IommuIoasMapFile.iova(u.cmd, ioas.iopt.mapCommon(pages, start, length, iova, allocIova(flags), prot));
            u.respond();
            return 0;
        } finally {
            u.ctx.objects.putObject(ioas);
        }
    }

    /**
     * iommufd_ioas_copy: iopt_get_pages from the source (put before the destination is looked up,
     * as Linux does), then iopt_map_pages into the destination.
     */
    static long copy(final Ucmd u) {
        u.ctx.checkMutable("IOAS_COPY");
        final int flags = IommuIoasCopy.flags(u.cmd);
        checkMapFlags(flags, "IOAS_COPY");
        final long length = IommuIoasCopy.length(u.cmd);
        final long srcIova = IommuIoasCopy.srcIova(u.cmd);
        final long dstIova = IommuIoasCopy.dstIova(u.cmd);
        IovaMath.checkNotUlongMax("length or an iova", length, srcIova, dstIova);
        final int prot = iommuProt(flags);
        final Ioas src = get(u.ctx, IommuIoasCopy.srcIoasId(u.cmd));
        final List<IoPagetable.PagesList> pagesList;
        try {
            pagesList = src.iopt.getPages(srcIova, length);
        } finally {
            u.ctx.objects.putObject(src);
        }
        final Ioas dst;
        try {
            dst = get(u.ctx, IommuIoasCopy.dstIoasId(u.cmd));
        } catch (KernelException e) {
            pagesList.forEach(p -> p.pages().put()); // iopt_free_pages_list
            throw e;
        }
        try {
            if (dst.iopt.liveupdateImmutable) {
                pagesList.forEach(p -> p.pages().put()); // iopt_free_pages_list
                dst.checkLiveupdateMutable("IOAS_COPY");
            }
            final IoPagetable.PagesList first = pagesList.get(0);
            IommuIoasCopy.dstIova(u.cmd, dst.iopt.mapPages(pagesList, length, dstIova, allocIova(flags), prot,
                    first.pages().addressOf(first.startByte())));
            u.respond();
            return 0;
        } finally {
            u.ctx.objects.putObject(dst);
        }
    }

    /** iommufd_ioas_unmap: iova 0 with length U64_MAX is iopt_unmap_all, anything else iopt_unmap_iova. */
    static long unmap(final Ucmd u) {
        u.ctx.checkMutable("IOAS_UNMAP");
        final Ioas ioas = get(u.ctx, IommuIoasUnmap.ioasId(u.cmd));
        try {
            ioas.checkLiveupdateMutable("IOAS_UNMAP");
            final long iova = IommuIoasUnmap.iova(u.cmd);
            final long length = IommuIoasUnmap.length(u.cmd);
            final long unmapped;
            if (iova == 0 && length == -1L) {
                unmapped = ioas.iopt.unmapIovaRange(0, -1L, true);
            } else {
                IovaMath.checkNotUlongMax("iova or length", iova, length);
                unmapped = ioas.iopt.unmapIovaRange(iova, IovaMath.lastOf(iova, length), false);
            }
            IommuIoasUnmap.length(u.cmd, unmapped);
            u.respond();
            return 0;
        } finally {
            u.ctx.objects.putObject(ioas);
        }
    }

    /** iommufd_option_rlimit_mode: a context-wide option (object_id 0); SET needs CAP_SYS_RESOURCE and an empty context. */
    static void rlimitMode(final Ucmd u) {
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

    /** iommufd_ioas_option: IOMMU_OPTION_HUGE_PAGES on the IOAS named by object_id. */
    static void option(final Ucmd u) {
        final Ioas ioas = get(u.ctx, IommuOption.objectId(u.cmd));
        try {
            switch (IommuOption.op(u.cmd)) {
                case Iommufd.IOMMU_OPTION_OP_GET -> {
                    ioas.iopt.iovaLock.readLock().lock();
                    try {
                        IommuOption.val64(u.cmd, ioas.iopt.largePagesDisabled() ? 0 : 1);
                    } finally {
                        ioas.iopt.iovaLock.readLock().unlock();
                    }
                }
                case Iommufd.IOMMU_OPTION_OP_SET -> {
                    final long v = IommuOption.val64(u.cmd);
                    if (v != 0 && v != 1) {
                        throw new KernelException(Errno.EINVAL, "HUGE_PAGES " + v);
                    }
                    u.ctx.checkMutable("HUGE_PAGES"); // handed over with the IOAS
                    ioas.iopt.iovaLock.writeLock().lock();
                    try {
                        ioas.iopt.setLargePages(v == 1);
                    } finally {
                        ioas.iopt.iovaLock.writeLock().unlock();
                    }
                }
                default -> throw Ucmd.unsupported("option op " + IommuOption.op(u.cmd));
            }
        } finally {
            u.ctx.objects.putObject(ioas);
        }
    }

    // ------------------------------------------------------------------ live update

    /** EBUSY while a HWPT over this IOAS is preserved for a live update (the IOAS is immutable). */
    void checkLiveupdateMutable(final String what) {
        if (iopt.liveupdateImmutable) {
            throw new KernelException(Errno.EBUSY, what + " on IOAS " + id() + ": a preserved HWPT makes it immutable");
        }
    }

    /** Whether a preserved HWPT makes this IOAS immutable. */
    public boolean liveupdateImmutable() {
        return iopt.liveupdateImmutable;
    }

    /** ioas_set_immutable. */
    public void liveupdateImmutable(final boolean on) {
        iopt.domainsLock.writeLock().lock();
        try {
            iopt.liveupdateImmutable = on;
        } finally {
            iopt.domainsLock.writeLock().unlock();
        }
    }

    /** What an IOAS holds, read at once under iova_rwsem: what a live update hands over. */
    public record State(long iovaAlignment, boolean hugePages, List<IovaInterval> allowed, List<IoptArea> areas) {
    }

    /** This IOAS's state, areas by IOVA. */
    public State state() {
        iopt.iovaLock.readLock().lock();
        try {
            return new State(iopt.iovaAlignment(), !iopt.largePagesDisabled(), iopt.allowedRanges(),
                    List.copyOf(iopt.areas().values()));
        } finally {
            iopt.iovaLock.readLock().unlock();
        }
    }

    /**
     * An IOAS re-hydrated from a handover into {@code ctx} under its old {@code id}. Each area's
     * pages reference moves into it; pages several areas share (a copy) get one reference per area,
     * as after IOAS_COPY. Nothing is pinned until a domain is adopted over it.
     */
    public static Ioas restore(final IommufdCtx ctx, final int id, final State state) {
        final Ioas ioas = new Ioas(ctx.fail);
        ioas.iopt.iovaLock.writeLock().lock();
        try {
            ioas.iopt.setIovaAlignment(state.iovaAlignment());
            ioas.iopt.setLargePagesDisabled(!state.hugePages());
            if (!state.allowed().isEmpty()) {
                ioas.iopt.setAllowed(state.allowed());
            }
            final Set<IoptPages> referenced = Collections.newSetFromMap(new IdentityHashMap<>());
            for (IoptArea a : state.areas()) {
                if (!referenced.add(a.pages())) {
                    a.pages().get(); // each area holds a reference, as after a copy; dropped by unmap
                }
                ioas.iopt.insertArea(a);
            }
        } finally {
            ioas.iopt.iovaLock.writeLock().unlock();
        }
        ctx.objects.insertRestored(id, ioas);
        return ioas;
    }
}
