package org.iopersist.hw.memory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A file mapped whole, read-write and shared, into one shared {@link Arena}.
 *
 * <p>Mapping is {@code MAP_SHARED}: every process that maps the same file sees the same bytes, which
 * is what makes the machine directory a real boundary between the machine, kernel and VMM processes.
 * A file created here is sparse ({@code ftruncate} to its size), so untouched frames cost nothing.
 */
public final class MappedFile implements AutoCloseable {
    private final Path path;
    private final Arena arena;
    private final MemorySegment segment;

    private MappedFile(final Path path, final Arena arena, final MemorySegment segment) {
        this.path = path;
        this.arena = arena;
        this.segment = segment;
    }

    /** Creates (or truncates to zero and regrows) a sparse file of {@code size} bytes and maps it. */
    public static MappedFile create(final Path path, final long size) {
        if (size <= 0) {
            throw new IllegalArgumentException("size=" + size + " must be positive");
        }
        try {
            Files.createDirectories(path.toAbsolutePath().getParent());
            try (FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.READ,
                    StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                // Writing one byte at the end would allocate a block; truncate up keeps the file a hole.
                ch.truncate(0);
                try (var raf = new java.io.RandomAccessFile(path.toFile(), "rw")) {
                    raf.setLength(size);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + path + ": " + e.getMessage(), e);
        }
        return open(path);
    }

    /** Maps an existing file whole. */
    public static MappedFile open(final Path path) {
        final Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            final long size = ch.size();
            if (size == 0) {
                throw new IllegalArgumentException(path + " is empty");
            }
            return new MappedFile(path, arena, ch.map(FileChannel.MapMode.READ_WRITE, 0, size, arena));
        } catch (IOException e) {
            arena.close();
            throw new UncheckedIOException("cannot map " + path + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    public Path path() {
        return path;
    }

    /** The whole mapping; page aligned, so offset alignment equals address alignment. */
    public MemorySegment segment() {
        return segment;
    }

    public long size() {
        return segment.byteSize();
    }

    /** Bytes the file system has allocated for the file (st_blocks * 512). */
    public long allocatedBytes() {
        return FileStat.allocatedBytes(path);
    }

    @Override
    public void close() {
        arena.close();
    }
}
