package org.iopersist.kernel.syscall;

import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.kho.FrameSource;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;

/**
 * The syscall table: decodes registers, calls the implementation, and turns a
 * {@link KernelException} into {@code -errno}. Pointers are resolved through the caller's VMAs.
 */
public final class Syscalls {
    static final int PATH_MAX = 4096;
    static final long MAX_IO = 1L << 24;

    private final PhysicalMemory memory;
    private final FrameSource frames;
    private final FrameRefs refs;
    private final Vfs vfs;
    private final LiveUpdateControl control;

    public Syscalls(final PhysicalMemory memory, final FrameSource frames, final FrameRefs refs, final Vfs vfs,
                    final LiveUpdateControl control) {
        this.memory = memory;
        this.frames = frames;
        this.refs = refs;
        this.vfs = vfs;
        this.control = control;
    }

    public Vfs vfs() {
        return vfs;
    }

    public FrameRefs refs() {
        return refs;
    }

    AddressSpace newAddressSpace() {
        return new AddressSpace(memory, frames, refs);
    }

    /** One syscall; never throws for a bad argument, answers {@code -errno}. */
    public long call(final UserProcess p, final int nr, final long a0, final long a1, final long a2,
                     final long a3, final long a4, final long a5) {
        try {
            return dispatch(p, nr, a0, a1, a2, a3, a4, a5);
        } catch (KernelException e) {
            return -e.errno().number;
        }
    }

    private long dispatch(final UserProcess p, final int nr, final long a0, final long a1, final long a2,
                          final long a3, final long a4, final long a5) {
        return switch (nr) {
            case Syscall.OPEN -> {
                final String path = p.mm().copyStringFromUser(a0, PATH_MAX);
                yield p.fds().install(vfs.open(p, path, (int) a1));
            }
            case Syscall.CLOSE -> {
                p.fds().remove(fd(a0)).release();
                yield 0;
            }
            case Syscall.READ, Syscall.WRITE -> {
                final FdTable.Entry e = p.fds().entry(fd(a0));
                checkCount(a2);
                final long n = nr == Syscall.READ ? e.file.read(p, a1, a2, e.position) : e.file.write(p, a1, a2, e.position);
                if (e.file.seekable()) {
                    e.position += n;
                }
                yield n;
            }
            case Syscall.PREAD64, Syscall.PWRITE64 -> {
                final KernelFile f = p.fds().get(fd(a0));
                checkCount(a2);
                if (a3 < 0) {
                    throw new KernelException(Errno.EINVAL, "negative offset");
                }
                yield nr == Syscall.PREAD64 ? f.read(p, a1, a2, a3) : f.write(p, a1, a2, a3);
            }
            case Syscall.LSEEK -> {
                final FdTable.Entry e = p.fds().entry(fd(a0));
                final long base = switch ((int) a2) {
                    case 0 -> 0;
                    case 1 -> e.position;
                    case 2 -> e.file.size();
                    default -> throw new KernelException(Errno.EINVAL, "whence " + a2);
                };
                if (base + a1 < 0) {
                    throw new KernelException(Errno.EINVAL, "negative position");
                }
                e.position = base + a1;
                yield e.position;
            }
            case Syscall.IOCTL -> p.fds().get(fd(a0)).ioctl(p, (int) a1, a2);
            case Syscall.MMAP -> {
                final int flags = (int) a3;
                final KernelFile f = (flags & Syscall.MAP_ANONYMOUS) != 0 ? null : p.fds().get(fd(a4));
                yield p.mm().mmap(a0, a1, (int) a2, flags, f, a5);
            }
            case Syscall.MUNMAP -> {
                p.mm().munmap(a0, a1);
                yield 0;
            }
            case Syscall.MEMFD_CREATE -> {
                final String name = p.mm().copyStringFromUser(a0, 250);
                if ((a1 & ~Syscall.MFD_CLOEXEC) != 0) {
                    throw new KernelException(Errno.EINVAL, "memfd_create flags 0x" + Long.toHexString(a1));
                }
                yield p.fds().install(new MemFd(name, memory, frames, refs));
            }
            case Syscall.FTRUNCATE -> {
                if (a1 < 0) {
                    throw new KernelException(Errno.EINVAL, "negative length");
                }
                p.fds().get(fd(a0)).truncate(a1);
                yield 0;
            }
            case Syscall.GETPID -> p.pid();
            case Syscall.GETUID -> p.uid();
            case Syscall.KEXEC_LOAD -> {
                requireRoot(p, "kexec_load");
                control.kexecLoad(p, a0 == 0 ? "" : p.mm().copyStringFromUser(a0, PATH_MAX));
                yield 0;
            }
            case Syscall.REBOOT -> {
                if ((int) a0 != Syscall.LINUX_REBOOT_MAGIC1 || (int) a1 != Syscall.LINUX_REBOOT_MAGIC2) {
                    throw new KernelException(Errno.EINVAL, "reboot magic");
                }
                requireRoot(p, "reboot");
                if ((int) a2 != Syscall.LINUX_REBOOT_CMD_KEXEC) {
                    throw new KernelException(Errno.EINVAL, "only LINUX_REBOOT_CMD_KEXEC is modelled");
                }
                control.rebootKexec(p);
                yield 0;
            }
            default -> throw new KernelException(Errno.ENOSYS, Syscall.name(nr));
        };
    }

    private static int fd(final long v) {
        if (v < 0 || v > Integer.MAX_VALUE) {
            throw new KernelException(Errno.EBADF, "fd " + v);
        }
        return (int) v;
    }

    private static void checkCount(final long count) {
        if (count < 0 || count > MAX_IO) {
            throw new KernelException(Errno.EINVAL, "count " + count);
        }
    }

    private static void requireRoot(final UserProcess p, final String what) {
        if (!p.root()) {
            throw new KernelException(Errno.EPERM, what + " needs CAP_SYS_BOOT");
        }
    }
}
