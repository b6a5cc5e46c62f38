package org.iopersist.kernel.iommufd;

import java.util.concurrent.atomic.AtomicInteger;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.guestmemfs.GuestmemFile;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.FrameRuns;
import org.iopersist.kernel.mm.memfd.MemFd;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/**
 * One linearly indexed range of pinnable pages, from a user VA range or from a file, shared (by
 * reference count) by every area made from it, including the copies IOAS_COPY makes.
 *
 * <p>Pages are pinned when something needs their frames (a domain to fill, an access) and unpinned
 * when nothing does, as Linux's iopt_pages: mapping with no domain attached pins nothing. A pin holds
 * a frame reference, so the page outlives munmap or close of its source, and is accounted to the
 * process that owns the pages.
 *
 * <p>Lock: this object's monitor guards the pin state.
 */
public final class IoptPages {
    private UserProcess owner; // guarded by this; null while the kernel holds restored pages
    private final long uptrAligned;
    private final MemFd file;
    /** The memfd's seals when it was mapped (iopt_pages::seals): what a live update asks of it. */
    private final int seals;
    /** Made by IOMMU_IOAS_MAP_FILE (IOPT_ADDRESS_FILE), not by a user address; set once, before publication. */
    private boolean byFile;
    private final long fileStart;
    /** Guest memory: a guestmemfs file's blocks, never FrameRefs-counted; each area pins its range. */
    private final GuestmemFile guestmem;
    private final long npages;
    final boolean writable;
    private final FrameRefs refs;
    final AtomicInteger kref = new AtomicInteger(1);
    /**
     * The frames while pinned, as contiguous runs: a guestmemfs file's extents (not counted), or a
     * memfd's or a user range's frames, each run pinned as one range in {@link FrameRefs}.
     */
    private FrameRuns pinnedRuns; // guarded by this
    private int pinUsers; // guarded by this

    private IoptPages(final UserProcess owner, final long uptrAligned, final MemFd file, final long fileStart,
                      final long npages, final boolean writable, final FrameRefs refs) {
        this(owner, uptrAligned, file, null, fileStart, npages, writable, refs);
    }

    private IoptPages(final UserProcess owner, final long uptrAligned, final MemFd file, final GuestmemFile guestmem,
                      final long fileStart, final long npages, final boolean writable, final FrameRefs refs) {
        this.owner = owner;
        this.uptrAligned = uptrAligned;
        this.guestmem = guestmem;
        this.file = file;
        this.seals = file == null ? 0 : file.seals();
        this.fileStart = fileStart;
        this.npages = npages;
        this.writable = writable;
        this.refs = refs;
    }

    /** Pages behind {@code [uptr, uptr + length)}; nothing is pinned yet. */
    static IoptPages ofUser(final UserProcess owner, final long uptr, final long length, final boolean writable,
                            final FrameRefs refs) {
        checkLength(length);
        final long end = uptr + length;
        if (Long.compareUnsigned(end, uptr) < 0) {
            throw new KernelException(Errno.EOVERFLOW, "user_va + length wraps");
        }
        final long first = uptr & ~(IoPagetable.PAGE_SIZE - 1);
        final long npages = ((end + IoPagetable.PAGE_SIZE - 1) >>> 12) - (first >>> 12);
        return new IoptPages(owner, first, null, 0, npages, writable, refs);
    }

    /** Pages of {@code file} from byte {@code start}. */
    static IoptPages ofFile(final UserProcess owner, final MemFd file, final long start, final long length) {
        checkLength(length);
        if (start < 0 || Long.compareUnsigned(start + length, start) < 0) {
            throw new KernelException(Errno.EOVERFLOW, "start + length wraps");
        }
        final long first = start & ~(IoPagetable.PAGE_SIZE - 1);
        final long npages = ((start + length + IoPagetable.PAGE_SIZE - 1) >>> 12) - (first >>> 12);
        final IoptPages p = new IoptPages(owner, 0, file, first, npages, true, file.refs());
        p.byFile = true;
        return p;
    }

    /** Pages of a memfd handed over by the previous kernel: nobody is charged until a retrieve moves them. */
    public static IoptPages restoreFile(final MemFd file, final long start, final long length) {
        return ofFile(null, file, start, length);
    }

    /** Whether IOMMU_IOAS_MAP_FILE made these pages (IOPT_ADDRESS_FILE), rather than a user address. */
    public boolean byFile() {
        return byFile;
    }

    /** Marks guestmemfs pages as made by IOMMU_IOAS_MAP_FILE. */
    IoptPages mappedByFile() {
        byFile = true;
        return this;
    }

    /** Pages of guestmemfs file {@code file} from byte {@code start} (by fd, or behind a shared mapping). */
    static IoptPages ofGuestmem(final UserProcess owner, final GuestmemFile file, final long start, final long length,
                                final FrameRefs refs) {
        checkLength(length);
        if (start < 0 || Long.compareUnsigned(start + length, start) < 0) {
            throw new KernelException(Errno.EOVERFLOW, "start + length wraps");
        }
        if (start + length > file.size()) {
            throw new KernelException(Errno.EINVAL, "range beyond the end of " + file.describe());
        }
        final long first = start & ~(IoPagetable.PAGE_SIZE - 1);
        final long npages = ((start + length + IoPagetable.PAGE_SIZE - 1) >>> 12) - (first >>> 12);
        return new IoptPages(owner, 0, null, file, first, npages, true, refs);
    }

    /**
     * Pages of guestmemfs file {@code file} handed over by the previous kernel: nobody is charged
     * for them until a reopen moves them to its process ({@link #changeOwner}).
     */
    public static IoptPages restoreGuestmem(final GuestmemFile file, final long start, final long length, final FrameRefs refs) {
        return ofGuestmem(null, file, start, length, refs);
    }

