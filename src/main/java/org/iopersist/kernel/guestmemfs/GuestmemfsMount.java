package org.iopersist.kernel.guestmemfs;

import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.fs.Vfs;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/** guestmemfs as the VFS sees it at {@code /guestmemfs}: a flat directory of files. */
public final class GuestmemfsMount implements Vfs.FileSystem {
    public static final String MOUNT_POINT = "/guestmemfs";
    /** f_type of statfs(2). */
    public static final long MAGIC = 0x474d4653L;

    private final Guestmemfs fs;
    private final PhysicalMemory memory;

    public GuestmemfsMount(final Guestmemfs fs, final PhysicalMemory memory) {
        this.fs = fs;
        this.memory = memory;
    }

    public Guestmemfs filesystem() {
        return fs;
    }

    @Override
    public KernelFile open(final UserProcess process, final String path, final int flags) {
        final boolean create = (flags & Syscall.O_CREAT) != 0;
        final int inode = fs.lookup(path, create, (flags & Syscall.O_EXCL) != 0, process.uid());
        final GuestmemFile f = new GuestmemFile(fs, inode, path, memory);
        if ((flags & Syscall.O_TRUNC) != 0 && (flags & Syscall.O_ACCMODE) != Syscall.O_RDONLY) {
            try {
                f.truncate(0);
            } catch (KernelException e) {
                f.release();
                throw e;
            }
        }
        return f;
    }

    @Override
    public void unlink(final UserProcess process, final String path) {
        fs.unlink(path);
    }

    @Override
    public long[] stat(final String path) {
        if (path.isEmpty()) {
            throw new KernelException(Errno.EISDIR, MOUNT_POINT + " is the directory");
        }
        final Guestmemfs.Stat s = fs.stat(path);
        return new long[] {s.ino(), s.size(), s.blocks() * (GmfsLayout.BLOCK_SIZE / 512), s.mode(), s.uid()};
    }

    @Override
    public long[] statfs() {
        final Guestmemfs.StatFs s = fs.statfs();
        return new long[] {MAGIC, GmfsLayout.BLOCK_SIZE, s.blocks(), s.freeBlocks(), s.files(), s.freeFiles(), GmfsLayout.NAME_MAX};
    }

    @Override
    public List<String> list(final String path) {
        if (!path.isEmpty()) {
            fs.stat(path);
            throw new KernelException(Errno.ENOTDIR, path + " is a file");
        }
        return fs.list();
    }
}
