package org.iopersist.kernel.syscall;

import org.iopersist.kernel.fs.DirectoryFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.fs.Vfs;
import org.iopersist.kernel.mm.AddressSpace;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.memfd.MemFd;

import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.mm.FrameSource;
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
            final FaultInjection faults = frames.faults();
            if (faults == null) {
                return dispatch(p, nr, a0, a1, a2, a3, a4, a5);
            }
            // The syscall runs as its process: the fail_nth sites it reaches count down that task's.
            return faults.callAs(p.failNth(), () -> dispatch(p, nr, a0, a1, a2, a3, a4, a5));
        } catch (KernelException e) {
            return -e.errno().number;
        }
    }

    /**
     * getname: a names_cache buffer (a fail_nth site, ENOMEM), then strncpy_from_user (EFAULT,
     * ENAMETOOLONG).
     */
    private String getname(final UserProcess p, final long va) {
        FaultInjection.check(frames.faults(), FaultInjection.Site.SLAB);
        return p.mm().copyStringFromUser(va, PATH_MAX);
    }

    private long dispatch(final UserProcess p, final int nr, final long a0, final long a1, final long a2,
                          final long a3, final long a4, final long a5) {
        return switch (nr) {
            case Syscall.OPEN -> {
                final String path = getname(p, a0);
                // do_sys_openat2: the name, then the descriptor, then the open (which may have side
                // effects; path_openat's alloc_empty_file first), then fd_install.
                final int fd = p.fds().reserve();
                try {
                    FaultInjection.check(frames.faults(), FaultInjection.Site.SLAB);
                    p.fds().installAt(fd, new OpenFile(vfs.open(p, path, (int) a1)));
                } catch (RuntimeException e) {
                    p.fds().unreserve(fd);
                    throw e;
                }
                yield fd;
            }
            case Syscall.CLOSE -> {
                p.fds().remove(fd(a0)).put();
                yield 0;
            }
            case Syscall.READ, Syscall.WRITE -> {
                final OpenFile e = p.fds().entry(fd(a0));
                checkCount(a2);
                final long n = nr == Syscall.READ ? e.file().read(p, a1, a2, e.position()) : e.file().write(p, a1, a2, e.position());
                if (e.file().seekable()) {
                    e.position(e.position() + n);
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
                final OpenFile e = p.fds().entry(fd(a0));
                if (e.file() instanceof DirectoryFile dir) {
                    yield dir.seek(a1, (int) a2); // dcache_dir_lseek: positions count entries, as d_off does
                }
                final long base = switch ((int) a2) {
                    case 0 -> 0;
                    case 1 -> e.position();
                    case 2 -> e.file().size();
                    default -> throw new KernelException(Errno.EINVAL, "whence " + a2);
                };
                if (base + a1 < 0) {
                    throw new KernelException(Errno.EINVAL, "negative position");
                }
                e.position(base + a1);
                yield e.position();
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
            case Syscall.MEMFD_CREATE -> memfdCreate(p, a0, (int) a1);
            case Syscall.FCNTL -> fcntl(p, fd(a0), (int) a1, a2);
            case Syscall.GETRLIMIT -> rlimit(p, 0, (int) a0, 0, a1);
            case Syscall.SETRLIMIT -> rlimit(p, 0, (int) a0, a1, 0);
            case Syscall.PRLIMIT64 -> rlimit(p, (int) a0, (int) a1, a2, a3);
            case Syscall.FTRUNCATE -> {
                if (a1 < 0) {
                    throw new KernelException(Errno.EINVAL, "negative length");
                }
                p.fds().get(fd(a0)).truncate(a1);
                yield 0;
            }
            case Syscall.UNLINK -> {
                vfs.unlink(p, getname(p, a0));
                yield 0;
            }
            case Syscall.STAT -> {
                final long[] st = vfs.stat(getname(p, a0));
                final java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(Syscall.STAT_SIZE).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                b.putLong(Syscall.STAT_INO, st[0]).putLong(Syscall.STAT_NLINK, 1).putInt(Syscall.STAT_MODE, (int) st[3])
                        .putInt(Syscall.STAT_UID, (int) st[4]).putLong(Syscall.STAT_SIZE_OFF, st[1])
                        .putLong(Syscall.STAT_BLKSIZE, 2L << 20).putLong(Syscall.STAT_BLOCKS, st[2]);
                p.mm().copyToUser(a1, java.lang.foreign.MemorySegment.ofArray(b.array()), 0, Syscall.STAT_SIZE);
                yield 0;
            }
            case Syscall.STATFS -> {
                final long[] sf = vfs.statfs(getname(p, a0));
                final java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(Syscall.STATFS_SIZE).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                b.putLong(0, sf[0]).putLong(8, sf[1]).putLong(16, sf[2]).putLong(24, sf[3]).putLong(32, sf[3])
                        .putLong(40, sf[4]).putLong(48, sf[5]).putLong(64, sf[6]).putLong(72, sf[1]);
                p.mm().copyToUser(a1, java.lang.foreign.MemorySegment.ofArray(b.array()), 0, Syscall.STATFS_SIZE);
                yield 0;
            }
            case Syscall.GETDENTS64 -> getdents64(p, p.fds().get(fd(a0)), a1, a2);
            case Syscall.GETPID -> p.pid();
            case Syscall.GETUID -> p.uid();
            case Syscall.KEXEC_LOAD -> {
                requireRoot(p, "kexec_load");
                control.kexecLoad(p, a0 == 0 ? "" : p.mm().copyStringFromUser(a0, PATH_MAX));
                yield 0;
            }
            case Syscall.REBOOT -> {
                // kernel/reboot.c: CAP_SYS_BOOT first (EPERM), then the magic (EINVAL).
                requireRoot(p, "reboot");
                final int magic2 = (int) a1;
                if ((int) a0 != Syscall.LINUX_REBOOT_MAGIC1 || magic2 != Syscall.LINUX_REBOOT_MAGIC2
                        && magic2 != Syscall.LINUX_REBOOT_MAGIC2A && magic2 != Syscall.LINUX_REBOOT_MAGIC2B
                        && magic2 != Syscall.LINUX_REBOOT_MAGIC2C) {
                    throw new KernelException(Errno.EINVAL, "reboot magic");
                }
                if ((int) a2 != Syscall.LINUX_REBOOT_CMD_KEXEC) {
                    throw new KernelException(Errno.EINVAL, "only LINUX_REBOOT_CMD_KEXEC is modelled");
                }
                control.rebootKexec(p);
                yield 0;
            }
            default -> throw new KernelException(Errno.ENOSYS, Syscall.name(nr));
        };
    }

    private static final int MFD_ALL_FLAGS = Syscall.MFD_CLOEXEC | Syscall.MFD_ALLOW_SEALING | Syscall.MFD_HUGETLB
            | Syscall.MFD_NOEXEC_SEAL | Syscall.MFD_EXEC;

    /**
     * memfd_create(2) in mm/memfd.c's order: unknown flags, then MFD_EXEC with MFD_NOEXEC_SEAL
     * (EINVAL), then the name (EFAULT; longer than 249 bytes EINVAL), then a descriptor (EMFILE).
     * Hugetlb memfds are not modelled (EINVAL).
     */
    private long memfdCreate(final UserProcess p, final long nameVa, final int flags) {
        if ((flags & ~MFD_ALL_FLAGS) != 0 || (flags & Syscall.MFD_HUGETLB) != 0) {
            throw new KernelException(Errno.EINVAL, "memfd_create flags 0x" + Integer.toHexString(flags));
        }
        if ((flags & Syscall.MFD_EXEC) != 0 && (flags & Syscall.MFD_NOEXEC_SEAL) != 0) {
            throw new KernelException(Errno.EINVAL, "memfd_create with both MFD_EXEC and MFD_NOEXEC_SEAL");
        }
        final String name;
        try {
            name = p.mm().copyStringFromUser(nameVa, Syscall.MFD_NAME_MAX_LEN + 1);
        } catch (KernelException e) {
            throw e.errno() == Errno.ENAMETOOLONG ? new KernelException(Errno.EINVAL, "memfd name longer than "
                    + Syscall.MFD_NAME_MAX_LEN + " bytes") : e;
        }
        return install(p, new MemFd(name, memory, frames, refs, (flags & Syscall.MFD_ALLOW_SEALING) != 0,
                (flags & Syscall.MFD_NOEXEC_SEAL) != 0));
    }

    /**
     * fcntl(2), its file-sealing commands (memfd_fcntl): F_ADD_SEALS (arg above UINT_MAX, an unknown
     * seal or a file that is not a memfd: EINVAL) and F_GET_SEALS (not a memfd: EINVAL). Other
     * commands are not modelled (EINVAL).
     */
    private static long fcntl(final UserProcess p, final int fd, final int cmd, final long arg) {
        final KernelFile f = p.fds().get(fd);
        switch (cmd) {
            case Syscall.F_ADD_SEALS -> {
                if (Long.compareUnsigned(arg, 0xFFFF_FFFFL) > 0) {
                    throw new KernelException(Errno.EINVAL, "F_ADD_SEALS arg above UINT_MAX");
                }
                if ((arg & ~MemFd.F_ALL_SEALS) != 0) {
                    throw new KernelException(Errno.EINVAL, "unknown seals 0x" + Long.toHexString(arg));
                }
                if (!(f instanceof MemFd m)) {
                    throw new KernelException(Errno.EINVAL, f.describe() + " cannot be sealed");
                }
                m.addSeals((int) arg);
                return 0;
            }
            case Syscall.F_GET_SEALS -> {
                if (!(f instanceof MemFd m)) {
                    throw new KernelException(Errno.EINVAL, f.describe() + " has no seals");
                }
                return m.seals();
            }
            default -> throw new KernelException(Errno.EINVAL, "fcntl cmd " + cmd + " is not modelled");
        }
    }

    /**
     * getrlimit / setrlimit / prlimit64 ({@code pid} 0: the caller), for RLIMIT_NOFILE, the one limit
     * the model keeps: {@code struct rlimit {u64 rlim_cur; u64 rlim_max}}. Others: EINVAL.
     */
    private static long rlimit(final UserProcess p, final int pid, final int resource, final long newVa, final long oldVa) {
        if (pid != 0 && pid != p.pid()) {
            throw new KernelException(Errno.ESRCH, "prlimit64 of another process");
        }
        if (resource != Syscall.RLIMIT_NOFILE) {
            throw new KernelException(Errno.EINVAL, "resource " + resource + " is not modelled");
        }
        long[] next = null;
        if (newVa != 0) {
            final java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(Syscall.RLIMIT_SIZE).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            p.mm().copyFromUser(newVa, java.lang.foreign.MemorySegment.ofArray(b.array()), 0, Syscall.RLIMIT_SIZE);
            next = new long[] {b.getLong(0), b.getLong(8)};
        }
        final long[] old = p.fds().nofileLimit();
        if (next != null) {
            p.fds().nofileLimit(next[0], next[1], p.root());
        }
        if (oldVa != 0) { // do_prlimit's old value, copied out once the new one is set
            final java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(Syscall.RLIMIT_SIZE).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            b.putLong(0, old[0]).putLong(8, old[1]);
            p.mm().copyToUser(oldVa, java.lang.foreign.MemorySegment.ofArray(b.array()), 0, Syscall.RLIMIT_SIZE);
        }
        return 0;
    }

    /** getdents64(2): as many linux_dirent64 records as fit; 0 at the end; EINVAL if none fits. */
    private static long getdents64(final UserProcess p, final KernelFile f, final long bufVa, final long count) {
        if (!(f instanceof DirectoryFile dir)) {
            throw new KernelException(Errno.ENOTDIR, f.describe() + " is not a directory");
        }
        final java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        int taken = 0;
        for (DirectoryFile.Entry e : dir.remaining()) {
            final byte[] n = e.name().getBytes(java.nio.charset.StandardCharsets.UTF_8);
            final int reclen = (Syscall.DIRENT64_NAME + n.length + 1 + 7) & ~7;
            if (out.size() + reclen > count) {
                break;
            }
            final java.nio.ByteBuffer r = java.nio.ByteBuffer.allocate(reclen).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            r.putLong(0, dir.position() + taken + 1).putLong(8, dir.position() + taken + 1).putShort(16, (short) reclen)
                    .put(18, (byte) (e.directory() ? Syscall.DT_DIR : Syscall.DT_REG)).put(Syscall.DIRENT64_NAME, n, 0, n.length);
            out.writeBytes(r.array());
            taken++;
        }
        if (taken == 0 && !dir.remaining().isEmpty()) {
            throw new KernelException(Errno.EINVAL, "getdents64 buffer of " + count + " bytes too small for one entry");
        }
        final byte[] bytes = out.toByteArray();
        p.mm().copyToUser(bufVa, java.lang.foreign.MemorySegment.ofArray(bytes), 0, bytes.length);
        dir.advance(taken);
        return bytes.length;
    }

    /** fd_install, or EMFILE with the file released: nothing holds what a process could not get a descriptor for. */
    private static int install(final UserProcess p, final KernelFile f) {
        try {
            return p.fds().install(f);
        } catch (KernelException e) {
            f.release();
            throw e;
        }
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
