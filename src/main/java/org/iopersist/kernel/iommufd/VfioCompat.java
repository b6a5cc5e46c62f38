package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuVfioIoas;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioIommuType1DmaMap;
import org.iopersist.uapi.VfioIommuType1DmaUnmap;
import org.iopersist.uapi.VfioIommuType1Info;
import org.iopersist.uapi.VfioIommuType1InfoCapIovaRange;
import org.iopersist.uapi.VfioIommuType1InfoDmaAvail;
import org.iopersist.uapi.VfioInfoCapHeader;
import org.iopersist.uapi.VfioIovaRange;

/**
 * VFIO type1 compatibility ({@code vfio_compat.c}): an iommufd answers the container ioctls of
 * {@code /dev/vfio/vfio} on its own fd, so a VMM that speaks type1 maps through it unchanged. They
 * work on one IOAS of the context, the compatibility IOAS, named by {@code IOMMU_VFIO_IOAS}; with
 * none, every type1 call that needs it is ENODEV.
 *
 * <p>Dispatch: any ioctl whose number lies outside iommufd's table comes here
 * ({@code iommufd_vfio_ioctl}); one this file does not know is ENOTTY, as Linux's ENOIOCTLCMD.
 * VFIO's framing applies: {@code minsz} bytes are copied first (EFAULT), {@code argsz < minsz} or
 * an unknown flag is EINVAL.
 */
final class VfioCompat {
    /** U32_MAX, what iommufd reports as the mappings still allowed (iommufd_fill_cap_dma_avail). */
    private static final int DMA_AVAIL = -1;

    private VfioCompat() {
    }

    // ------------------------------------------------------------------ IOMMU_VFIO_IOAS

    /** iommufd_vfio_ioas: GET (ENODEV before a SET), SET (ENOENT for no IOAS), CLEAR. */
    static long vfioIoas(final Ucmd u) {
        if (IommuVfioIoas.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("IOMMU_VFIO_IOAS __reserved");
        }
        switch (IommuVfioIoas.op(u.cmd)) {
            case Iommufd.IOMMU_VFIO_IOAS_GET -> {
                final Ioas ioas = u.ctx.objects.compatIoas();
                IommuVfioIoas.ioasId(u.cmd, ioas.id());
                u.ctx.objects.putObject(ioas);
                u.respond();
            }
            case Iommufd.IOMMU_VFIO_IOAS_SET -> {
                final Ioas ioas = Ioas.get(u.ctx, IommuVfioIoas.ioasId(u.cmd));
                u.ctx.objects.setCompatIoas(ioas);
                u.ctx.objects.putObject(ioas);
            }
            case Iommufd.IOMMU_VFIO_IOAS_CLEAR -> u.ctx.objects.setCompatIoas(null);
            default -> throw Ucmd.unsupported("IOMMU_VFIO_IOAS op " + IommuVfioIoas.op(u.cmd));
        }
        return 0;
    }

    // ------------------------------------------------------------------ the container ioctls

    /** iommufd_vfio_ioctl: {@code arg} is a user pointer or, for the first three, a value. */
    static long ioctl(final IommufdCtx ctx, final UserProcess p, final int cmd, final long arg) {
        return switch (cmd) {
            case Vfio.VFIO_GET_API_VERSION -> Vfio.VFIO_API_VERSION;
            case Vfio.VFIO_SET_IOMMU -> setIommu(ctx, arg);
            case Vfio.VFIO_CHECK_EXTENSION -> checkExtension(ctx, arg);
            case Vfio.VFIO_IOMMU_GET_INFO -> getInfo(ctx, p, arg);
            case Vfio.VFIO_IOMMU_MAP_DMA -> mapDma(ctx, p, arg);
            case Vfio.VFIO_IOMMU_UNMAP_DMA -> unmapDma(ctx, p, arg);
            // VFIO_IOMMU_DIRTY_PAGES and everything else: ENOIOCTLCMD, which userspace sees as ENOTTY.
            default -> throw new KernelException(Errno.ENOTTY, "ioctl 0x" + Integer.toHexString(cmd) + " on an iommufd");
        };
    }

