package org.iopersist.hw.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;

/**
 * The few libc calls a memory file needs that {@code FileChannel} does not offer, through FFM:
 * {@code open}/{@code close} for a descriptor of our own, {@code fallocate} to punch holes, and
 * {@code futex} to sleep on a word of a shared mapping until another process changes it. Each call
 * captures {@code errno}, so a failure says why.
 */
final class Libc {
    static final int O_RDWR = 2;
    static final int O_CLOEXEC = 0x80000; // 02000000 on x86_64 and aarch64 alike
    static final int FALLOC_FL_KEEP_SIZE = 0x01;
    static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    static final int ENOSYS = 38;
    static final int EOPNOTSUPP = 95;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option ERRNO_OPTION = Linker.Option.captureCallState("errno");
    // int open(const char *path, int flags, ... /* mode_t mode */)
    private static final MethodHandle OPEN = LINKER.downcallHandle(find("open"),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
            ERRNO_OPTION, Linker.Option.firstVariadicArg(2));
    private static final MethodHandle CLOSE = LINKER.downcallHandle(find("close"),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    // int fallocate(int fd, int mode, off_t offset, off_t len), off_t being 64-bit on LP64
    private static final MethodHandle FALLOCATE = LINKER.downcallHandle(find("fallocate"),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), ERRNO_OPTION);

    // long syscall(long number, ...): futex has no libc wrapper
    private static final MethodHandle SYSCALL = LINKER.downcallHandle(find("syscall"),
            FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
                    ValueLayout.JAVA_LONG, ValueLayout.ADDRESS), ERRNO_OPTION, Linker.Option.firstVariadicArg(1));
    // The same without errno: a wake is made on DMA paths (a fault record), which allocate nothing.
    private static final MethodHandle SYSCALL_NO_ERRNO = LINKER.downcallHandle(find("syscall"),
            FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
                    ValueLayout.JAVA_LONG, ValueLayout.ADDRESS), Linker.Option.firstVariadicArg(1));
    private static final long SYS_FUTEX = switch (System.getProperty("os.arch")) {
        case "amd64", "x86_64" -> 202;
        case "aarch64" -> 98;
        default -> -1;
    };
    // Not FUTEX_PRIVATE_FLAG: the word is in a MAP_SHARED file, and the waker may be another process.
    private static final long FUTEX_WAIT = 0;
    private static final long FUTEX_WAKE = 1;
    private static final StructLayout TIMESPEC = MemoryLayout.structLayout(ValueLayout.JAVA_LONG.withName("tv_sec"),
            ValueLayout.JAVA_LONG.withName("tv_nsec"));

    private Libc() {
    }

    private static MemorySegment find(final String name) {
        return LINKER.defaultLookup().find(name).orElseThrow(() -> new IllegalStateException("libc has no " + name));
    }

    /** {@code open(path, O_RDWR | O_CLOEXEC)}: a descriptor, or {@code -errno}. */
    static int openReadWrite(final Path path) {
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment state = arena.allocate(CAPTURE);
            final int fd = (int) OPEN.invokeExact(state, arena.allocateFrom(path.toString()), O_RDWR | O_CLOEXEC, 0);
            return fd >= 0 ? fd : -(int) ERRNO.get(state, 0L);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("open(" + path + "): " + t, t);
        }
    }

    static void close(final int fd) {
        try {
            final int rc = (int) CLOSE.invokeExact(fd);
            assert rc == 0 : "close(" + fd + ") failed";
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("close(" + fd + "): " + t, t);
        }
    }

    /** {@code fallocate(fd, mode, offset, length)}: 0, or {@code -errno}. */
    static int fallocate(final int fd, final int mode, final long offset, final long length) {
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment state = arena.allocate(CAPTURE);
            final int rc = (int) FALLOCATE.invokeExact(state, fd, mode, offset, length);
            return rc == 0 ? 0 : -(int) ERRNO.get(state, 0L);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("fallocate(" + fd + "): " + t, t);
        }
    }

    /** True where {@link #futexWait} and {@link #futexWake} can be called (x86_64 and aarch64 Linux). */
    static boolean hasFutex() {
        return SYS_FUTEX > 0;
    }

    /**
     * {@code futex(word, FUTEX_WAIT, expected, timeout)}: sleeps while the 32-bit {@code word} holds
     * {@code expected}, at most {@code timeoutNanos}. Returns 0 when woken, or {@code -errno}
     * (EAGAIN: the word had already changed; ETIMEDOUT; EINTR).
     */
    static int futexWait(final MemorySegment word, final int expected, final long timeoutNanos) {
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment state = arena.allocate(CAPTURE);
            final MemorySegment timeout = arena.allocate(TIMESPEC);
            timeout.set(ValueLayout.JAVA_LONG, 0, timeoutNanos / 1_000_000_000L);
            timeout.set(ValueLayout.JAVA_LONG, 8, timeoutNanos % 1_000_000_000L);
            final long rc = (long) SYSCALL.invokeExact(state, SYS_FUTEX, word, FUTEX_WAIT, (long) expected, timeout);
            return rc == 0 ? 0 : -(int) ERRNO.get(state, 0L);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("futex wait: " + t, t);
        }
    }

    /**
     * {@code futex(word, FUTEX_WAKE, every waiter)}: the number woken, or -1 (the word is a mapped,
     * aligned u32, so no error is expected). Allocates nothing.
     */
    static int futexWake(final MemorySegment word) {
        try {
            return (int) (long) SYSCALL_NO_ERRNO.invokeExact(SYS_FUTEX, word, FUTEX_WAKE, (long) Integer.MAX_VALUE,
                    MemorySegment.NULL);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("futex wake: " + t, t);
        }
    }
}
