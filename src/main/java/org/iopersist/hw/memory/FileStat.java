package org.iopersist.hw.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;

/**
 * {@code stat(2)} through FFM, for the one field Java does not expose: {@code st_blocks}.
 *
 * <p>On both x86_64 and aarch64 glibc, {@code struct stat} is 144 bytes (128 on aarch64) and
 * {@code st_blocks} sits at offset 64 in 512-byte units.
 */
public final class FileStat {
    private static final long STAT_BUFFER_SIZE = 256;
    private static final long ST_BLOCKS_OFFSET = 64;
    private static final MethodHandle STAT;

    static {
        final Linker linker = Linker.nativeLinker();
        STAT = linker.downcallHandle(
                linker.defaultLookup().find("stat").orElseThrow(() -> new IllegalStateException("libc has no stat")),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS));
    }

    private FileStat() {
    }

    /** st_blocks * 512 for {@code path}. */
    public static long allocatedBytes(final Path path) {
        try (Arena arena = Arena.ofConfined()) {
            final MemorySegment buf = arena.allocate(STAT_BUFFER_SIZE, 8);
            final int rc = (int) STAT.invokeExact(arena.allocateFrom(path.toString()), buf);
            if (rc != 0) {
                throw new IllegalStateException("stat(" + path + ") failed");
            }
            return buf.get(ValueLayout.JAVA_LONG, ST_BLOCKS_OFFSET) * 512L;
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("stat(" + path + "): " + t, t);
        }
    }
}
