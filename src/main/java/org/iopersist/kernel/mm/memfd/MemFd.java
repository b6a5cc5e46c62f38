package org.iopersist.kernel.mm.memfd;

import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.Vma;

import java.lang.foreign.MemorySegment;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.kernel.mm.FrameRuns;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/**
 * A memfd: anonymous shmem file memory ({@code mm/memfd.c}, {@code mm/shmem.c}), sized by
 * ftruncate or by writing past its end. Its pages are counted in {@link FrameRefs} (the file holds
 * one reference), so a page pinned by IOAS_MAP_FILE outlives both the file and its mappings.
 *
 * <p><b>Pages in runs</b>, as shmem's large folios: growth takes the largest naturally aligned run
 * the allocator has that fits both the growth and the file index (so a run is aligned in the file
 * as in memory, and a mapping of it can use large IOMMU leaves), falling back order by order when
 * none is free. The file keeps its pages as a table of runs ({@link FrameRuns.Builder}) and
 * counts them by range, so a TiB memfd costs its runs, not an entry per 4 KiB page. What userspace sees is per page as before:
 * read, write, mmap and pagemap resolve a page through a range lookup.
 *
 * <p><b>Seals</b> ({@code F_ADD_SEALS}, {@code F_GET_SEALS}) as Linux has them: a memfd made without
 * {@code MFD_ALLOW_SEALING} starts with {@code F_SEAL_SEAL}, so nothing can be added (EPERM);
 * {@code F_SEAL_SHRINK} and {@code F_SEAL_GROW} refuse size changes (EPERM, in ftruncate and in a
 * write past the end); {@code F_SEAL_WRITE} and {@code F_SEAL_FUTURE_WRITE} refuse writes and new
 * writable shared mappings (EPERM), and {@code F_SEAL_WRITE} cannot be added while one exists
 * (EBUSY). <b>Frozen</b> for a live update ({@code shmem_freeze}): while preserved in a LUO session
 * its size cannot change (EPERM), so the preserved frames stay exactly the file's.
 *
 * <p>Lock: this object's monitor.
 */
public final class MemFd implements KernelFile {
    public static final int F_SEAL_SEAL = 0x0001;
    public static final int F_SEAL_SHRINK = 0x0002;
    public static final int F_SEAL_GROW = 0x0004;
    public static final int F_SEAL_WRITE = 0x0008;
    public static final int F_SEAL_FUTURE_WRITE = 0x0010;
    public static final int F_SEAL_EXEC = 0x0020;
    /** F_ALL_SEALS of mm/memfd.c. */
    public static final int F_ALL_SEALS = F_SEAL_SEAL | F_SEAL_EXEC | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE
            | F_SEAL_FUTURE_WRITE;
    /** What a file may grow to here (Linux allows MAX_LFS_FILESIZE; the model's machines are smaller). */
    private static final long MAX_SIZE = 1L << 40;
    /** The largest run growth asks for: the allocator's largest, 1 GiB (the largest VT-d leaf). */
    static final int MAX_RUN_ORDER = FrameAllocator.MAX_ORDER;

    private final String name;
    private final PhysicalMemory memory;
    private final FrameSource frames;
    private final FrameRefs refs;
    private final FrameRuns.Builder pages = new FrameRuns.Builder(); // guarded by this
    private long size;
    private int seals;
    /** The inode's exec bits: set unless created with MFD_NOEXEC_SEAL. */
    private final boolean executable;
    private long mappedPages;
    private long writableMappedPages;
    private boolean frozen;
    private boolean closed;

    /**
     * memfd_create's file: sealable only with {@code allowSealing} (else F_SEAL_SEAL is set);
     * {@code noexecSeal} (MFD_NOEXEC_SEAL) makes it sealable, not executable, and F_SEAL_EXEC'd.
     */
    public MemFd(final String name, final PhysicalMemory memory, final FrameSource frames, final FrameRefs refs,
            final boolean allowSealing, final boolean noexecSeal) {
        this.name = name;
        this.memory = memory;
        this.frames = frames;
        this.refs = refs;
        this.executable = !noexecSeal;
        this.seals = noexecSeal ? F_SEAL_EXEC : allowSealing ? 0 : F_SEAL_SEAL;
    }

    /** An unsealable memfd, as {@code memfd_create(name, 0)}. */
    public MemFd(final String name, final PhysicalMemory memory, final FrameSource frames, final FrameRefs refs) {
        this(name, memory, frames, refs, false, false);
    }

    /**
     * A memfd re-made by a live update around frames that were preserved in place: its pages are
     * {@code runs}, whose one reference (the file's) the caller has just set up.
     */
    public static MemFd restore(final String name, final PhysicalMemory memory, final FrameSource frames, final FrameRefs refs,
            final FrameRuns runs, final long size, final int seals) {
        final MemFd m = new MemFd(name, memory, frames, refs, true, false);
        m.seals = seals;
        runs.forEachRun((first, phys, n) -> m.pages.add(phys, n));
        m.size = size;
        return m;
    }