    /** iommufd_vfio_check_extension: type1, type1v2 and unmap-all yes; cache coherency per HWPT; the rest no. */
    private static long checkExtension(final IommufdCtx ctx, final long type) {
        if (type == Vfio.VFIO_TYPE1_IOMMU || type == Vfio.VFIO_TYPE1v2_IOMMU || type == Vfio.VFIO_UNMAP_ALL) {
            return 1;
        }
        if (type == Vfio.VFIO_DMA_CC_IOMMU) {
            return ccIommu(ctx);
        }
        return 0; // VFIO_TYPE1_NESTING_IOMMU, VFIO_UPDATE_VADDR, and anything unknown
    }

    /**
     * iommufd_vfio_cc_iommu: 1 if every HWPT of the compatibility IOAS enforces cache coherency (so
     * also with none), else 0; ENODEV without one. No domain here enforces it (no VT-d unit of the
     * model snoops, and the mock's capability is plain coherency, not its enforcement).
     */
    private static long ccIommu(final IommufdCtx ctx) {
        final Ioas ioas = ctx.objects.compatIoas();
        try {
            for (IommufdObject o : ctx.objects()) {
                if (o instanceof HwptPaging h && h.ioas == ioas) {
                    return 0;
                }
            }
            return 1;
        } finally {
            ctx.objects.putObject(ioas);
        }
    }

    /**
     * iommufd_vfio_set_iommu: type1 or type1v2 (EINVAL otherwise) once a compatibility IOAS exists
     * (ENODEV: VFIO fails it without a group). Type1 allows unmapping inside a mapping, which iommufd
     * emulates by disabling large pages on the IOAS (EINVAL if domains already map areas).
     */
    private static long setIommu(final IommufdCtx ctx, final long type) {
        if (type != Vfio.VFIO_TYPE1_IOMMU && type != Vfio.VFIO_TYPE1v2_IOMMU) {
            throw new KernelException(Errno.EINVAL, "VFIO_SET_IOMMU type " + type);
        }
        final Ioas ioas = ctx.objects.compatIoas();
        try {
            if (type == Vfio.VFIO_TYPE1_IOMMU) {
                ioas.iopt.disableLargePages();
            }
            return 0;
        } finally {
            ctx.objects.putObject(ioas);
        }
    }