    /** As {@link #restoreGuestmem}, pages that IOMMU_IOAS_MAP_FILE made. */
    public static IoptPages restoreGuestmemByFile(final GuestmemFile file, final long start, final long length,
            final FrameRefs refs) {
        return ofGuestmem(null, file, start, length, refs).mappedByFile();
    }

    /** Moves the pinned-page accounting to {@code next} (IOMMU_IOAS_CHANGE_PROCESS, or a reopen). */
    synchronized void changeOwner(final UserProcess next) {
        if (pinUsers > 0) {
            if (owner != null) {
                owner.accountPinned(-npages);
            }
            if (next != null) {
                next.accountPinned(npages);
            }
        }
        owner = next;
    }

    /** The memfd behind these pages, or null. */
    public MemFd memfd() {
        return file;
    }

    /** The memfd's seals at map time (0 for other pages). */
    public int seals() {
        return seals;
    }

    /** The guestmemfs file behind these pages, or null. */
    public GuestmemFile guestmem() {
        return guestmem;
    }

    /** Pages in the range. */
    public long npages() {
        return npages;
    }

    /** Byte offset in the backing file (guestmemfs file or memfd) of byte {@code startByte} of these pages. */
    public long fileOffset(final long startByte) {
        return fileStart + startByte;
    }

    private static void checkLength(final long length) {
        if (length == 0 || Long.compareUnsigned(length, -1L - IoPagetable.PAGE_SIZE) > 0) {
            throw new KernelException(Errno.EINVAL, "length 0x" + Long.toHexString(length));
        }
    }

    /** Byte offset of the source's first byte within the first page. */
    static long pageOffset(final long addr) {
        return addr & (IoPagetable.PAGE_SIZE - 1);
    }

    /** The user address (or file offset) of byte {@code startByte}: the hint automatic IOVAs align to. */
    long addressOf(final long startByte) {
        return (file != null ? fileStart : uptrAligned) + startByte;
    }

    /**
     * Takes a pin user: on the first, pins every page (EFAULT if a user page is not mapped with the
     * access the pages need; nothing stays pinned then).
     */
    synchronized void pin() {
        if (pinUsers == 0 && guestmem != null) {
            // Guest memory comes in physically contiguous extents: keep runs, so a TiB costs what
            // its extents do, not an entry per page or per block.
            final FrameRuns.Builder runs = new FrameRuns.Builder();
            guestmem.mmapRuns(fileStart >>> 12, npages, runs);
            pinnedRuns = runs.build();
            if (owner != null) {
                owner.accountPinned(npages);
            }
        } else if (pinUsers == 0) {
            // A memfd's pages, or a user range's, as runs of frames: each run pinned as one range,
            // so a TiB of guest RAM pins in as many steps as it has runs.
            final FrameRuns runs;
            if (file != null) {
                runs = file.runs(fileStart >>> 12, npages);
            } else {
                final long[] failedVa = {0};
                runs = owner.mm().runs(uptrAligned, npages, Syscall.PROT_READ | (writable ? Syscall.PROT_WRITE : 0), failedVa);
                if (runs == null) {
                    throw new KernelException(Errno.EFAULT, String.format("user page 0x%x cannot be pinned", failedVa[0]));
                }
            }
            int done = 0;
            try {
                for (; done < runs.runs(); done++) {
                    // A pin's reference on each frame of the run, released by the last unpin()'s unpinRange.
                    if (!refs.pinRange(runs.runPhys(done), runs.runPages(done))) {
                        throw new KernelException(Errno.EFAULT, "pages at 0x" + Long.toHexString(runs.runPhys(done))
                                + " are not pinnable");
                    }
                }
            } catch (KernelException e) {
                for (int r = 0; r < done; r++) {
                    refs.unpinRange(runs.runPhys(r), runs.runPages(r));
                }
                throw e;
            }
            pinnedRuns = runs;
            if (owner != null) {
                owner.accountPinned(npages);
            }
        }
        pinUsers++;
    }

    /** Drops a pin user; the last unpins every page. */
    synchronized void unpin() {
        if (pinUsers <= 0) {
            throw new IllegalStateException("unbalanced unpin");
        }
        if (--pinUsers == 0) {
            if (guestmem == null) {
                final FrameRuns runs = pinnedRuns;
                for (int r = 0; r < runs.runs(); r++) {
                    refs.unpinRange(runs.runPhys(r), runs.runPages(r));
                }
            }
            pinnedRuns = null;
            if (owner != null) {
                owner.accountPinned(-npages);
            }
        }
    }

    synchronized boolean pinnedNow() {
        return pinUsers > 0;
    }

    /** The process charged for these pages now: the owner while pinned, else null (the accounting check). */
    synchronized UserProcess chargedTo() {
        return pinUsers > 0 ? owner : null;
    }

    /** Frame of page {@code index} while pinned. */
    synchronized long frame(final long index) {
        if (pinUsers == 0) {
            throw new IllegalStateException("pages are not pinned");
        }
        return pinnedRuns.frameOf(index);
    }

    /**
     * How many pages from {@code index} on (at most {@code max}) are physically contiguous, while
     * pinned: what one {@code iommu_map} call can take, so a domain gets its largest leaves.
     */
    synchronized long contiguousPages(final long index, final long max) {
        if (pinUsers == 0) {
            throw new IllegalStateException("pages are not pinned");
        }
        return Math.min(max, pinnedRuns.contiguousFrom(index));
    }

    void get() {
        kref.incrementAndGet();
    }

    /** Drops a reference (an area's); pins belong to their users and must be gone by the last put. */
    void put() {
        if (kref.decrementAndGet() == 0 && pinnedNow()) {
            throw new IllegalStateException("pages freed while pinned");
        }
    }
}
