package org.iopersist.kernel.iommufd;

import org.iopersist.kernel.guestmemfs.GuestmemFile;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.mm.memfd.MemFd;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasMapFile;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.Iommufd;

/**
 * IOAS_MAP, IOAS_MAP_FILE, IOAS_COPY and IOAS_UNMAP, in the check order of {@code ioas.c} and
 * {@code io_pagetable.c}.
 */
final class MapOps {
    private MapOps() {
    }

    private static final int MAP_FLAGS = Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA | Iommufd.IOMMU_IOAS_MAP_WRITEABLE
            | Iommufd.IOMMU_IOAS_MAP_READABLE;

    static int prot(final int flags) {
        return ((flags & Iommufd.IOMMU_IOAS_MAP_READABLE) != 0 ? IoasDomain.IOMMU_READ : 0)
                | ((flags & Iommufd.IOMMU_IOAS_MAP_WRITEABLE) != 0 ? IoasDomain.IOMMU_WRITE : 0);
    }

    /** A piece of pages to place: the pages, the byte in them where it starts, its length. */
    record Piece(IoptPages pages, long startByte, long length) {
    }

    static long map(final Ucmd u) {
        u.ctx.checkMutable("IOAS_MAP");
        final int flags = IommuIoasMap.flags(u.cmd);
        if ((flags & ~MAP_FLAGS) != 0 || IommuIoasMap.reserved(u.cmd) != 0) {
            throw Ucmd.unsupported("IOAS_MAP flags or __reserved");
        }
        final long iova = IommuIoasMap.iova(u.cmd);
        final long length = IommuIoasMap.length(u.cmd);
        if (iova == -1L || length == -1L) {
            throw new KernelException(Errno.EOVERFLOW, "iova or length is ULONG_MAX");
        }
        if (prot(flags) == 0) {
            throw new KernelException(Errno.EINVAL, "neither READABLE nor WRITEABLE");
        }
        final Ioas ioas = u.ctx.objects.get(IommuIoasMap.ioasId(u.cmd), ObjectType.IOAS, Ioas.class);
        final long uptr = IommuIoasMap.userVa(u.cmd);
        final org.iopersist.kernel.mm.AddressSpace.FileRange backing = u.process.mm().fileRange(uptr, length);
        final IoptPages pages;
        if (backing != null && backing.file() instanceof GuestmemFile g) {
            pages = IoptPages.ofGuestmem(u.process, g, backing.offset(), length, u.ctx.refs());
        } else if (u.ctx.persistent()) {
            throw new KernelException(Errno.EINVAL, String.format(
                    "persistent iommufd %d: [0x%x, +0x%x) is not all one guestmemfs mapping", u.ctx.persistentId(), uptr, length));
        } else {
            pages = IoptPages.ofUser(u.process, uptr, length, true, u.ctx.refs());
        }
        final long chosen = place(ioas, List.of(new Piece(pages, IoptPages.pageOffset(uptr), length)), length, iova,
                flags, uptr);
        IommuIoasMap.iova(u.cmd, chosen);
        u.respond();
        return 0;
    }

