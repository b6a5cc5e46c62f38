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
