package org.iopersist.vmm;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Wire;

/**
 * A process's side of the wire ABI: one connection to the kernel is one process. Offers the raw
 * {@link #syscall} and the calls a VMM needs, building strings and structs in the process's own
 * memory (its stack VMA) the way libc would, so every pointer the kernel sees is a real user address.
 *
 * <p>Not thread safe: one thread at a time, like a single-threaded process.
 */
public final class KernelClient implements AutoCloseable {
    private final SocketChannel channel;
    private final ByteBuffer buf = Wire.buffer(Wire.REQUEST_SIZE);
    private final Wire.Hello hello;
    private final UserMemory memory;

    private KernelClient(final SocketChannel channel, final Wire.Hello hello, final PhysicalMemory phys) {
        this.channel = channel;
        this.hello = hello;
        this.memory = new UserMemory(phys, this::pagemap);
        memory.seed(hello.stackVa(), hello.stackFrames());
    }

    /**
     * Connects to the kernel at {@code socket} as a new process, mapping the machine's memory file at
     * {@code memoryFile} as this process's physical view.
     */
    public static KernelClient connect(final Path socket, final Path memoryFile) throws IOException {
        final SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.connect(UnixDomainSocketAddress.of(socket));
            final Wire.Hello hello = Wire.readHello(ch, Wire.buffer(Wire.MAX_HELLO));
            return new KernelClient(ch, hello, PhysicalMemory.open(memoryFile));
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    public int pid() {
        return hello.pid();
    }

    public int uid() {
        return hello.uid();
    }

    public UserMemory memory() {
        return memory;
    }

    /** Scratch space in this process's stack VMA, for arguments. */
    public long scratch() {
        return hello.stackVa();
    }

    public long scratchLength() {
        return hello.stackLength();
    }

    /** The raw syscall: its return value, {@code -errno} on failure. */
    public long syscall(final int nr, final long a0, final long a1, final long a2, final long a3, final long a4, final long a5) {
        try {
            Wire.writeRequest(channel, buf, nr, a0, a1, a2, a3, a4, a5);
            final long ret = Wire.readReply(channel, buf);
            if (ret >= 0 && (nr == Syscall.MUNMAP || nr == Syscall.MMAP)) {
                // The mapping changed: what this process's "MMU" cached is stale (a TLB shootdown).
                memory.flush();
            }
            return ret;
        } catch (IOException e) {
            throw new IllegalStateException("kernel connection lost: " + e.getMessage(), e);
        }
    }

    public long syscall(final int nr, final long... args) {
        final long[] a = java.util.Arrays.copyOf(args, 6);
        return syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }

    private static long check(final long ret, final String what) {
        if (ret < 0) {
            throw new ErrnoException((int) -ret, what);
        }
        return ret;
    }

    private long putString(final long va, final String s) {
        final byte[] b = (s + "\0").getBytes(StandardCharsets.UTF_8);
        memory.writeBytes(va, b);
        return va;
    }

    public int open(final String path, final int flags) {
        return (int) check(syscall(Syscall.OPEN, putString(scratch(), path), flags, 0), "open " + path);
    }

    public void close(final int fd) {
        check(syscall(Syscall.CLOSE, fd), "close " + fd);
    }

    /** kexec_load: stages the next kernel with {@code cmdline} (uid 0 only). */
    public void kexecLoad(final String cmdline) {
        check(syscall(Syscall.KEXEC_LOAD, putString(scratch() + 2048, cmdline)), "kexec_load");
    }

    /**
     * reboot(LINUX_REBOOT_CMD_KEXEC): on success it does not return, as in Linux; this process's
     * connection ends with the kernel. Returns normally once the call went out; errors (EPERM,
     * EINVAL with nothing loaded) throw.
     */
    public void rebootKexec() {
        final long ret;
        try {
            ret = syscall(Syscall.REBOOT, Syscall.LINUX_REBOOT_MAGIC1, Syscall.LINUX_REBOOT_MAGIC2, Syscall.LINUX_REBOOT_CMD_KEXEC);
        } catch (RuntimeException gone) {
            return; // the kernel went away mid-call: that is the kexec
        }
        check(ret, "reboot(LINUX_REBOOT_CMD_KEXEC)");
    }

    /** Reads a small file (sysfs) whole. */
    public String readFile(final String path) {
        final int fd = open(path, Syscall.O_RDONLY);
        try {
            final long bufVa = scratch() + 4096;
            final long n = check(syscall(Syscall.PREAD64, fd, bufVa, 4096, 0), "read " + path);
            return new String(memory.readBytes(bufVa, (int) n), StandardCharsets.UTF_8);
        } finally {
            close(fd);
        }
    }

    /** Reads a file whole, of any size (a binary sysfs attribute such as {@code /sys/kernel/kho/fdt}), 16 KiB per pread. */
    public byte[] readAll(final String path) {
        final int fd = open(path, Syscall.O_RDONLY);
        try {
            final long bufVa = scratch() + 4096;
            final int chunk = 16384;
            final java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            while (true) {
                final long n = check(syscall(Syscall.PREAD64, fd, bufVa, chunk, out.size()), "read " + path);
                if (n == 0) {
                    return out.toByteArray();
                }
                out.writeBytes(memory.readBytes(bufVa, (int) n));
            }
        } finally {
            close(fd);
        }
    }

    /** Writes a small file (sysfs) in one write. */
    public void writeFile(final String path, final String value) {
        final int fd = open(path, Syscall.O_WRONLY);
        try {
            final byte[] b = value.getBytes(StandardCharsets.UTF_8);
            final long bufVa = scratch() + 4096;
            memory.writeBytes(bufVa, b);
            check(syscall(Syscall.WRITE, fd, bufVa, b.length), "write " + path);
        } finally {
            close(fd);
        }
    }

    public long mmap(final long addr, final long length, final int prot, final int flags, final int fd, final long offset) {
        final long va = check(syscall(Syscall.MMAP, addr, length, prot, flags, fd, offset), "mmap");
        memory.flush();
        return va;
    }

    public long mmapAnonymous(final long length) {
        return mmap(0, length, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_PRIVATE | Syscall.MAP_ANONYMOUS, -1, 0);
    }

    public void munmap(final long va, final long length) {
        check(syscall(Syscall.MUNMAP, va, length), "munmap");
        memory.flush();
    }

    public int memfdCreate(final String name) {
        return memfdCreate(name, 0);
    }

    /** memfd_create(2) with {@code flags} (MFD_ALLOW_SEALING, ...). */
    public int memfdCreate(final String name, final int flags) {
        return (int) check(syscall(Syscall.MEMFD_CREATE, putString(scratch(), name), flags), "memfd_create");
    }

    /** fcntl(2); its answer (F_GET_SEALS: the seals). */
    public long fcntl(final int fd, final int cmd, final long arg) {
        return check(syscall(Syscall.FCNTL, fd, cmd, arg), "fcntl " + cmd);
    }

    /** write(2) of {@code data} at the file's position; returns the bytes written. */
    public long write(final int fd, final byte[] data) {
        final long bufVa = scratch() + 4096;
        if (data.length > 8192) {
            throw new IllegalArgumentException("write of more than 8 KiB through the scratch page");
        }
        memory.writeBytes(bufVa, data);
        return check(syscall(Syscall.WRITE, fd, bufVa, data.length), "write " + fd);
    }

    /** read(2) of up to {@code count} bytes (at most 8 KiB) at the file's position. */
    public byte[] read(final int fd, final int count) {
        final long bufVa = scratch() + 4096;
        final long n = check(syscall(Syscall.READ, fd, bufVa, Math.min(count, 8192)), "read " + fd);
        return memory.readBytes(bufVa, (int) n);
    }

    /** lseek(2); returns the new position. */
    public long lseek(final int fd, final long offset, final int whence) {
        return check(syscall(Syscall.LSEEK, fd, offset, whence), "lseek " + fd);
    }

    /** setrlimit(RLIMIT_NOFILE, {cur, max}). */
    public void setNofileLimit(final long cur, final long max) {
        final long va = scratch() + 4096;
        memory.writeLong(va, cur);
        memory.writeLong(va + 8, max);
        check(syscall(Syscall.SETRLIMIT, Syscall.RLIMIT_NOFILE, va), "setrlimit(RLIMIT_NOFILE)");
    }

    public void ftruncate(final int fd, final long length) {
        check(syscall(Syscall.FTRUNCATE, fd, length), "ftruncate");
    }

    /** unlink(2): removes {@code path} from the filesystem mounted over it. */
    public void unlink(final String path) {
        check(syscall(Syscall.UNLINK, putString(scratch(), path)), "unlink " + path);
    }

    /** stat(2): {ino, size, blocks (512 B), mode, uid}. */
    public long[] stat(final String path) {
        final long buf = scratch() + 4096;
        check(syscall(Syscall.STAT, putString(scratch(), path), buf), "stat " + path);
        return new long[] {memory.readLong(buf + Syscall.STAT_INO), memory.readLong(buf + Syscall.STAT_SIZE_OFF),
            memory.readLong(buf + Syscall.STAT_BLOCKS), memory.readLong(buf + Syscall.STAT_MODE) & 0xFFFF_FFFFL,
            memory.readLong(buf + Syscall.STAT_UID) & 0xFFFF_FFFFL};
    }

    /** statfs(2): {f_type, f_bsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree}. */
    public long[] statfs(final String path) {
        final long buf = scratch() + 4096;
        check(syscall(Syscall.STATFS, putString(scratch(), path), buf), "statfs " + path);
        final long[] out = new long[7];
        for (int k = 0; k < 7; k++) {
            out[k] = memory.readLong(buf + 8L * k);
        }
        return out;
    }

    /** The names in a directory, read with getdents64. */
    public java.util.List<String> listDir(final String path) {
        final int fd = open(path, Syscall.O_RDONLY | Syscall.O_DIRECTORY);
        final java.util.List<String> names = new java.util.ArrayList<>();
        try {
            final long buf = scratch() + 4096;
            while (true) {
                final long n = check(syscall(Syscall.GETDENTS64, fd, buf, 2048), "getdents64 " + path);
                if (n == 0) {
                    return names;
                }
                final byte[] bytes = memory.readBytes(buf, (int) n);
                final java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                for (int off = 0; off < n; off += b.getShort(off + 16)) {
                    int end = off + Syscall.DIRENT64_NAME;
                    while (bytes[end] != 0) {
                        end++;
                    }
                    names.add(new String(bytes, off + Syscall.DIRENT64_NAME, end - off - Syscall.DIRENT64_NAME,
                            java.nio.charset.StandardCharsets.UTF_8));
                }
            }
        } finally {
            close(fd);
        }
    }

    /**
     * ioctl with a struct: copies {@code struct} into scratch user memory, calls, copies the kernel's
     * answer back into {@code struct}. Returns the raw return value ({@code -errno} on failure).
     */
    public long ioctl(final int fd, final int cmd, final MemorySegment struct) {
        final long va = scratch() + 8192;
        memory.write(va, struct, 0, struct.byteSize());
        final long ret = syscall(Syscall.IOCTL, fd, cmd, va);
        memory.read(va, struct, 0, struct.byteSize());
        return ret;
    }

    private long[] pagemap(final long vpn, final int count) {
        final int fd = (int) check(syscall(Syscall.OPEN, putString(scratch(), "/proc/self/pagemap"), Syscall.O_RDONLY), "open pagemap");
        try {
            // The answer lands in the stack VMA, whose frames the hello named.
            final long bufVa = scratch() + 16384;
            final long n = check(syscall(Syscall.PREAD64, fd, bufVa, count * 8L, vpn * 8), "read pagemap");
            final MemorySegment out = MemorySegment.ofArray(new long[(int) (n / 8)]);
            memory.read(bufVa, out, 0, n);
            final long[] entries = new long[(int) (n / 8)];
            for (int i = 0; i < entries.length; i++) {
                entries[i] = out.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i * 8L);
            }
            return entries;
        } finally {
            syscall(Syscall.CLOSE, fd);
        }
    }

    @Override
    /**
     * Process exit: shuts down the writing side, then waits until the kernel closes its end, which
     * it does only after every file of this process is released. So when this returns, a device this
     * process had bound can be bound by another, as after wait(2) on an exited child.
     */
    public void close() {
        try {
            channel.shutdownOutput();
            final ByteBuffer sink = ByteBuffer.allocate(256);
            while (channel.read(sink) >= 0) {
                sink.clear(); // a reply nobody waits for any more
            }
        } catch (IOException e) {
            // the kernel is gone (a kexec) or already closed: nothing left to wait for
        } finally {
            try {
                channel.close();
            } catch (IOException e) {
                // the kernel sees the process exit either way
            }
            memory.close();
        }
    }
}
