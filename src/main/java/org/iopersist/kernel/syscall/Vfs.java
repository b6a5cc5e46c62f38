package org.iopersist.kernel.syscall;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.sysfs.Sysfs;
import org.iopersist.kernel.sysfs.SysfsAttribute;
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

    private final Sysfs sysfs;
    private final Map<String, Opener> devices = new ConcurrentHashMap<>();
    private final Map<String, Opener> mounts = new ConcurrentHashMap<>();

    public Vfs(final Sysfs sysfs) {
        this.sysfs = sysfs;
    }

    public Sysfs sysfs() {
        return sysfs;
    }

    public void registerDevice(final String path, final Opener opener) {
        if (devices.putIfAbsent(path, opener) != null) {
            throw new IllegalStateException("device node " + path + " exists");
        }
    }

    public void unregisterDevice(final String path) {
        devices.remove(path);
    }

    /** Files under {@code prefix + "/"} are opened by {@code opener} (a mounted filesystem). */
    public void mount(final String prefix, final Opener opener) {
        mounts.put(prefix, opener);
    }

    public KernelFile open(final UserProcess process, final String path, final int flags) {
        if (path.isEmpty()) {
            throw new KernelException(Errno.ENOENT, "empty path");
        }
        if (!path.startsWith("/")) {
            throw new KernelException(Errno.ENOENT, "relative path " + path + " (no working directory)");
        }
        if (path.equals("/proc/self/pagemap")) {
            return new PagemapFile(process);
        }
        final Opener dev = devices.get(path);
        if (dev != null) {
            return dev.open(process, path, flags);
        }
        if (path.startsWith(Sysfs.ROOT + "/")) {
            final SysfsAttribute a = sysfs.attribute(path);
            final int acc = flags & Syscall.O_ACCMODE;
            final boolean wantsWrite = acc == Syscall.O_WRONLY || acc == Syscall.O_RDWR;
            if (wantsWrite && !a.writable()) {
                throw new KernelException(Errno.EACCES, path + " is read-only");
            }
            if (a.ownerUid() >= 0 && !process.root() && process.uid() != a.ownerUid()) {
                throw new KernelException(Errno.EACCES, path + " belongs to uid " + a.ownerUid());
            }
            return new SysfsFile(path, a, acc != Syscall.O_WRONLY, wantsWrite);
        }
        for (Map.Entry<String, Opener> m : mounts.entrySet()) {
            if (path.startsWith(m.getKey() + "/")) {
                return m.getValue().open(process, path, flags);
            }
        }
        throw new KernelException(Errno.ENOENT, path);
    }
}