    static long mapFile(final Ucmd u) {
        u.ctx.checkMutable("IOAS_MAPFILE");
        final int flags = IommuIoasMapFile.flags(u.cmd);
        if ((flags & ~MAP_FLAGS) != 0) {
            throw Ucmd.unsupported("IOAS_MAP_FILE flags");
        }
        final long iova = IommuIoasMapFile.iova(u.cmd);
        final long length = IommuIoasMapFile.length(u.cmd);
        final long start = IommuIoasMapFile.start(u.cmd);
        if (iova == -1L || length == -1L || start == -1L) {
            throw new KernelException(Errno.EOVERFLOW, "iova, start or length is ULONG_MAX");
        }
        if (prot(flags) == 0) {
            throw new KernelException(Errno.EINVAL, "neither READABLE nor WRITEABLE");
        }
        final Ioas ioas = u.ctx.objects.get(IommuIoasMapFile.ioasId(u.cmd), ObjectType.IOAS, Ioas.class);
        final int fd = IommuIoasMapFile.fd(u.cmd);
        if (fd < 0) {
            throw new KernelException(Errno.EBADF, "fd " + fd);
        }
        final KernelFile f = u.process.fds().get(fd);
        final IoptPages pages;
        if (f instanceof GuestmemFile g) {
            pages = IoptPages.ofGuestmem(u.process, g, start, length, u.ctx.refs());
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
        final long chosen = place(ioas, List.of(new Piece(pages, IoptPages.pageOffset(start), length)), length, iova,
                flags, start);
        IommuIoasMapFile.iova(u.cmd, chosen);
        u.respond();
        return 0;
    }

    /**
     * iopt_map_pages: chooses or checks the IOVA, inserts one area per piece and fills the domains.
     * The pieces' pages references move into the areas; on failure they are dropped.
     */
    private static long place(final Ioas ioas, final List<Piece> pieces, final long length, final long fixedIova,
                              final int flags, final long addrHint) {
        ioas.domainsLock.readLock().lock();
        ioas.iovaLock.writeLock().lock();
        final List<Ioas.Area> added = new ArrayList<>();
        try {
            final IoPagetable<Ioas.Area> iopt = ioas.iopt;
            if (length == 0 || Long.remainderUnsigned(length, iopt.iovaAlignment()) != 0) {
                throw new KernelException(Errno.EINVAL, "length 0x" + Long.toHexString(length) + " not aligned to 0x"
                        + Long.toHexString(iopt.iovaAlignment()));
            }
            final long iova;
            if ((flags & Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA) != 0) {
                iopt.checkFixed(fixedIova, length);
                iova = fixedIova;
            } else {
                iova = iopt.allocIova(addrHint, length);
            }
            long at = iova;
            for (Piece p : pieces) {
                if ((prot(flags) & IoasDomain.IOMMU_WRITE) != 0 && !p.pages().writable) {
                    throw new KernelException(Errno.EPERM, "pages are not writable");
                }
                if (Long.remainderUnsigned(p.startByte() & (IoPagetable.PAGE_SIZE - 1), iopt.iovaAlignment()) != 0) {
                    throw new KernelException(Errno.EINVAL, "page offset not aligned to the IOAS");
                }
                final Ioas.Area a = new Ioas.Area(at, at + p.length() - 1, prot(flags), p.pages(), p.startByte());
                ioas.addArea(a);
                added.add(a);
                at += p.length();
            }
            return iova;
        } catch (RuntimeException e) {
            for (Ioas.Area a : added) {
                ioas.removeArea(a); // drops the reference the piece moved into it
            }
            for (int i = added.size(); i < pieces.size(); i++) {
                pieces.get(i).pages().put();
            }
            throw e;
        } finally {
            ioas.iovaLock.writeLock().unlock();
            ioas.domainsLock.readLock().unlock();
        }
    }

    static long copy(final Ucmd u) {
        u.ctx.checkMutable("IOAS_COPY");
        final int flags = IommuIoasCopy.flags(u.cmd);
        if ((flags & ~MAP_FLAGS) != 0) {
            throw Ucmd.unsupported("IOAS_COPY flags");
        }
        final long length = IommuIoasCopy.length(u.cmd);
        final long srcIova = IommuIoasCopy.srcIova(u.cmd);
        final long dstIova = IommuIoasCopy.dstIova(u.cmd);
        if (length == -1L || srcIova == -1L || dstIova == -1L) {
            throw new KernelException(Errno.EOVERFLOW, "length or an iova is ULONG_MAX");
        }
        if (prot(flags) == 0) {
            throw new KernelException(Errno.EINVAL, "neither READABLE nor WRITEABLE");
        }
        final Ioas src = u.ctx.objects.get(IommuIoasCopy.srcIoasId(u.cmd), ObjectType.IOAS, Ioas.class);
        final List<Piece> pieces = getPages(src, srcIova, length);
        final Ioas dst;
        try {
            dst = u.ctx.objects.get(IommuIoasCopy.dstIoasId(u.cmd), ObjectType.IOAS, Ioas.class);
        } catch (KernelException e) {
            pieces.forEach(p -> p.pages().put());
            throw e;
        }
        final long hint = pieces.get(0).pages().addressOf(pieces.get(0).startByte());
        final long chosen = place(dst, pieces, length, dstIova, flags, hint);
        IommuIoasCopy.dstIova(u.cmd, chosen);
        u.respond();
        return 0;
    }

    /**
     * iopt_get_pages: the pages under {@code [iova, iova + length)}, which contiguous areas must
     * cover without a gap (ENOENT otherwise); each piece takes a pages reference.
     */
    static List<Piece> getPages(final Ioas ioas, final long iova, final long length) {
        final long last = IovaMath.lastOf(iova, length);
        ioas.iovaLock.readLock().lock();
        try {
            final List<Piece> out = new ArrayList<>();
            long cur = iova;
            for (Ioas.Area a : ioas.iopt.areasIn(iova, last)) {
                if (a.start() != cur && !(out.isEmpty() && Long.compareUnsigned(a.start(), cur) < 0)) {
                    break;
                }
                final long end = Long.compareUnsigned(a.last(), last) < 0 ? a.last() : last;
                out.add(new Piece(a.pages(), a.startByte() + (cur - a.start()), end - cur + 1));
                if (end == last) {
                    out.forEach(p -> p.pages().get());
                    return out;
                }
                cur = end + 1;
            }
            throw new KernelException(Errno.ENOENT, String.format("[0x%x, 0x%x] is not covered by areas", iova, last));
        } finally {
            ioas.iovaLock.readLock().unlock();
        }
    }

    static long unmap(final Ucmd u) {
        u.ctx.checkMutable("IOAS_UNMAP");
        final Ioas ioas = u.ctx.objects.get(IommuIoasUnmap.ioasId(u.cmd), ObjectType.IOAS, Ioas.class);
        final long iova = IommuIoasUnmap.iova(u.cmd);
        final long length = IommuIoasUnmap.length(u.cmd);
        final long unmapped;
        if (iova == 0 && length == -1L) {
            unmapped = unmapRange(ioas, 0, -1L, true);
        } else {
            if (iova == -1L || length == -1L) {
                throw new KernelException(Errno.EOVERFLOW, "iova or length is ULONG_MAX");
            }
            unmapped = unmapRange(ioas, iova, IovaMath.lastOf(iova, length), false);
        }
        IommuIoasUnmap.length(u.cmd, unmapped);
        u.respond();
        return 0;
    }

    /**
     * iopt_unmap_iova_range: every area intersecting [start, last] must lie inside it (ENOENT),
     * removed in ascending order (those before a failure stay removed); nothing found is ENOENT, except
     * for unmap-all, which succeeds on an empty IOAS.
     */
    static long unmapRange(final Ioas ioas, final long start, final long last, final boolean all) {
        long unmapped = 0;
        for (int tries = 0; ; tries++) {
            final java.util.List<Access> pinning;
            ioas.domainsLock.readLock().lock();
            ioas.iovaLock.writeLock().lock();
            try {
                Ioas.Area blocked = null;
                for (Ioas.Area a : ioas.iopt.areasIn(start, last)) {
                    if (Long.compareUnsigned(a.start(), start) < 0 || Long.compareUnsigned(a.last(), last) > 0) {
                        throw new KernelException(Errno.ENOENT, String.format("area [0x%x, 0x%x] is not inside the range",
                                a.start(), a.last()));
                    }
                    if (!ioas.accessesPinning(a.start(), a.last()).isEmpty()) {
                        blocked = a;
                        break;
                    }
                    ioas.removeArea(a);
                    unmapped += a.length();
                }
                if (blocked == null) {
                    if (unmapped == 0 && !all) {
                        throw new KernelException(Errno.ENOENT, String.format("nothing mapped in [0x%x, 0x%x]", start, last));
                    }
                    return unmapped;
                }
                if (tries >= 100) {
                    throw new KernelException(Errno.EDEADLK, String.format("an access keeps [0x%x, 0x%x] pinned",
                            blocked.start(), blocked.last()));
                }
                pinning = ioas.accessesPinning(blocked.start(), blocked.last());
                // Ask the accesses to let go, outside the locks (their unpin takes them), then retry.
                final long from = blocked.start();
                final long len = blocked.length();
                ioas.iovaLock.writeLock().unlock();
                ioas.domainsLock.readLock().unlock();
                try {
                    for (Access a : pinning) {
                        a.ops.unmap(from, len);
                    }
                } finally {
                    ioas.domainsLock.readLock().lock();
                    ioas.iovaLock.writeLock().lock();
                }
            } finally {
                ioas.iovaLock.writeLock().unlock();
                ioas.domainsLock.readLock().unlock();
            }
        }
    }
}
