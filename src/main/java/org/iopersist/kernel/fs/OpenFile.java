package org.iopersist.kernel.fs;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * An open file description, Linux's {@code struct file}: the file, its position, and a reference
 * count. Each descriptor that points at it holds one reference, and so does any kernel user that
 * took one ({@code fget}): the live-update orchestrator holds every file it preserves, so closing
 * the last descriptor of a preserved memfd releases nothing. The file's {@link KernelFile#release}
 * runs with the last reference.
 */
public final class OpenFile {
    private final KernelFile file;
    private final AtomicInteger refs = new AtomicInteger(1);
    private volatile long position;

    /** A new description with one reference, which the caller owns. */
    public OpenFile(final KernelFile file) {
        this.file = file;
    }

    public KernelFile file() {
        return file;
    }

    /** {@code f_pos}. */
    public long position() {
        return position;
    }

    public void position(final long newPosition) {
        position = newPosition;
    }

    /** get_file: one more reference, released by {@link #put}. */
    public OpenFile get() {
        if (refs.getAndIncrement() <= 0) {
            throw new IllegalStateException("get of a released file " + file.describe());
        }
        return this;
    }

    /** fput: drops a reference; the last runs the file's release. */
    public void put() {
        final int left = refs.decrementAndGet();
        if (left == 0) {
            file.release();
        } else if (left < 0) {
            throw new IllegalStateException("unbalanced put of " + file.describe());
        }
    }

    /** References held now, for tests and accounting. */
    public int refs() {
        return refs.get();
    }
}
