package org.iopersist.uapi;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;

/**
 * The wire ABI between a process and the kernel, over a Unix domain stream socket: one connection is
 * one process. All integers are little-endian. Every frame starts with its own total length.
 *
 * <pre>
 * hello    (kernel → process, once, right after connect)          48 + 8 * stack pages bytes
 *   u32 length | u32 magic 0x494f5053 "SPOI" | u32 abi version | u32 pid
 *   u32 uid | u32 gid | u64 stack_va | u64 stack_len | u64 reserved = 0
 *   u64 stack_frame[stack_len / 4096]     physical address of each stack page
 *
 * request  (process → kernel)                                       56 bytes
 *   u32 length = 56 | u32 syscall number (x86-64) | u64 arg[6]
 *
 * reply    (kernel → process)                                       16 bytes
 *   u32 length = 16 | u32 reserved = 0 | s64 return value (≥ 0, or -errno)
 * </pre>
 *
 * Arguments are registers: pointers are virtual addresses in the calling process, which the kernel
 * resolves through that process's VMAs ({@code copy_from_user}). The stack VMA the hello names is
 * where a process without other memory puts its first strings and structs; the hello names its
 * frames so the process can reach it before it can ask {@code /proc/self/pagemap} for anything else.
 */
public final class Wire {
    private Wire() {
    }

    public static final int MAGIC = 0x494f5053;
    public static final int ABI_VERSION = 1;
    public static final int HELLO_SIZE = 48;
    public static final int MAX_HELLO = HELLO_SIZE + 8 * 256;
    public static final int REQUEST_SIZE = 56;
    public static final int REPLY_SIZE = 16;
    public static final int ARGS = 6;

    /** The hello a process receives. */
    public record Hello(int pid, int uid, int gid, long stackVa, long stackLength, long[] stackFrames) {
    }

    public static ByteBuffer buffer(final int size) {
        return ByteBuffer.allocateDirect(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    public static void writeHello(final SocketChannel ch, final ByteBuffer buf, final Hello h) throws IOException {
        final int size = HELLO_SIZE + 8 * h.stackFrames().length;
        if (size > MAX_HELLO || size > buf.capacity()) {
            throw new IllegalArgumentException("stack of " + h.stackFrames().length + " pages is too large for a hello");
        }
        buf.clear();
        buf.putInt(size).putInt(MAGIC).putInt(ABI_VERSION).putInt(h.pid()).putInt(h.uid()).putInt(h.gid())
                .putLong(h.stackVa()).putLong(h.stackLength()).putLong(0);
        for (long f : h.stackFrames()) {
            buf.putLong(f);
        }
        writeFully(ch, buf.flip());
    }

    public static Hello readHello(final SocketChannel ch, final ByteBuffer buf) throws IOException {
        buf.clear().limit(HELLO_SIZE);
        while (buf.hasRemaining()) {
            if (ch.read(buf) < 0) {
                throw new EOFException("kernel closed the connection");
            }
        }
        final int size = buf.getInt(0);
        if (size < HELLO_SIZE || size > MAX_HELLO || size > buf.capacity() || (size - HELLO_SIZE) % 8 != 0) {
            throw new IOException("bad hello length " + size);
        }
        buf.limit(size);
        while (buf.hasRemaining()) {
            if (ch.read(buf) < 0) {
                throw new EOFException("kernel closed the connection");
            }
        }
        if (buf.getInt(4) != MAGIC) {
            throw new IOException("not an iopersist kernel socket (bad magic)");
        }
        if (buf.getInt(8) != ABI_VERSION) {
            throw new IOException("kernel speaks ABI version " + buf.getInt(8) + ", this client " + ABI_VERSION);
        }
        final long[] frames = new long[(size - HELLO_SIZE) / 8];
        for (int i = 0; i < frames.length; i++) {
            frames[i] = buf.getLong(HELLO_SIZE + 8 * i);
        }
        return new Hello(buf.getInt(12), buf.getInt(16), buf.getInt(20), buf.getLong(24), buf.getLong(32), frames);
    }

    public static void writeRequest(final SocketChannel ch, final ByteBuffer buf, final int nr, final long a0,
                                    final long a1, final long a2, final long a3, final long a4, final long a5)
            throws IOException {
        buf.clear();
        buf.putInt(REQUEST_SIZE).putInt(nr).putLong(a0).putLong(a1).putLong(a2).putLong(a3).putLong(a4).putLong(a5);
        writeFully(ch, buf.flip());
    }

    /** Reads one request into {@code buf}; returns false on a clean end of stream (process exit). */
    public static boolean readRequest(final SocketChannel ch, final ByteBuffer buf) throws IOException {
        buf.clear().limit(REQUEST_SIZE);
        while (buf.hasRemaining()) {
            if (ch.read(buf) < 0) {
                if (buf.position() == 0) {
                    return false;
                }
                throw new EOFException("request cut short at " + buf.position() + " bytes");
            }
        }
        if (buf.getInt(0) != REQUEST_SIZE) {
            throw new IOException("bad request length " + buf.getInt(0));
        }
        return true;
    }

    public static int requestNumber(final ByteBuffer buf) {
        return buf.getInt(4);
    }

    public static long requestArg(final ByteBuffer buf, final int i) {
        return buf.getLong(8 + 8 * i);
    }

    public static void writeReply(final SocketChannel ch, final ByteBuffer buf, final long ret) throws IOException {
        buf.clear();
        buf.putInt(REPLY_SIZE).putInt(0).putLong(ret);
        writeFully(ch, buf.flip());
    }

    public static long readReply(final SocketChannel ch, final ByteBuffer buf) throws IOException {
        readFrame(ch, buf, REPLY_SIZE);
        return buf.getLong(8);
    }

    private static void readFrame(final SocketChannel ch, final ByteBuffer buf, final int size) throws IOException {
        buf.clear().limit(size);
        while (buf.hasRemaining()) {
            if (ch.read(buf) < 0) {
                throw new EOFException("kernel closed the connection");
            }
        }
        if (buf.getInt(0) != size) {
            throw new IOException("bad frame length " + buf.getInt(0) + ", expected " + size);
        }
    }

    private static void writeFully(final SocketChannel ch, final ByteBuffer buf) throws IOException {
        while (buf.hasRemaining()) {
            ch.write(buf);
        }
    }
}
