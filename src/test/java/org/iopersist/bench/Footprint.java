package org.iopersist.bench;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What a run costs the host, measured the same way at every size: the JVM's live heap after a full
 * GC, the process's resident set from {@code /proc/self/status}, and which bytes of the memory file
 * hold data on disk ({@code lseek(SEEK_DATA / SEEK_HOLE)}, so a hole costs nothing).
 */
final class Footprint {
    private static final int O_RDONLY = 0;
    private static final int SEEK_DATA = 3;
    private static final int SEEK_HOLE = 4;
    private static final int ENXIO = 6;
    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final MethodHandle OPEN = LINKER.downcallHandle(find("open"),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT),
            Linker.Option.captureCallState("errno"));
    private static final MethodHandle CLOSE = LINKER.downcallHandle(find("close"),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    private static final MethodHandle LSEEK = LINKER.downcallHandle(find("lseek"),
            FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT),
            Linker.Option.captureCallState("errno"));

    /** Resident set in bytes: all of it, the process's own (anonymous) part, and mapped files. */
    record Rss(long total, long anon, long file) {
    }

    private Footprint() {
    }

    private static MemorySegment find(final String name) {
        return LINKER.defaultLookup().find(name).orElseThrow(() -> new IllegalStateException("libc has no " + name));
    }

    /** Live heap after full collections: what the JVM holds, garbage aside. */
    static long liveHeapBytes() {
        for (int i = 0; i < 3; i++) {
            System.gc();
        }
        return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    }

    static Rss rss() throws IOException {
        long total = 0;
        long anon = 0;
        long file = 0;
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            final String[] f = line.split("\\s+");
            switch (f[0]) {
                case "VmRSS:" -> total = kib(f);
                case "RssAnon:" -> anon = kib(f);
                case "RssFile:", "RssShmem:" -> file += kib(f);
                default -> {
                }
            }
        }
        return new Rss(total, anon, file);
    }

    private static long kib(final String[] field) {
        return Long.parseLong(field[1]) * 1024; // "VmRSS:   123456 kB"
    }

    /**
     * Bytes of {@code [from, to)} of {@code file} that hold data on disk (the file system's
     * granularity, usually 4 KiB), less those inside any of {@code exclude} (pairs of start, end).
     */
    static long dataBytes(final Path file, final long from, final long to, final long... exclude) {
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment state = arena.allocate(CAPTURE);
            final int fd = (int) OPEN.invokeExact(state, arena.allocateFrom(file.toString()), O_RDONLY);
            if (fd < 0) {
                throw new IllegalStateException("open(" + file + "): errno " + (int) ERRNO.get(state, 0L));
            }
            try {
                long total = 0;
                long pos = from;
                while (pos < to) {
                    final long data = (long) LSEEK.invokeExact(state, fd, pos, SEEK_DATA);
                    if (data < 0) {
                        final int errno = (int) ERRNO.get(state, 0L);
                        if (errno == ENXIO) {
                            break; // no data past pos
                        }
                        throw new IllegalStateException("lseek(SEEK_DATA): errno " + errno);
                    }
                    if (data >= to) {
                        break;
                    }
                    final long hole = Math.min(to, (long) LSEEK.invokeExact(state, fd, data, SEEK_HOLE));
                    total += hole - data;
                    for (int i = 0; i + 1 < exclude.length; i += 2) {
                        total -= Math.max(0, Math.min(hole, exclude[i + 1]) - Math.max(data, exclude[i]));
                    }
                    pos = hole;
                }
                return total;
            } finally {
                final int rc = (int) CLOSE.invokeExact(fd);
                assert rc == 0;
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("lseek over " + file + ": " + t, t);
        }
    }
}
