package org.iopersist.kernel.guestmemfs;

import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.Permission;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.fs.Vfs;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/**
 * guestmemfs as the VFS sees it at {@code /guestmemfs}: a flat directory of files. The directory is
 * root's, 0755, as a file system root mounted by root: everyone may list it and look names up, only
 * root may create or unlink. A file is its creator's, 0600 (the mode open(2) asks for is not kept):
 * opening it needs its owner or root (EACCES).
 */
public final class GuestmemfsMount implements Vfs.FileSystem {
    public static final String MOUNT_POINT = "/guestmemfs";
    /** The mount point's inode. */
    public static final Permission DIRECTORY = Permission.root(0755);
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
        final boolean exclusive = (flags & Syscall.O_EXCL) != 0;
        final Guestmemfs.Stat existing = statOrNull(path);
        if (existing == null && create) {
            DIRECTORY.checkDirectoryChange(process, MOUNT_POINT); // may_o_create
        } else if (existing != null && !(create && exclusive)) {
            new Permission(existing.mode() & 07777, existing.uid(), 0).checkOpen(process, flags, MOUNT_POINT + "/" + path);
        }
        final int inode = fs.lookup(path, create, exclusive, process.uid());
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
        fs.stat(path); // ENOENT first, as the lookup comes before may_delete
        DIRECTORY.checkDirectoryChange(process, MOUNT_POINT);
        fs.unlink(path);
    }

    /** The file's stat, or null if there is none (a bad name still fails as lookup would). */
    private Guestmemfs.Stat statOrNull(final String path) {
        try {
            return fs.stat(path);
        } catch (KernelException e) {
            if (e.errno() == Errno.ENOENT) {
                return null;
            }
            throw e;
        }
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
