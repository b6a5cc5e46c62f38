package org.iopersist.kernel.fs;

import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/** An open directory of a mounted filesystem: getdents64 reads its entries, nothing else works. */
public final class DirectoryFile implements KernelFile {
    private final String path;
    private final List<String> names;
    private int position;

    DirectoryFile(final String path, final List<String> names) {
        this.path = path;
        this.names = List.copyOf(names);
    }

    /** The entries from the current position on; {@link #advance} moves past those returned. */
    public synchronized List<String> remaining() {
        return names.subList(position, names.size());
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
