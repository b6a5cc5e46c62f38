package org.iopersist.kernel.fs;

/** {@code /dev/null}: reads see end-of-file, writes vanish; a file no live-update handler takes. */
public final class DevNull implements KernelFile {
    public static final String PATH = "/dev/null";

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        return 0;
    }

    @Override
    public long write(final UserProcess process, final long bufVa, final long count, final long offset) {
        return count;
    }

    @Override
    public String describe() {
        return PATH;
    }
}
