package org.iopersist.uapi;

/**
 * Linux errno values (x86-64 / asm-generic numbering), the only way an error crosses the syscall
 * boundary. The iommufd uAPI documents what each means for its ioctls:
 * <ul>
 *   <li>ENOTTY: the ioctl number is not supported;</li>
 *   <li>E2BIG: the struct is longer than the kernel knows and the unknown tail is not zero;</li>
 *   <li>EOPNOTSUPP: the struct is understood, but a known field has a value the kernel does not
 *       support (an unknown flag, a non-zero reserved field);</li>
 *   <li>EINVAL: understood but incorrect;</li>
 *   <li>ENOENT: an id or IOVA does not exist;</li>
 *   <li>ENOMEM, EOVERFLOW (arithmetic overflow).</li>
 * </ul>
 */
public enum Errno {
    EPERM(1),
    ENOENT(2),
    ESRCH(3),
    EINTR(4),
    EIO(5),
    ENXIO(6),
    E2BIG(7),
    EBADF(9),
    EAGAIN(11),
    ENOMEM(12),
    EACCES(13),
    EFAULT(14),
    EBUSY(16),
    EEXIST(17),
    ENODEV(19),
    ENOTDIR(20),
    EISDIR(21),
    EINVAL(22),
    ENFILE(23),
    EMFILE(24),
    ENOTTY(25),
    EFBIG(27),
    ENOSPC(28),
    ESPIPE(29),
    EROFS(30),
    ERANGE(34),
    EDEADLK(35),
    ENAMETOOLONG(36),
    ENOSYS(38),
    ENOTEMPTY(39),
    EBADE(52),
    EOVERFLOW(75),
    EBADFD(77),
    EMSGSIZE(90),
    EOPNOTSUPP(95),
    EADDRINUSE(98),
    ESHUTDOWN(108),
    ETIMEDOUT(110),
    ECANCELED(125);

    private static final Errno[] BY_NUMBER = new Errno[128];

    static {
        for (Errno e : values()) {
            BY_NUMBER[e.number] = e;
        }
    }

    public final int number;

    Errno(final int number) {
        this.number = number;
    }

    /** The errno for {@code number}, or null if this model never uses it. */
    public static Errno of(final int number) {
        return number > 0 && number < BY_NUMBER.length ? BY_NUMBER[number] : null;
    }

    /** A syscall's return value for this error: {@code -number}. */
    public long asReturn() {
        return -number;
    }
}