    @Override
    public synchronized long size() {
        return size;
    }

    /** The frame of page {@code index}, for pinning. @throws KernelException EINVAL past the end */
    public synchronized long frame(final long index) {
        if (index < 0 || index >= pages.pages()) {
            throw new KernelException(Errno.EINVAL, "memfd page " + index + " beyond size 0x" + Long.toHexString(size));
        }
        return pages.frameOf(index);
    }

    /**
     * The frames behind {@code count} pages from {@code index}, as runs (for pinning and mapping).
     *
     * @throws KernelException EINVAL if the range is not inside the file
     */
    public synchronized FrameRuns runs(final long index, final long count) {
        if (index < 0 || count < 0 || index > pages.pages() - count) {
            throw new KernelException(Errno.EINVAL, "memfd pages " + index + "+" + count + " beyond size 0x"
                    + Long.toHexString(size));
        }
        final FrameRuns.Builder b = new FrameRuns.Builder();
        pages.slice(index, index + count, b);
        return b.build();
    }

    /** Every page's frame, as runs in file order: what a live update preserves in place. */
    public synchronized FrameRuns runs() {
        return pages.build();
    }

    public FrameRefs refs() {
        return refs;
    }

    /** F_GET_SEALS. */
    public synchronized int seals() {
        return seals;
    }

    /**
     * memfd_add_seals: EINVAL for an unknown seal, EPERM once F_SEAL_SEAL is set, EBUSY for
     * F_SEAL_WRITE while a writable shared mapping exists; F_SEAL_EXEC on an executable file implies
     * the write and size seals (a memfd is created executable unless MFD_NOEXEC_SEAL).
     */
    public synchronized void addSeals(final int add) {
        if ((add & ~F_ALL_SEALS) != 0) {
            throw new KernelException(Errno.EINVAL, "unknown seals 0x" + Integer.toHexString(add));
        }
        if ((seals & F_SEAL_SEAL) != 0) {
            throw new KernelException(Errno.EPERM, describe() + " is sealed against new seals");
        }
        if ((add & F_SEAL_WRITE) != 0 && (seals & F_SEAL_WRITE) == 0 && writableMappedPages > 0) {
            throw new KernelException(Errno.EBUSY, describe() + " has writable shared mappings");
        }
        int s = add;
        if ((add & F_SEAL_EXEC) != 0 && executable) {
            // As Linux: implied after the writable-mapping check, which looked at the asked seals only.
            s |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
        }
        seals |= s;
    }

    /** shmem_freeze: while preserved for a live update, the size (and so the frames) cannot change. */
    public synchronized void freezeSize(final boolean on) {
        frozen = on;
    }

    public synchronized boolean sizeFrozen() {
        return frozen;
    }

    @Override
    public synchronized void truncate(final long length) {
        if (length < 0 || length > MAX_SIZE) {
            throw new KernelException(Errno.EINVAL, "ftruncate length=" + length);
        }
        if (length != size && frozen) {
            throw new KernelException(Errno.EPERM, describe() + " is preserved for a live update: its size is frozen");
        }
        if ((length < size && (seals & F_SEAL_SHRINK) != 0) || (length > size && (seals & F_SEAL_GROW) != 0)) {
            throw new KernelException(Errno.EPERM, describe() + ": F_SEAL_" + (length < size ? "SHRINK" : "GROW"));
        }
        resize(length);
    }

    private void resize(final long length) {
        final long want = (length + Vma.PAGE_SIZE - 1) >>> Vma.PAGE_SHIFT;
        final long old = pages.pages();
        if (want < old) {
            if (mappedPages > 0) {
                throw new KernelException(Errno.EBUSY, "shrinking a mapped memfd is not modelled");
            }
            pages.truncate(want, (first, phys, n) -> refs.putRange(phys, n));
        } else if (want > old) {
            try {
                for (long index = old; index < want; ) {
                    final long run = allocRun(index, want - index);
                    final long phys = run & ~(Vma.PAGE_SIZE - 1);
                    final long n = 1L << (run & (Vma.PAGE_SIZE - 1));
                    refs.initRange(phys, n); // the file's reference, dropped by truncate or the last release
                    pages.add(phys, n);
                    index += n;
                }
            } catch (RuntimeException e) {
                pages.truncate(old, (first, phys, n) -> refs.putRange(phys, n));
                throw e;
            }
        }
        size = length;
    }

