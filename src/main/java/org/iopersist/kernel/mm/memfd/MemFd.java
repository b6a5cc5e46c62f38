package org.iopersist.kernel.mm.memfd;

import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.Vma;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.uapi.Errno;

/**
 * A memfd: anonymous file memory, sized by ftruncate, one frame per page. Its pages are counted in
 * {@link FrameRefs} (the file holds one reference), so a page pinned by IOAS_MAP_FILE outlives both
 * the file and its mappings.
 *
 * <p>Lock: this object's monitor.
 */
public final class MemFd implements KernelFile {
    private final String name;
    private final PhysicalMemory memory;
    private final FrameSource frames;
    private final FrameRefs refs;
    private long[] pages = new long[0];
    private long size;
    private long mappedPages;
    private boolean closed;

    public MemFd(final String name, final PhysicalMemory memory, final FrameSource frames, final FrameRefs refs) {
        this.name = name;
        this.memory = memory;
        this.frames = frames;
        this.refs = refs;
    }

    @Override
    public synchronized long size() {
        return size;
    }

    /** The frame of page {@code index}, for pinning. @throws KernelException EINVAL past the end */
    public synchronized long frame(final long index) {
        if (index < 0 || index >= pages.length) {
            throw new KernelException(Errno.EINVAL, "memfd page " + index + " beyond size 0x" + Long.toHexString(size));
        }
        return pages[(int) index];
    }

    public FrameRefs refs() {
        return refs;
    }

    @Override
    public synchronized void truncate(final long length) {
        if (length < 0 || length > (1L << 40)) {
            throw new KernelException(Errno.EINVAL, "ftruncate length=" + length);
        }
        final int want = (int) ((length + Vma.PAGE_SIZE - 1) >>> Vma.PAGE_SHIFT);
        if (want < pages.length) {
            if (mappedPages > 0) {
                throw new KernelException(Errno.EBUSY, "shrinking a mapped memfd is not modelled");
            }
            for (int i = want; i < pages.length; i++) {
                refs.put(pages[i]);
            }
            pages = Arrays.copyOf(pages, want);
        } else if (want > pages.length) {
            final int old = pages.length;
            final long[] next = Arrays.copyOf(pages, want);
            int done = old;
            try {
                for (; done < want; done++) {
                    next[done] = frames.allocZeroedFrame();
                    refs.init(next[done]);
                }
            } catch (RuntimeException e) {
                for (int i = old; i < done; i++) {
                    refs.put(next[i]);
                }
                throw e;
            }
            pages = next;
        }
        size = length;
    }

    @Override
    public synchronized long mmapFrame(final long pageIndex) {
        return frame(pageIndex);
    }

    @Override
    public synchronized void mapped(final long pageIndex, final long count, final boolean map) {
        mappedPages += map ? count : -count;
        maybeFree();
    }

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        return transfer(process, bufVa, count, offset, false);
    }

    @Override
    public long write(final UserProcess process, final long bufVa, final long count, final long offset) {
        return transfer(process, bufVa, count, offset, true);
    }

    private synchronized long transfer(final UserProcess process, final long bufVa, final long count, final long offset,
                                       final boolean toFile) {
        if (offset >= size) {
            if (toFile) {
                throw new KernelException(Errno.EFBIG, "memfd writes do not grow the file; ftruncate first");
            }
            return 0;
        }
        final long n = Math.min(count, size - offset);
        final byte[] chunk = new byte[(int) Math.min(n, 1 << 20)];
        long done = 0;
        while (done < n) {
            final long pos = offset + done;
            final int len = (int) Math.min(Math.min(n - done, chunk.length), Vma.PAGE_SIZE - (pos & (Vma.PAGE_SIZE - 1)));
            final long phys = pages[(int) (pos >>> Vma.PAGE_SHIFT)] + (pos & (Vma.PAGE_SIZE - 1));
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
            for (long p : pages) {
                refs.put(p);
            }
            pages = new long[0];
            size = 0;
        }
    }

    @Override
    public String describe() {
        return "memfd:" + name;
    }

    /** Frames per page, for tests and accounting. */
    public synchronized int pages() {
        return pages.length;
    }
}
