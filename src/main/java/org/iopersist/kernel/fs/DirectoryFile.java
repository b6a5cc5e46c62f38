package org.iopersist.kernel.fs;

import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * An open directory (a mount point, or a sysfs directory): getdents64 reads its entries, nothing
 * else works. The entries are those at open, as a directory stream's first read sees them.
 */
public final class DirectoryFile implements KernelFile {
    /** One entry: its name, and whether it is a directory itself ({@code DT_DIR}) or not ({@code DT_REG}). */
    public record Entry(String name, boolean directory) {
    }

    private final String path;
    private final List<Entry> entries;
    private int position;

    DirectoryFile(final String path, final List<Entry> entries) {
        this.path = path;
        this.entries = List.copyOf(entries);
    }

    /** A directory of regular files only (a mount point's). */
    static DirectoryFile ofFiles(final String path, final List<String> names) {
        return new DirectoryFile(path, names.stream().map(n -> new Entry(n, false)).toList());
    }

    /** The entries from the current position on; {@link #advance} moves past those returned. */
    public synchronized List<Entry> remaining() {
        return entries.subList(position, entries.size());
    }

    public synchronized void advance(final int n) {
        position += n;
    }

    /**
     * lseek on a directory, as {@code dcache_dir_lseek}: {@code SEEK_SET} (0) or {@code SEEK_CUR} (1)
     * in entries, so an entry's {@code d_off} resumes after it and 0 rewinds; past the end
     * getdents64 returns 0. {@code SEEK_END} or a negative result is {@code EINVAL}.
     */
    public synchronized long seek(final long offset, final int whence) {
        final long base = switch (whence) {
            case 0 -> 0;
            case 1 -> position;
            default -> throw new KernelException(Errno.EINVAL, "whence " + whence + " on a directory");
        };
        if (base + offset < 0) {
            throw new KernelException(Errno.EINVAL, "negative position");
        }
        position = (int) Math.min(base + offset, entries.size());
        return base + offset;
    }

    public synchronized int position() {
        return position;
    }

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        throw new KernelException(Errno.EISDIR, path + " is a directory");
    }

    @Override
    public String describe() {
        return path;
    }
}