    /** Copies VFIO's {@code minsz} bytes in. @throws KernelException EFAULT */
    private static MemorySegment copyIn(final UserProcess p, final long arg, final long minsz) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((minsz + 7) / 8)]).asSlice(0, minsz);
        p.mm().copyFromUser(arg, s, 0, minsz);
        return s;
    }

    /**
     * iommufd_vfio_map_dma: READ and WRITE are the only flags (VADDR is EINVAL); maps at the fixed
     * IOVA of the compatibility IOAS.
     */
    private static long mapDma(final IommufdCtx ctx, final UserProcess p, final long arg) {
        final MemorySegment map = copyIn(p, arg, VfioIommuType1DmaMap.MIN_SIZE);
        final int flags = Vfio.flags(map);
        if (Integer.toUnsignedLong(Vfio.argsz(map)) < VfioIommuType1DmaMap.MIN_SIZE
                || (flags & ~(Vfio.VFIO_DMA_MAP_FLAG_READ | Vfio.VFIO_DMA_MAP_FLAG_WRITE)) != 0) {
            throw new KernelException(Errno.EINVAL, String.format("VFIO_IOMMU_MAP_DMA argsz=%d flags=0x%x", Vfio.argsz(map), flags));
        }
        final int prot = ((flags & Vfio.VFIO_DMA_MAP_FLAG_READ) != 0 ? IoasDomain.IOMMU_READ : 0)
                | ((flags & Vfio.VFIO_DMA_MAP_FLAG_WRITE) != 0 ? IoasDomain.IOMMU_WRITE : 0);
        final Ioas ioas = ctx.objects.compatIoas();
        try {
            ctx.checkMutable("VFIO_IOMMU_MAP_DMA");
            Ioas.mapUserPages(ctx, p, ioas, VfioIommuType1DmaMap.vaddr(map), VfioIommuType1DmaMap.size(map),
                    VfioIommuType1DmaMap.iova(map), false, prot);
            return 0;
        } finally {
            ctx.objects.putObject(ioas);
        }
    }

    /**
     * iommufd_vfio_unmap_dma: only VFIO_DMA_UNMAP_FLAG_ALL (with iova = size = 0) is a flag; the
     * dirty bitmap and VADDR flags are EINVAL, as iommufd dropped them. With large pages disabled
     * (type1), the range's ends are cut first, so a hole can be punched in a mapping. The bytes
     * unmapped go back in {@code size}, also when the unmap fails part way.
     */
    private static long unmapDma(final IommufdCtx ctx, final UserProcess p, final long arg) {
        final MemorySegment unmap = copyIn(p, arg, VfioIommuType1DmaUnmap.MIN_SIZE);
        final int flags = Vfio.flags(unmap);
        if (Integer.toUnsignedLong(Vfio.argsz(unmap)) < VfioIommuType1DmaUnmap.MIN_SIZE
                || (flags & ~Vfio.VFIO_DMA_UNMAP_FLAG_ALL) != 0) {
            throw new KernelException(Errno.EINVAL, String.format("VFIO_IOMMU_UNMAP_DMA argsz=%d flags=0x%x", Vfio.argsz(unmap), flags));
        }
        final Ioas ioas = ctx.objects.compatIoas();
        try {
            final long iova = VfioIommuType1DmaUnmap.iova(unmap);
            final long size = VfioIommuType1DmaUnmap.size(unmap);
            ctx.checkMutable("VFIO_IOMMU_UNMAP_DMA");
            long unmapped = 0;
            KernelException failed = null;
            if ((flags & Vfio.VFIO_DMA_UNMAP_FLAG_ALL) != 0) {
                if (iova != 0 || size != 0) {
                    throw new KernelException(Errno.EINVAL, "VFIO_DMA_UNMAP_FLAG_ALL with an iova or size");
                }
                unmapped = ioas.iopt.unmapIovaRange(0, -1L, true);
            } else {
                try {
                    if (ioas.iopt.largePagesDisabledNow()) {
                        // Cuts at the start and the last of the range; a start of 0 needs none.
                        if (iova != 0) {
                            ioas.iopt.cutIova(iova + size - 1, iova - 1);
                        } else {
                            ioas.iopt.cutIova(iova + size - 1);
                        }
                    }
                    unmapped = ioas.iopt.unmapIovaRange(iova, IovaMath.lastOf(iova, size), false);
                } catch (KernelException e) {
                    failed = e;
                }
            }
            VfioIommuType1DmaUnmap.size(unmap, unmapped);
            p.mm().copyToUser(arg, unmap, 0, VfioIommuType1DmaUnmap.MIN_SIZE);
            if (failed != null) {
                throw failed;
            }
            return 0;
        } finally {
            ctx.objects.putObject(ioas);
        }
    }

    /**
     * iommufd_vfio_iommu_get_info: the page sizes, then the capability chain after the 24-byte
     * struct: DMA_AVAIL, then IOVA_RANGE (the holes of the reserved ranges), each starting 8-byte
     * aligned (the 12-byte DMA_AVAIL is padded to 16, so IOVA_RANGE's u64s are aligned). A
     * capability is written only where it fits whole in {@code argsz}, and a {@code next} only if
     * {@code argsz} reaches the capability it points at; {@code argsz} comes back as what the whole
     * chain needs, and {@code cap_offset} is set only if it all fit. Only {@code min(argsz, 24)}
     * bytes of the struct go back.
     */
    private static long getInfo(final IommufdCtx ctx, final UserProcess p, final long arg) {
        final MemorySegment info = copyIn(p, arg, VfioIommuType1Info.MIN_SIZE);
        final long argsz = Integer.toUnsignedLong(Vfio.argsz(info));
        if (argsz < VfioIommuType1Info.MIN_SIZE) {
            throw new KernelException(Errno.EINVAL, "VFIO_IOMMU_GET_INFO argsz=" + argsz);
        }
        final long minsz = Math.min(argsz, VfioIommuType1Info.SIZE);
        final Ioas ioas = ctx.objects.compatIoas();
        try {
            final MemorySegment out = MemorySegment.ofArray(new long[3]);
            Vfio.argsz(out, Vfio.argsz(info));
            Vfio.flags(out, Vfio.VFIO_IOMMU_INFO_PGSIZES);
            VfioIommuType1Info.iovaPgsizes(out, ioas.iopt.pagesizes());
            VfioIommuType1Info.capOffset(out, 0);
            final List<IovaInterval> holes;
            ioas.iopt.iovaLock.readLock().lock();
            try {
                holes = ioas.iopt.usableRanges();
            } finally {
                ioas.iopt.iovaLock.readLock().unlock();
            }
            long total = VfioIommuType1Info.SIZE;
            long lastCap = -1;
            for (int i = 0; i < 2; i++) {
                final long avail = argsz > total ? argsz - total : 0;
                final long capSize = (i == 0 ? fillDmaAvail(p, arg + total, avail) : fillIovaRanges(p, arg + total, avail, holes)) + 7 & ~7L;
                if (lastCap >= 0 && argsz >= total) {
                    final MemorySegment next = MemorySegment.ofArray(new int[1]);
                    next.set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED, 0, (int) total);
                    p.mm().copyToUser(arg + lastCap + VfioInfoCapHeader.NEXT_OFFSET, next, 0, 4);
                }
                lastCap = total;
                total += capSize;
            }
            if (argsz >= total) {
                VfioIommuType1Info.capOffset(out, (int) VfioIommuType1Info.SIZE);
            }
            Vfio.argsz(out, (int) total);
            Vfio.flags(out, Vfio.flags(out) | Vfio.VFIO_IOMMU_INFO_CAPS);
            p.mm().copyToUser(arg, out, 0, minsz);
            return 0;
        } finally {
            ctx.objects.putObject(ioas);
        }
    }

    /** iommufd_fill_cap_dma_avail: 12 bytes, written if they fit. */
    private static long fillDmaAvail(final UserProcess p, final long va, final long avail) {
        if (avail >= VfioIommuType1InfoDmaAvail.SIZE) {
            final MemorySegment cap = MemorySegment.ofArray(new byte[(int) VfioIommuType1InfoDmaAvail.SIZE]);
            VfioIommuType1InfoDmaAvail.id(cap, Vfio.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
            VfioIommuType1InfoDmaAvail.version(cap, 1);
            VfioIommuType1InfoDmaAvail.avail(cap, DMA_AVAIL);
            p.mm().copyToUser(va, cap, 0, cap.byteSize());
        }
        return VfioIommuType1InfoDmaAvail.SIZE;
    }

    /**
     * iommufd_fill_cap_iova: each range is written if the capability up to it fits, the header if
     * the capability with all of them does; returns the size of the whole capability.
     */
    private static long fillIovaRanges(final UserProcess p, final long va, final long avail, final List<IovaInterval> holes) {
        final MemorySegment range = MemorySegment.ofArray(new long[2]);
        for (int n = 0; n < holes.size(); n++) {
            if (avail >= VfioIommuType1InfoCapIovaRange.SIZE + VfioIovaRange.SIZE * (n + 1L)) {
                VfioIovaRange.start(range, holes.get(n).start());
                VfioIovaRange.end(range, holes.get(n).last());
                p.mm().copyToUser(va + VfioIommuType1InfoCapIovaRange.SIZE + VfioIovaRange.SIZE * n, range, 0, VfioIovaRange.SIZE);
            }
        }
        final long size = VfioIommuType1InfoCapIovaRange.SIZE + VfioIovaRange.SIZE * holes.size();
        if (avail >= size) {
            final MemorySegment cap = MemorySegment.ofArray(new long[2]);
            VfioIommuType1InfoCapIovaRange.id(cap, Vfio.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
            VfioIommuType1InfoCapIovaRange.version(cap, 1);
            VfioIommuType1InfoCapIovaRange.nrIovas(cap, holes.size());
            p.mm().copyToUser(va, cap, 0, VfioIommuType1InfoCapIovaRange.SIZE);
        }
        return size;
    }
}
