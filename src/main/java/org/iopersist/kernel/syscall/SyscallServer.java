package org.iopersist.kernel.syscall;

import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.mm.AddressSpace;
import org.iopersist.kernel.mm.FrameRuns;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Wire;

/**
 * Serves the wire ABI ({@link Wire}) on a Unix domain socket: each connection is one user process,
 * with its own descriptors and address space, and the uid and gid SO_PEERCRED reports. A process
 * ends when its connection closes: its descriptors are closed (releasing what they own) and its
 * memory unmapped.
 *
 * <p>{@link #stop(boolean)} with {@code false} is a kexec: connections are cut and no close handler
 * runs, as Linux runs none when it jumps into the next kernel.
 */
public final class SyscallServer implements AutoCloseable {
    public static final long STACK_SIZE = 64 * 1024;
    /** sun_path holds 108 bytes including the terminating NUL. */
    public static final int MAX_SOCKET_PATH = 107;

    private final Path path;
    /** The socket file this server made (its inode), so that a late stop never removes the next server's. */
    private final Object socketFile;
    private final Syscalls syscalls;
    private final Consumer<String> log;
    private final AtomicInteger nextPid = new AtomicInteger(100);
    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final Set<Thread> workers = ConcurrentHashMap.newKeySet();
    private final ServerSocketChannel server;
    private volatile boolean running = true;
    private volatile boolean releaseOnClose = true;
    private final Thread acceptor;

    private record Connection(SocketChannel channel, UserProcess process) {
    }

    public SyscallServer(final Path path, final Syscalls syscalls, final Consumer<String> log) throws IOException {
        if (path.toAbsolutePath().toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length > MAX_SOCKET_PATH) {
            throw new IllegalArgumentException("socket path " + path + " is longer than sun_path's " + MAX_SOCKET_PATH + " bytes");
        }
        this.path = path;
        this.syscalls = syscalls;
        this.log = log;
        Files.deleteIfExists(path);
        Files.createDirectories(path.toAbsolutePath().getParent());
        this.server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        // Every user may connect, as every user may call into a kernel: who the caller is comes from
        // SO_PEERCRED, and each file checks it (owner or root), not the socket's mode.
        Files.setPosixFilePermissions(path, java.nio.file.attribute.PosixFilePermissions.fromString("rwxrwxrwx"));
        this.socketFile = Files.readAttributes(path, java.nio.file.attribute.BasicFileAttributes.class).fileKey();
        this.acceptor = Thread.ofPlatform().daemon().name("syscall-accept").start(this::acceptLoop);
    }

    public Path path() {
        return path;
    }

    /** A process created in the kernel itself (tests, kernel threads acting as a process). */
    public UserProcess newProcess(final int uid, final int gid) {
        final AddressSpace mm = syscalls.newAddressSpace();
        final long stack = mm.mmap(0, STACK_SIZE, Syscall.PROT_READ | Syscall.PROT_WRITE,
                Syscall.MAP_PRIVATE | Syscall.MAP_ANONYMOUS, null, 0);
        return new UserProcess(nextPid.getAndIncrement(), uid, gid, mm, stack, STACK_SIZE);
    }

    private void acceptLoop() {
        while (running) {
            try {
                final SocketChannel ch = server.accept();
                final Thread t = Thread.ofVirtual().name("process").unstarted(() -> {
                    try {
                        serve(ch);
                    } finally {
                        workers.remove(Thread.currentThread());
                    }
                });
                workers.add(t);
                t.start();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (running) {
                    log.accept("syscall: accept failed: " + e.getMessage());
                }
                return;
            }
        }
    }

