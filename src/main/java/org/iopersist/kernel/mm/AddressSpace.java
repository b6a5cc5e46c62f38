package org.iopersist.kernel.mm;


import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/**
 * A process's virtual address space: its VMAs, and the user-memory accessors the kernel uses on
 * its behalf ({@code copy_from_user}, {@code copy_to_user}). A pointer that does not resolve through
 * a VMA with the needed protection is EFAULT.
 *
 * <p>Anonymous pages are reference counted through {@link FrameRefs}: the VMA holds one reference,
 * every pin another, so munmap of a pinned page leaves it to the last unpin.
 *
 * <p>Lock: this object's monitor.
 */
public final class AddressSpace {
    /** Top-down mmap area, as x86-64's below the stack. */
    static final long MMAP_TOP = 0x7f00_0000_0000L;
    static final long MMAP_BOTTOM = 0x1_0000_0000L;

    private final PhysicalMemory memory;
    private final FrameSource frames;
    private final FrameRefs refs;
    private final TreeMap<Long, Vma> vmas = new TreeMap<>(); // guarded by this

    public AddressSpace(final PhysicalMemory memory, final FrameSource frames, final FrameRefs refs) {
        this.memory = memory;
        this.frames = frames;
        this.refs = refs;
    }

    /** mmap(2) with MAP_POPULATE semantics. Returns the chosen address. */
    public synchronized long mmap(final long hint, final long length, final int prot, final int flags,
                                  final MappableFile file, final long offset) {
        if (length <= 0) {
            throw new KernelException(Errno.EINVAL, "mmap length=0x" + Long.toHexString(length));
        }
        if (length > MMAP_TOP - MMAP_BOTTOM) {
            throw new KernelException(Errno.ENOMEM, "mmap length=0x" + Long.toHexString(length) + " exceeds the address space");
        }
        final boolean huge = (flags & Syscall.MAP_HUGETLB) != 0;
        final long unit = huge ? Syscall.HUGE_PAGE_SIZE : Vma.PAGE_SIZE;
        final long len = (length + unit - 1) & ~(unit - 1);
        if ((prot & ~(Syscall.PROT_READ | Syscall.PROT_WRITE)) != 0
                || ((flags & Syscall.MAP_SHARED) != 0) == ((flags & Syscall.MAP_PRIVATE) != 0)) {
            throw new KernelException(Errno.EINVAL, "mmap prot=0x" + Integer.toHexString(prot) + " flags=0x" + Integer.toHexString(flags));
        }
        if ((offset & (Vma.PAGE_SIZE - 1)) != 0 || offset < 0) {
            throw new KernelException(Errno.EINVAL, "mmap offset=0x" + Long.toHexString(offset) + " not page aligned");
        }
        final boolean anonymous = (flags & Syscall.MAP_ANONYMOUS) != 0;
        if (!anonymous && file == null) {
            throw new KernelException(Errno.EBADF, "mmap of no file");
        }
        if (!anonymous && (flags & Syscall.MAP_SHARED) == 0) {
            throw new KernelException(Errno.EINVAL, "private file mappings are not modelled; use MAP_SHARED");
        }
        if (huge && !anonymous) {
            throw new KernelException(Errno.EINVAL, "MAP_HUGETLB of a file (hugetlbfs is not modelled)");
        }
        final long start;
        if ((flags & Syscall.MAP_FIXED) != 0) {
            if (huge && (hint & (unit - 1)) != 0) {
                throw new KernelException(Errno.EINVAL, String.format("MAP_HUGETLB|MAP_FIXED at 0x%x is not 2 MiB aligned", hint));
            }
            if ((hint & (Vma.PAGE_SIZE - 1)) != 0 || hint < Vma.PAGE_SIZE || overlaps(hint, len)) {
                throw new KernelException(Errno.EEXIST, String.format("MAP_FIXED at 0x%x+0x%x is taken or invalid", hint, len));
            }
            start = hint;
        } else {
            start = findFree(len, unit);
        }
        final long pages = len >>> Vma.PAGE_SHIFT;
        final FrameRuns.Builder backing = new FrameRuns.Builder();
        if (anonymous && pages > frames.freeFrames()) {
            // __vm_enough_memory: an anonymous mapping larger than the memory there is fails at once,
            // not after allocating (and zeroing) frame after frame until none is left.
            throw new KernelException(Errno.ENOMEM, String.format("mmap of 0x%x bytes: %d pages wanted, %d free", len, pages,
                    frames.freeFrames()));
        }
        if (anonymous && huge) {
            // Huge pages: physically contiguous, naturally aligned 2 MiB runs, counted as ranges
            // that split where a pin or an munmap takes part of one.
            final int order = Long.numberOfTrailingZeros(unit) - Vma.PAGE_SHIFT;
            try {
                for (long done = 0; done < pages; done += 1L << order) {
                    final long run = frames.allocZeroedRun(order);
                    refs.initRange(run, 1L << order); // the VMA's reference, dropped by munmap or teardown (drop)
                    backing.add(run, 1L << order);
                }
            } catch (RuntimeException e) {
                putAll(backing.build());
                throw e;
            }
        } else if (anonymous) {
            try {
                for (long done = 0; done < pages; done++) {
                    backing.add(frames.allocZeroedFrame(), 1);
                }
            } catch (RuntimeException e) {
                backing.build().forEachFrame(frames::freeFrame); // not counted yet
                throw e;
            }
            // The VMA's reference on each run of frames, dropped by munmap or teardown (drop).
            backing.build().forEachRun((first, phys, n) -> refs.initRange(phys, n));
        } else {
            file.mmapCheck(prot);
            file.mmapRuns(offset >>> Vma.PAGE_SHIFT, pages, backing);
            file.mapped(offset >>> Vma.PAGE_SHIFT, pages, true, (prot & Syscall.PROT_WRITE) != 0);
        }
        vmas.put(start, new Vma(start, len, prot, anonymous ? null : file, offset >>> Vma.PAGE_SHIFT, backing.build()));
        return start;
    }

