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
 *
 * <p>{@link #zeroRange} zeroes by punching a hole ({@code fallocate(PUNCH_HOLE)}) rather than by
 * writing: the range reads back as zeros through every shared mapping of the file (Linux drops the
 * range's page cache and unmaps it everywhere), and it costs no disk and no page cache.
 */
public final class MappedFile implements AutoCloseable {
    private static final long PAGE = 4096;
    private static final int NOT_OPEN = -1;
    private static final int UNSUPPORTED = -2;

    private final Path path;
    private final Arena arena;
    private final MemorySegment segment;
    private int fd = NOT_OPEN; // guarded by this; our own descriptor for fallocate, opened on first use

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
            throw new UncheckedIOException("cannot create " + path + ": " + IoReasons.describe(e), e);
        }
        return open(path);
    }

    /** Maps an existing file whole. */
    public static MappedFile open(final Path path) {
        return open(path, false);
    }

    /**
     * Maps an existing file whole for reading only ({@code O_RDONLY}, {@code PROT_READ}): a tool
     * that looks at a machine cannot change it, and a store through the segment throws.
     */
    public static MappedFile openReadOnly(final Path path) {
        return open(path, true);
    }

    private static MappedFile open(final Path path, final boolean readOnly) {
        final Arena arena = Arena.ofShared();
        try (FileChannel ch = readOnly ? FileChannel.open(path, StandardOpenOption.READ)
                : FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            final long size = ch.size();
            if (size == 0) {
                throw new IllegalArgumentException(path + " is empty");
            }
            return new MappedFile(path, arena, ch.map(readOnly ? FileChannel.MapMode.READ_ONLY : FileChannel.MapMode.READ_WRITE,
                    0, size, arena));
        } catch (IOException e) {
            arena.close();
            throw new UncheckedIOException("cannot map " + path + ": " + IoReasons.describe(e), e);
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

    /**
     * Zeroes {@code [offset, offset + length)}: whole 4 KiB pages become a hole in the file, the
     * unaligned head and tail are written with zeros. Where the file system cannot punch holes
     * (EOPNOTSUPP), the whole range is written with zeros instead; the contents are the same.
     */
    public void zeroRange(final long offset, final long length) {
        final long end = offset + length;
        final long first = (offset + PAGE - 1) & -PAGE;
        final long last = end & -PAGE;
        if (first >= last) {
            segment.asSlice(offset, length).fill((byte) 0);
            return;
        }
        segment.asSlice(offset, first - offset).fill((byte) 0);
        segment.asSlice(last, end - last).fill((byte) 0);
        if (!punchHole(first, last - first)) {
            segment.asSlice(first, last - first).fill((byte) 0);
        }
    }

    /** True if the pages of {@code [offset, offset + length)} are a hole now. */
    private synchronized boolean punchHole(final long offset, final long length) {
        if (fd == NOT_OPEN) {
            final int rc = Libc.openReadWrite(path);
            fd = rc >= 0 ? rc : UNSUPPORTED;
        }
        if (fd == UNSUPPORTED) {
            return false;
        }
        final int rc = Libc.fallocate(fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset, length);
        if (rc == -Libc.EOPNOTSUPP || rc == -Libc.ENOSYS) {
            Libc.close(fd); // this file system never will: stop asking
            fd = UNSUPPORTED;
        }
        return rc == 0;
    }

    @Override
    public void close() {
        synchronized (this) {
            if (fd >= 0) {
                Libc.close(fd);
            }
            fd = UNSUPPORTED;
        }
        arena.close();
    }
}