    private void serve(final SocketChannel ch) {
        final UserProcess p;
        try {
            final UnixDomainPrincipal peer = ch.getOption(ExtendedSocketOptions.SO_PEERCRED);
            p = newProcess(Credentials.uidOf(peer.user().getName()), Credentials.gidOf(peer.group().getName()));
        } catch (IOException | RuntimeException e) {
            log.accept("syscall: refused a process: " + e.getMessage());
            closeQuietly(ch);
            return;
        }
        final Connection c = new Connection(ch, p);
        connections.add(c);
        final ByteBuffer buf = Wire.buffer(Wire.MAX_HELLO);
        try {
            final FrameRuns stack = p.mm().find(p.stackVa()).frames();
            final long[] stackFrames = new long[(int) stack.pages()];
            for (int i = 0; i < stackFrames.length; i++) {
                stackFrames[i] = stack.frameOf(i);
            }
            Wire.writeHello(ch, buf, new Wire.Hello(p.pid(), p.uid(), p.gid(), p.stackVa(), p.stackLength(), stackFrames));
            while (running && Wire.readRequest(ch, buf)) {
                if (!running) {
                    break; // the kernel kexec'd while this process was writing its request: nobody answers
                }
                final long ret = syscalls.call(p, Wire.requestNumber(buf), Wire.requestArg(buf, 0), Wire.requestArg(buf, 1),
                        Wire.requestArg(buf, 2), Wire.requestArg(buf, 3), Wire.requestArg(buf, 4), Wire.requestArg(buf, 5));
                if (!running) {
                    break; // this call was reboot(KEXEC), or raced it: a kernel that kexec'd returns to nobody
                }
                Wire.writeReply(ch, buf, ret);
            }
        } catch (IOException e) {
            // The process went away mid-frame: the same as exit.
        } finally {
            connections.remove(c);
            // Exit runs every release before this end closes: a client that shut down its writing
            // side and waits for end-of-stream knows its files are released, as a parent's wait(2) does.
            try {
                if (releaseOnClose) {
                    exit(p);
                }
            } finally {
                closeQuietly(ch);
            }
        }
    }

    /** Every connected process (as /proc lists them). */
    public java.util.List<UserProcess> processes() {
        return connections.stream().map(Connection::process).toList();
    }

    /** The connected process with {@code pid}, or null: the kernel's view of a client (as /proc/<pid>). */
    public UserProcess process(final int pid) {
        for (Connection c : connections) {
            if (c.process().pid() == pid) {
                return c.process();
            }
        }
        return null;
    }

    /** Process exit: close every descriptor, then unmap everything. */
    public void exit(final UserProcess p) {
        for (OpenFile f : p.fds().clear()) {
            try {
                f.put();
            } catch (KernelException e) {
                log.accept("syscall: release of " + f.file().describe() + " failed: " + e.getMessage());
            }
        }
        p.mm().teardown();
    }

    /**
     * The kexec's first step, synchronous: from now on no request is served and no process exit
     * runs a release, so nothing of this kernel changes the machine after the handover is written
     * (a VMM whose connection closes right after its reboot must not tear down what was handed
     * over). {@link #stop} then cuts the connections and waits for the workers.
     */
    public void cutOff() {
        releaseOnClose = false;
        running = false;
    }

    /**
     * Stops serving. {@code releaseFiles = false} models a kexec: connections are cut and no close
     * handler runs.
     */
    public void stop(final boolean releaseFiles) {
        if (!releaseFiles) {
            cutOff();
        }
        releaseOnClose = releaseOnClose && releaseFiles;
        running = false;
        closeQuietly(server);
        for (Connection c : connections) {
            closeQuietly(c.channel());
        }
        try {
            acceptor.join(5000);
            // Each process's exit (or, for a kexec, its plain disconnect) finishes before stop returns.
            for (Thread t : workers) {
                t.join(5000);
            }
            // Only our own socket: a kexec's stop runs late, and the next kernel may serve at the same path by then.
            if (Files.exists(path) && java.util.Objects.equals(socketFile,
                    Files.readAttributes(path, java.nio.file.attribute.BasicFileAttributes.class).fileKey())) {
                Files.deleteIfExists(path);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (IOException e) {
            log.accept("syscall: cannot remove " + path + ": " + e.getMessage());
        }
    }

    @Override
    public void close() {
        stop(true);
    }

    private static void closeQuietly(final java.io.Closeable c) {
        try {
            c.close();
        } catch (IOException e) {
            // nothing to do: the peer is gone either way
        }
    }
}