    private boolean overlaps(final long start, final long len) {
        final Map.Entry<Long, Vma> below = vmas.floorEntry(start + len - 1);
        return below != null && below.getValue().end() > start;
    }

    /** The highest free range of {@code len} bytes whose start is a multiple of {@code align}. */
    private long findFree(final long len, final long align) {
        long top = MMAP_TOP;
        for (Vma v : vmas.descendingMap().values()) {
            if (v.start() >= top) {
                continue;
            }
            if (v.end() <= ((top - len) & -align)) {
                break;
            }
            top = v.start();
        }
        top = ((top - len) & -align) + len;
        if (top - len < MMAP_BOTTOM) {
            throw new KernelException(Errno.ENOMEM, "no room for a mapping of 0x" + Long.toHexString(len));
        }
        return top - len;
    }

    /** munmap(2): unmaps whole pages in the range, splitting VMAs at its edges. */
    public synchronized void munmap(final long addr, final long length) {
        if ((addr & (Vma.PAGE_SIZE - 1)) != 0 || length <= 0) {
            throw new KernelException(Errno.EINVAL, String.format("munmap addr=0x%x length=0x%x", addr, length));
        }
        final long end = addr + ((length + Vma.PAGE_SIZE - 1) & ~(Vma.PAGE_SIZE - 1));
        for (Vma v : new ArrayList<>(vmas.subMap(vmas.floorKey(addr) == null ? addr : vmas.floorKey(addr), true, end, false).values())) {
            if (v.end() <= addr || v.start() >= end) {
                continue;
            }
            vmas.remove(v.start());
            final long cutStart = Math.max(v.start(), addr);
            final long cutEnd = Math.min(v.end(), end);
            if (v.start() < cutStart) {
                vmas.put(v.start(), slice(v, v.start(), cutStart));
            }
            if (cutEnd < v.end()) {
                vmas.put(cutEnd, slice(v, cutEnd, v.end()));
            }
            drop(slice(v, cutStart, cutEnd));
        }
    }

    private static Vma slice(final Vma v, final long from, final long to) {
        final long first = (from - v.start()) >>> Vma.PAGE_SHIFT;
        final long last = (to - v.start()) >>> Vma.PAGE_SHIFT;
        return new Vma(from, to - from, v.prot(), v.file(), v.pgoff() + first, v.frames().slice(first, last));
    }

    private void drop(final Vma v) {
        if (v.anonymous()) {
            putAll(v.frames());
        } else {
            v.file().mapped(v.pgoff(), v.frames().pages(), false, (v.prot() & Syscall.PROT_WRITE) != 0);
        }
    }

    /** Drops the mapping's reference on each run of frames (the counts are kept per range). */
    private void putAll(final FrameRuns runs) {
        runs.forEachRun((first, phys, n) -> refs.putRange(phys, n));
    }

    /** Unmaps everything (process exit). */
    public synchronized void teardown() {
        for (Vma v : vmas.values()) {
            drop(v);
        }
        vmas.clear();
    }

    /** A file range behind user memory: {@code file}'s bytes from {@code offset}. */
    public record FileRange(MappableFile file, long offset) {
    }

    /**
     * The file backing all of {@code [va, va + length)} through one shared file mapping, or null
     * if any of it is anonymous, unmapped, or another mapping.
     */
    public synchronized FileRange fileRange(final long va, final long length) {
        final Vma v = find(va);
        if (v == null || v.file() == null || length <= 0 || Long.compareUnsigned(va + length - v.start(), v.length()) > 0) {
            return null;
        }
        return new FileRange(v.file(), (v.pgoff() << Vma.PAGE_SHIFT) + (va - v.start()));
    }

