package org.iopersist.kernel.guestmemfs;

import java.lang.foreign.MemorySegment;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.mm.FrameRuns;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;

/**
 * An open guestmemfs file. Its pages map straight to the file's blocks in the carve-out (no copy,
 * no page cache), so two processes that map it see the same bytes and a device DMA lands in them.
 * The file keeps its inode alive while open or mapped, even after unlink.
 */
public final class GuestmemFile implements KernelFile {
    private final Guestmemfs fs;
    private final int inode;
    private final String name;
    private final PhysicalMemory memory;
    private boolean released;

    GuestmemFile(final Guestmemfs fs, final int inode, final String name, final PhysicalMemory memory) {
        this.fs = fs;
        this.inode = inode;
        this.name = name;
        this.memory = memory;
        fs.addUsers(inode, 1);
    }

    public Guestmemfs filesystem() {
        return fs;
    }

    public String name() {
        return name;
    }

    /** The inode number, stable across a live update (it lives in the preserved metadata). */
    public long ino() {
        return fs.statOf(inode).ino();
    }

    @Override
    public long size() {
        return fs.size(inode);
    }

    @Override
    public void truncate(final long length) {
        fs.truncate(inode, length);
    }

    /** Physical address of byte {@code offset}; EINVAL past the end. */
    public long physOf(final long offset) {
        return fs.physOf(inode, offset);
    }

    /** Pins the blocks of {@code [offset, offset + length)} for persistent DMA. */
    public void pin(final long offset, final long length) {
        fs.pin(inode, offset, length);
    }

    public void unpin(final long offset, final long length) {
        fs.unpin(inode, offset, length);
    }

    @Override
    public long mmapFrame(final long pageIndex) {
        return fs.physOf(inode, pageIndex * PhysicalMemory.FRAME_SIZE);
    }

    /** One lookup per extent: its blocks are contiguous in memory, so a 1 TiB file maps in a few steps. */
    @Override
    public void mmapRuns(final long firstPage, final long pages, final FrameRuns.Builder out) {
        long page = firstPage;
        final long end = firstPage + pages;
        while (page < end) {
            final Guestmemfs.Run run = fs.runAt(inode, page * PhysicalMemory.FRAME_SIZE);
            final long n = Math.min(end - page, Math.max(1, run.length() >>> PhysicalMemory.FRAME_SHIFT));
            out.add(run.phys(), n);
            page += n;
        }
    }

    @Override
    public void mapped(final long pageIndex, final long pages, final boolean map) {
        // Mapped pages keep the inode alive like an open file does; munmap may split a mapping.
        if (map) {
            fs.addUsers(inode, (int) pages);
        } else {
            fs.dropUsers(inode, (int) pages);
        }
    }

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        return copy(process, bufVa, count, offset, false);
    }

    @Override
    public long write(final UserProcess process, final long bufVa, final long count, final long offset) {
        return copy(process, bufVa, count, offset, true);
    }

    /** pread/pwrite within the file's size (writes do not grow it, as with a mapped file: EFBIG). */
    private long copy(final UserProcess process, final long bufVa, final long count, final long offset, final boolean write) {
        final long size = fs.size(inode);
        if (offset < 0) {
            throw new KernelException(Errno.EINVAL, "negative offset");
        }
        if (write && offset + count > size) {
            throw new KernelException(Errno.EFBIG, "guestmemfs: write past the end; ftruncate first");
        }
        final long n = Math.max(0, Math.min(count, size - offset));
        long done = 0;
        while (done < n) {
            final long phys = fs.physOf(inode, offset + done);
            final long chunk = Math.min(n - done, PhysicalMemory.FRAME_SIZE - (phys & PhysicalMemory.FRAME_MASK));
            final MemorySegment frame = memory.slice(phys, chunk);
            if (write) {
                process.mm().copyFromUser(bufVa + done, frame, 0, chunk);
            } else {
                process.mm().copyToUser(bufVa + done, frame, 0, chunk);
            }
            done += chunk;
        }
        return n;
    }

    @Override
    public synchronized void release() {
        if (!released) {
            released = true;
            fs.dropUsers(inode, 1);
        }
    }

    @Override
    public String describe() {
        return "/guestmemfs/" + name;
    }
}
