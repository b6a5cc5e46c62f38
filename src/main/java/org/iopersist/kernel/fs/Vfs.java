package org.iopersist.kernel.fs;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.SysfsAttribute;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/**
 * The kernel's namespace: device nodes ({@code /dev/iommu}, {@code /dev/vfio/devices/vfioN}),
 * sysfs under {@code /sys}, {@code /proc/self/pagemap}, and mounted filesystems. open(2) resolves a
 * path here.
 */
public final class Vfs {
    /** What opening a device node or a mounted file makes. */
    @FunctionalInterface
    public interface Opener {
        KernelFile open(UserProcess process, String path, int flags);
    }

    /** A mounted filesystem: paths are relative to its mount point ("" is its root directory). */
    public interface FileSystem {
        KernelFile open(UserProcess process, String path, int flags);

        void unlink(UserProcess process, String path);

        /** stat(2) of a file: ino, size, blocks (512-byte units), mode, uid. */
        long[] stat(String path);

        /** statfs(2): type, block size, blocks, free blocks, files, free files, name max. */
        long[] statfs();

        /** The names in directory {@code path}. */
        java.util.List<String> list(String path);
    }

    /** A device node: its inode's mode and owner, and what opening it makes. */
    private record Node(Permission permission, Opener opener) {
    }

    /** A node registered without a mode: root's, 0600, as a misc or class device with no devnode mode. */
    public static final Permission DEFAULT_NODE = Permission.root(0600);

    private final Sysfs sysfs;
    private final Map<String, Node> devices = new ConcurrentHashMap<>();
    private final Map<String, FileSystem> mounts = new ConcurrentHashMap<>();

    public Vfs(final Sysfs sysfs) {
        this.sysfs = sysfs;
    }

    public Sysfs sysfs() {
        return sysfs;
    }

    public void registerDevice(final String path, final Opener opener) {
        registerDevice(path, DEFAULT_NODE, opener);
    }

    /** A device node with the mode and owner Linux gives it; open checks them (EACCES). */
    public void registerDevice(final String path, final Permission permission, final Opener opener) {
        if (devices.putIfAbsent(path, new Node(permission, opener)) != null) {
            throw new IllegalStateException("device node " + path + " exists");
        }
    }

    public void unregisterDevice(final String path) {
        devices.remove(path);
    }

    /** Mounts {@code fs} at {@code prefix}: paths under it go to the filesystem. */
    public void mount(final String prefix, final FileSystem fs) {
        mounts.put(prefix, fs);
    }

    /** The filesystem and the path inside it, or null. */
    private Map.Entry<FileSystem, String> resolve(final String path) {
        for (Map.Entry<String, FileSystem> m : mounts.entrySet()) {
            if (path.equals(m.getKey())) {
                return Map.entry(m.getValue(), "");
            }
            if (path.startsWith(m.getKey() + "/")) {
                return Map.entry(m.getValue(), path.substring(m.getKey().length() + 1));
            }
        }
        return null;
    }

    private Map.Entry<FileSystem, String> mounted(final String path) {
        final Map.Entry<FileSystem, String> r = path.startsWith("/") ? resolve(path) : null;
        if (r == null) {
            throw new KernelException(Errno.ENOENT, path);
        }
        return r;
    }

    public void unlink(final UserProcess process, final String path) {
        final Map.Entry<FileSystem, String> r = mounted(path);
        if (r.getValue().isEmpty()) {
            throw new KernelException(Errno.EISDIR, path + " is a directory");
        }
        r.getKey().unlink(process, r.getValue());
    }

    public long[] stat(final String path) {
        final Map.Entry<FileSystem, String> r = mounted(path);
        return r.getKey().stat(r.getValue());
    }

    public long[] statfs(final String path) {
        final Map.Entry<FileSystem, String> r = mounted(path);
        if (!r.getValue().isEmpty()) {
            r.getKey().stat(r.getValue()); // the path is looked up first: ENOENT for a name that is not there
        }
        return r.getKey().statfs();
    }

    public KernelFile open(final UserProcess process, final String path, final int flags) {
        if (path.isEmpty()) {
            throw new KernelException(Errno.ENOENT, "empty path");
        }
        if (!path.startsWith("/")) {
            throw new KernelException(Errno.ENOENT, "relative path " + path + " (no working directory)");
        }
        final boolean directoryOnly = (flags & Syscall.O_DIRECTORY) != 0;
        if (path.equals("/proc/self/pagemap")) {
            notADirectory(directoryOnly, path);
            return new PagemapFile(process);
        }
        if (path.equals("/proc/thread-self/fail-nth") || path.equals("/proc/self/task/" + process.pid() + "/fail-nth")) {
            notADirectory(directoryOnly, path);
            return new FailNthFile(process); // a process is one task here: its tid is its pid
        }
        final Node dev = devices.get(path);
        if (dev != null) {
            // do_open: O_DIRECTORY is refused before the file's own open runs (which, for a
            // persisted iommufd, would hand the context over).
            notADirectory(directoryOnly, path);
            dev.permission().checkOpen(process, flags, path);
            return dev.opener().open(process, path, flags);
        }
        if (path.startsWith(Sysfs.ROOT + "/") || path.equals(Sysfs.ROOT)) {
            final int acc = flags & Syscall.O_ACCMODE;
            final boolean wantsWrite = acc == Syscall.O_WRONLY || acc == Syscall.O_RDWR;
            final SysfsNode n = sysfs.lookup(path);
            if (n instanceof SysfsDir) {
                // As any directory in Linux: opened for reading (getdents64), never for writing.
                if (wantsWrite) {
                    throw new KernelException(Errno.EISDIR, path + " is a directory");
                }
                return new DirectoryFile(path, sysfs.entries(path));
            }
            if ((flags & Syscall.O_DIRECTORY) != 0) {
                throw new KernelException(Errno.ENOTDIR, path + " is not a directory");
            }
            final SysfsAttribute a = (SysfsAttribute) n;
            if (wantsWrite && !a.writable()) {
                // kernfs: no store method, no writing, whoever asks (root too).
                throw new KernelException(Errno.EACCES, path + " is read-only");
            }
            a.permission().checkOpen(process, flags, path);
            return new SysfsFile(path, a, acc != Syscall.O_WRONLY, wantsWrite);
        }
        final Map.Entry<FileSystem, String> r = resolve(path);
        if (r != null) {
            if (r.getValue().isEmpty()) {
                final int acc = flags & Syscall.O_ACCMODE;
                if (acc == Syscall.O_WRONLY || acc == Syscall.O_RDWR) {
                    throw new KernelException(Errno.EISDIR, path + " is a directory");
                }
                return DirectoryFile.ofFiles(path, r.getKey().list(r.getValue()));
            }
            if (directoryOnly) {
                r.getKey().stat(r.getValue()); // ENOENT first if there is nothing (guestmemfs is flat: no subdirectory)
                throw new KernelException(Errno.ENOTDIR, path + " is not a directory");
            }
            return r.getKey().open(process, r.getValue(), flags);
        }
        throw new KernelException(Errno.ENOENT, path);
    }

    private static void notADirectory(final boolean directoryOnly, final String path) {
        if (directoryOnly) {
            throw new KernelException(Errno.ENOTDIR, path + " is not a directory");
        }
    }
}