    /**
     * shmem_alloc_and_add_folio: a zeroed run for page {@code index} onwards, of the largest order
     * that fits the {@code left} pages still wanted and is aligned at {@code index}; if no run of
     * that order is free, the next smaller, down to one page (whose ENOMEM is the caller's). As in
     * shmem, a failed large order (an injected one too) only means a smaller folio.
     *
     * @return the run's physical address, with its order in the low 12 bits (a frame address has them zero)
     */
    private long allocRun(final long index, final long left) {
        int order = Math.min(MAX_RUN_ORDER, 63 - Long.numberOfLeadingZeros(left));
        if (index != 0) {
            order = Math.min(order, Long.numberOfTrailingZeros(index));
        }
        while (true) {
            try {
                return frames.allocZeroedRun(order) | order;
            } catch (KernelException e) {
                if (e.errno() != Errno.ENOMEM || order == 0) {
                    throw e;
                }
                order--;
            }
        }
    }

    @Override
    public synchronized long mmapFrame(final long pageIndex) {
        return frame(pageIndex);
    }

    /** A mapping takes the file's extents whole: one step per run, EINVAL if it reaches past the end. */
    @Override
    public synchronized void mmapRuns(final long firstPage, final long count, final FrameRuns.Builder out) {
        if (firstPage < 0 || firstPage > pages.pages() - count) {
            throw new KernelException(Errno.EINVAL, "memfd page " + Math.max(firstPage, pages.pages()) + " beyond size 0x"
                    + Long.toHexString(size));
        }
        pages.slice(firstPage, firstPage + count, out);
    }

    /** A writable shared mapping of a write-sealed memfd is EPERM (shmem_mmap_prepare / seal_check_write). */
    @Override
    public synchronized void mmapCheck(final int prot) {
        if ((prot & Syscall.PROT_WRITE) != 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0) {
            throw new KernelException(Errno.EPERM, describe() + " is write-sealed");
        }
    }

    @Override
    public synchronized void mapped(final long pageIndex, final long count, final boolean map) {
        mapped(pageIndex, count, map, false);
    }

    @Override
    public synchronized void mapped(final long pageIndex, final long count, final boolean map, final boolean writable) {
        mappedPages += map ? count : -count;
        if (writable) {
            writableMappedPages += map ? count : -count;
        }
        maybeFree();
    }

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        return transfer(process, bufVa, count, offset, false);
    }

    /**
     * shmem's write: EPERM under a write seal, or past the end under F_SEAL_GROW or while frozen;
     * a write past the end grows the file.
     */
    @Override
    public long write(final UserProcess process, final long bufVa, final long count, final long offset) {
        return transfer(process, bufVa, count, offset, true);
    }

    private synchronized long transfer(final UserProcess process, final long bufVa, final long count, final long offset,
                                       final boolean toFile) {
        if (toFile) {
            if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0) {
                throw new KernelException(Errno.EPERM, describe() + " is write-sealed");
            }
            if (count > 0 && offset + count > size) {
                if ((seals & F_SEAL_GROW) != 0 || frozen) {
                    throw new KernelException(Errno.EPERM, describe() + " cannot grow (" + (frozen ? "preserved" : "F_SEAL_GROW") + ")");
                }
                if (offset + count > MAX_SIZE) {
                    throw new KernelException(Errno.EFBIG, "memfd write past " + MAX_SIZE);
                }
                resize(offset + count);
            }
        }
        if (offset >= size) {
            return 0;
        }
        final long n = Math.min(count, size - offset);
        final byte[] chunk = new byte[(int) Math.min(n, 1 << 20)];
        long done = 0;
        while (done < n) {
            final long pos = offset + done;
            final int len = (int) Math.min(Math.min(n - done, chunk.length), Vma.PAGE_SIZE - (pos & (Vma.PAGE_SIZE - 1)));
            final long phys = pages.frameOf(pos >>> Vma.PAGE_SHIFT) + (pos & (Vma.PAGE_SIZE - 1));
            if (toFile) {
                process.mm().copyFromUser(bufVa + done, MemorySegment.ofArray(chunk), 0, len);
                memory.write(phys, chunk, 0, len);
            } else {
                memory.read(phys, chunk, 0, len);
                process.mm().copyToUser(bufVa + done, MemorySegment.ofArray(chunk), 0, len);
            }
            done += len;
        }
        return n;
    }

    @Override
    public synchronized void release() {
        closed = true;
        maybeFree();
    }

    private void maybeFree() {
        if (closed && mappedPages == 0) {
            pages.truncate(0, (first, phys, n) -> refs.putRange(phys, n));
            size = 0;
        }
    }

    @Override
    public String describe() {
        return "memfd:" + name;
    }

    /** Pages the file has frames for, for tests and accounting. */
    public synchronized long pages() {
        return pages.pages();
    }

    /** Extents: runs of pages contiguous in the file and in memory (what its bookkeeping costs). */
    public synchronized int extents() {
        return pages.runs();
    }
}