    /** The VMA containing {@code va}, or null. */
    public synchronized Vma find(final long va) {
        final Map.Entry<Long, Vma> e = vmas.floorEntry(va);
        return e != null && e.getValue().contains(va) ? e.getValue() : null;
    }

    public synchronized List<Vma> vmas() {
        return List.copyOf(vmas.values());
    }

    /** Physical address behind {@code va} with the access {@code prot} needs, or -1. */
    public synchronized long translate(final long va, final int prot) {
        final Vma v = find(va);
        if (v == null || (v.prot() & prot) != prot) {
            return -1;
        }
        return v.frameOf(va) | (va & (Vma.PAGE_SIZE - 1));
    }

    /**
     * The frames behind {@code pages} pages from page-aligned {@code va}, as runs, each page mapped
     * with the access {@code prot} needs: what pin_user_pages walks, one step per VMA run rather
     * than per page.
     *
     * @return the runs, or the first page that is not so mapped as {@code -1 - its address}
     *         through {@code failedVa[0]} with a null result
     */
    public synchronized FrameRuns runs(final long va, final long pages, final int prot, final long[] failedVa) {
        final FrameRuns.Builder out = new FrameRuns.Builder();
        long at = va;
        final long end = va + (pages << Vma.PAGE_SHIFT);
        while (at != end) {
            final Vma v = find(at);
            if (v == null || (v.prot() & prot) != prot) {
                failedVa[0] = at;
                return null;
            }
            final long first = (at - v.start()) >>> Vma.PAGE_SHIFT;
            final long upTo = Long.compareUnsigned(v.end() - 1, end - 1) < 0 ? v.end() : end;
            final long last = (upTo - v.start()) >>> Vma.PAGE_SHIFT;
            final FrameRuns slice = v.frames().slice(first, last);
            slice.forEachRun((f, phys, n) -> out.add(phys, n));
            at = upTo;
        }
        return out.build();
    }

    /** copy_from_user: {@code length} bytes at {@code va} into {@code dst}. @throws KernelException EFAULT */
    public void copyFromUser(final long va, final MemorySegment dst, final long dstOffset, final long length) {
        FaultInjection.check(frames.faults(), FaultInjection.Site.USER_COPY);
        copy(va, dst, dstOffset, length, false);
    }

    /**
     * get_user, and check_zeroed_user's reads: the same copy as {@link #copyFromUser}, but Linux
     * does not instrument these for fail_usercopy, so they are no fail_nth site.
     *
     * @throws KernelException EFAULT
     */
    public void getUser(final long va, final MemorySegment dst, final long dstOffset, final long length) {
        copy(va, dst, dstOffset, length, false);
    }

    /**
     * put_user and clear_user: the same copy as {@link #copyToUser}, no fail_nth site (Linux does
     * not instrument them).
     *
     * @throws KernelException EFAULT
     */
    public void putUser(final long va, final MemorySegment src, final long srcOffset, final long length) {
        copy(va, src, srcOffset, length, true);
    }

    /** copy_to_user. @throws KernelException EFAULT */
    public void copyToUser(final long va, final MemorySegment src, final long srcOffset, final long length) {
        FaultInjection.check(frames.faults(), FaultInjection.Site.USER_COPY);
        copy(va, src, srcOffset, length, true);
    }

    /** Page by page through this address space: each page is translated with the access it needs. */
    private void copy(final long va, final MemorySegment kernel, final long kernelOffset, final long length, final boolean toUser) {
        final int prot = toUser ? Syscall.PROT_WRITE : Syscall.PROT_READ;
        long done = 0;
        while (done < length) {
            final long phys = translate(va + done, prot);
            if (phys < 0) {
                throw new KernelException(Errno.EFAULT, String.format("user address 0x%x is not %s", va + done,
                        toUser ? "writable" : "readable"));
            }
            final long chunk = Math.min(length - done, Vma.PAGE_SIZE - ((va + done) & (Vma.PAGE_SIZE - 1)));
            if (toUser) {
                memory.write(phys, kernel, kernelOffset + done, chunk);
            } else {
                memory.read(phys, kernel, kernelOffset + done, chunk);
            }
            done += chunk;
        }
    }

    /** A NUL-terminated string at {@code va} of at most {@code max} bytes. @throws KernelException EFAULT, ENAMETOOLONG */
    public String copyStringFromUser(final long va, final int max) {
        // strncpy_from_user is one fail_usercopy site, however long the string.
        FaultInjection.check(frames.faults(), FaultInjection.Site.USER_COPY);
        final byte[] buf = new byte[max];
        final MemorySegment seg = MemorySegment.ofArray(buf);
        for (int i = 0; i < max; i++) {
            copy(va + i, seg, i, 1, false);
            if (buf[i] == 0) {
                return new String(buf, 0, i, java.nio.charset.StandardCharsets.UTF_8);
            }
        }
        throw new KernelException(Errno.ENAMETOOLONG, "string at 0x" + Long.toHexString(va) + " is not terminated in " + max + " bytes");
    }
}
