package org.iopersist.uapi;

/**
 * Syscall numbers, x86-64's, so a trace of the model reads like a trace of Linux. Arguments travel
 * as six u64 registers; pointers are virtual addresses in the caller's address space.
 */
public final class Syscall {
    private Syscall() {
    }

    public static final int READ = 0;
    public static final int WRITE = 1;
    public static final int OPEN = 2;
    public static final int CLOSE = 3;
    public static final int STAT = 4;
    public static final int FSTAT = 5;
    public static final int LSEEK = 8;
    public static final int FCNTL = 72;
    public static final int GETRLIMIT = 97;
    public static final int SETRLIMIT = 160;
    public static final int PRLIMIT64 = 302;
    public static final int MMAP = 9;
    public static final int MUNMAP = 11;
    public static final int IOCTL = 16;
    public static final int PREAD64 = 17;
    public static final int PWRITE64 = 18;
    public static final int GETPID = 39;
    public static final int FTRUNCATE = 77;
    public static final int GETDENTS64 = 217;
    public static final int STATFS = 137;
    public static final int MKDIR = 83;
    public static final int UNLINK = 87;
    public static final int GETUID = 102;
    public static final int REBOOT = 169;
    public static final int KEXEC_LOAD = 246;
    public static final int MEMFD_CREATE = 319;

    /** Names for traces and errors. */
    public static String name(final int nr) {
        return switch (nr) {
            case READ -> "read";
            case WRITE -> "write";
            case OPEN -> "open";
            case CLOSE -> "close";
            case STAT -> "stat";
            case FSTAT -> "fstat";
            case STATFS -> "statfs";
            case LSEEK -> "lseek";
            case FCNTL -> "fcntl";
            case GETRLIMIT -> "getrlimit";
            case SETRLIMIT -> "setrlimit";
            case PRLIMIT64 -> "prlimit64";
            case MMAP -> "mmap";
            case MUNMAP -> "munmap";
            case IOCTL -> "ioctl";
            case PREAD64 -> "pread64";
            case PWRITE64 -> "pwrite64";
            case GETPID -> "getpid";
            case FTRUNCATE -> "ftruncate";
            case GETDENTS64 -> "getdents64";
            case MKDIR -> "mkdir";
            case UNLINK -> "unlink";
            case GETUID -> "getuid";
            case REBOOT -> "reboot";
            case KEXEC_LOAD -> "kexec_load";
            case MEMFD_CREATE -> "memfd_create";
            default -> "syscall_" + nr;
        };
    }

    // open(2) flags (octal in the C headers).
    public static final int O_RDONLY = 0;
    public static final int O_WRONLY = 1;
    public static final int O_RDWR = 2;
    public static final int O_ACCMODE = 3;
    public static final int O_CREAT = 0100;
    public static final int O_EXCL = 0200;
    public static final int O_TRUNC = 01000;
    public static final int O_CLOEXEC = 02000000;
    public static final int O_DIRECTORY = 0200000;

    /** struct stat (x86-64): the offsets the model fills; 144 bytes in all. */
    public static final int STAT_SIZE = 144;
    public static final int STAT_INO = 8;
    public static final int STAT_NLINK = 16;
    public static final int STAT_MODE = 24;
    public static final int STAT_UID = 28;
    public static final int STAT_SIZE_OFF = 48;
    public static final int STAT_BLKSIZE = 56;
    public static final int STAT_BLOCKS = 64;
    /** struct statfs (x86-64), 120 bytes: f_type, f_bsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, ..., f_namelen at 64. */
    public static final int STATFS_SIZE = 120;
    /** linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[], padded to 8. */
    public static final int DIRENT64_NAME = 19;
    public static final int DT_DIR = 4;
    public static final int DT_REG = 8;

    // mmap(2)
    public static final int PROT_NONE = 0;
    public static final int PROT_READ = 1;
    public static final int PROT_WRITE = 2;
    public static final int MAP_SHARED = 0x01;
    public static final int MAP_PRIVATE = 0x02;
    public static final int MAP_FIXED = 0x10;
    public static final int MAP_ANONYMOUS = 0x20;
    public static final int MAP_POPULATE = 0x8000;
    public static final int MAP_HUGETLB = 0x40000;
    /** The huge page MAP_HUGETLB maps with (x86-64's default hugepagesz). */
    public static final long HUGE_PAGE_SIZE = 2L << 20;

    // memfd_create(2)
    public static final int MFD_CLOEXEC = 0x0001;
    public static final int MFD_ALLOW_SEALING = 0x0002;
    public static final int MFD_HUGETLB = 0x0004;
    public static final int MFD_NOEXEC_SEAL = 0x0008;
    public static final int MFD_EXEC = 0x0010;
    /** NAME_MAX minus the "memfd:" prefix: the longest name memfd_create takes. */
    public static final int MFD_NAME_MAX_LEN = 255 - 6;

    // fcntl(2): file sealing (F_LINUX_SPECIFIC_BASE + 9, + 10) and the seals of include/uapi/linux/fcntl.h
    public static final int F_ADD_SEALS = 1033;
    public static final int F_GET_SEALS = 1034;
    public static final int F_SEAL_SEAL = 0x0001;
    public static final int F_SEAL_SHRINK = 0x0002;
    public static final int F_SEAL_GROW = 0x0004;
    public static final int F_SEAL_WRITE = 0x0008;
    public static final int F_SEAL_FUTURE_WRITE = 0x0010;
    public static final int F_SEAL_EXEC = 0x0020;

    // getrlimit(2) / setrlimit(2) / prlimit64(2): struct rlimit is {u64 rlim_cur; u64 rlim_max}
    public static final int RLIMIT_NOFILE = 7;
    public static final int RLIMIT_SIZE = 16;

    // reboot(2)
    public static final int LINUX_REBOOT_MAGIC1 = 0xfee1dead;
    public static final int LINUX_REBOOT_MAGIC2 = 672274793;
    /** The other dates {@code reboot(2)} accepts as magic2 (include/uapi/linux/reboot.h). */
    public static final int LINUX_REBOOT_MAGIC2A = 85072278;
    public static final int LINUX_REBOOT_MAGIC2B = 369367448;
    public static final int LINUX_REBOOT_MAGIC2C = 537993216;
    public static final int LINUX_REBOOT_CMD_KEXEC = 0x45584543;
}
