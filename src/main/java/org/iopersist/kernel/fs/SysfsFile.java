package org.iopersist.kernel.fs;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.SysfsAttribute;
import org.iopersist.uapi.Errno;

/** An open sysfs attribute: reads render it, a write stores the whole buffer as one value. */
final class SysfsFile implements KernelFile {
    private final String path;
    private final SysfsAttribute attribute;
    private final boolean readable;
    private final boolean writable;

    SysfsFile(final String path, final SysfsAttribute attribute, final boolean readable, final boolean writable) {
        this.path = path;
        this.attribute = attribute;
        this.readable = readable;
        this.writable = writable;
    }

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        if (!readable) {
            throw new KernelException(Errno.EBADF, path + " not open for reading");
        }
        final byte[] text = attribute.bytes();
        if (offset >= text.length) {
            return 0;
        }
        final int n = (int) Math.min(count, text.length - offset);
        process.mm().copyToUser(bufVa, MemorySegment.ofArray(text), offset, n);
        return n;
    }

    @Override
    public long write(final UserProcess process, final long bufVa, final long count, final long offset) {
        if (!writable) {
            throw new KernelException(Errno.EBADF, path + " not open for writing");
        }
        if (count > 4096) {
            throw new KernelException(Errno.EINVAL, "sysfs write of " + count + " bytes");
        }
        final byte[] buf = new byte[(int) count];
        process.mm().copyFromUser(bufVa, MemorySegment.ofArray(buf), 0, count);
        attribute.write(new String(buf, StandardCharsets.UTF_8));
        return count;
    }

    @Override
    public String describe() {
        return path;
    }
}
