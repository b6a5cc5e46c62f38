package org.iopersist.cli;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.kernel.syscall.SyscallServer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code iopersist kernel DIR}: one boot of the host kernel as its own process, on the machine
 * another process runs in DIR. It knows only what the machine directory holds: the platform
 * description, the boot record and physical memory. It serves syscalls on a Unix socket until
 * {@code reboot(LINUX_REBOOT_CMD_KEXEC)} ends it; the next {@code iopersist kernel DIR} then boots
 * from the handover in the boot record.
 */
@Command(name = "kernel", mixinStandardHelpOptions = true,
        description = {"Boot the host kernel on the machine running in DIR and serve syscalls on a socket.",
            "Prints 'kernel ready SOCKET KIND in Nms' once processes may connect; exits 0 after a kexec ('kernel kexec')",
            "or when stdin closes or SIGTERM comes ('kernel halted'). The kernel log goes to stdout;",
            "sysfs is mirrored read-only into DIR/sys while the kernel runs."})
final class KernelCommand implements Callable<Integer> {
    private static final long MIRROR_MILLIS = 250;

    @Parameters(index = "0", paramLabel = "DIR", description = "machine directory (run the machine with `iopersist machine DIR`)")
    private Path dir;

    @Option(names = "--socket", paramLabel = "PATH", description = "syscall socket (default: DIR/kernel.sock)")
    private Path socket;

    @Option(names = "--staged", description = {"start, print 'kernel staged' and wait for a line 'boot' on stdin before booting:",
        "the next kernel loaded ahead of the kexec, as kexec_load does, so its process start is not in the blackout"})
    private boolean staged;

    @Override
    public Integer call() throws Exception {
        if (!Files.isRegularFile(dir.resolve(MachineConfig.FILE))) {
            throw new IllegalArgumentException(dir + " is not a machine directory; start one with `iopersist machine "
                    + dir + "`");
        }
        Paths.requireNamed("--socket", socket);
        final Path sock = socket != null ? socket : dir.resolve("kernel.sock");
        requireFreeSocket(sock, !staged);
        final BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        if (staged) {
            // Nothing of the machine is read before the go: the boot record is only final after the kexec.
            // The image is loaded, though: every kernel class (they hold no state, see ArchitectureTest).
            final int loaded = loadImage();
            warmPlatform();
            System.out.println("kernel staged (" + loaded + " classes loaded)");
            System.out.flush();
            String line;
            while ((line = stdin.readLine()) != null && !line.trim().equals("boot")) {
                // wait
            }
            if (line == null) {
                System.out.println("kernel not booted");
                return 0;
            }
        }
        final long t0 = System.nanoTime();
        try (Board board = Board.open(dir)) {
            final Kernel kernel = Kernel.boot(board, line -> {
                System.out.println(line);
                System.out.flush();
            });
            final CountDownLatch halt = new CountDownLatch(1);
            Thread.ofPlatform().daemon().name("stdin-watch").start(() -> {
                try {
                    while (stdin.readLine() != null) {
                        // no commands: only the end of input matters
                    }
                } catch (IOException e) {
                    // a closed stdin is an end too
                }
                halt.countDown();
            });
            Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().unstarted(halt::countDown));
            // sysfs, mirrored read-only into DIR/sys for ls and cat: output only, so it is written
            // off the boot path, first right away and then every MIRROR_MILLIS while the kernel runs.
            Thread.ofPlatform().daemon().name("sysfs-mirror").start(() -> {
                try {
                    final SysfsMirror mirror = new SysfsMirror(kernel.sysfs(), dir);
                    while (kernel.liveUpdate().state() != LiveUpdate.State.GONE) {
                        try {
                            mirror.refresh();
                        } catch (RuntimeException | IOException e) {
                            // the kernel going away mid-walk, or a full disk: try again next time
                        }
                        Thread.sleep(MIRROR_MILLIS);
                    }
                } catch (InterruptedException | IOException e) {
                    // no mirror then: it is only for people looking
                }
            });
            try (SyscallServer server = kernel.serve(sock)) {
                System.out.printf(Locale.ROOT, "kernel ready %s %s in %.1fms%n", server.path(),
                        kernel.bootKind().name().toLowerCase(Locale.ROOT), (System.nanoTime() - t0) / 1e6);
                System.out.flush();
                while (true) {
                    if (kernel.liveUpdate().awaitKexec(50, TimeUnit.MILLISECONDS)) {
                        System.out.println("kernel kexec: the next kernel boots from " + board.bootDirectory());
                        System.out.flush();
                        // A kexec jumps: nothing of this kernel runs on, no cleanup, no shutdown hooks.
                        // (An orderly JVM exit would only compete with the next kernel's boot for the CPUs.)
                        Runtime.getRuntime().halt(0);
                        return 0;
                    }
                    if (halt.await(0, TimeUnit.MILLISECONDS)) {
                        System.out.println("kernel halted");
                        return 0;
                    }
                }
            }
        }
    }

    /**
     * Brings up the JDK facilities a boot uses (a Unix socket, a shared file mapping) on scratch
     * objects of its own, never the machine's, so their first use is not in the blackout.
     */
    /**
     * The socket path may hold a socket a kernel left behind (a kexec does not clean up), never a
     * file of the user's; and, unless a supervisor staged this kernel for a kexec it knows of, no
     * kernel may be serving there still: a second one would take the socket over from it.
     */
    private static void requireFreeSocket(final Path sock, final boolean checkServing) throws IOException {
        if (!Files.exists(sock, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (!Files.readAttributes(sock, java.nio.file.attribute.BasicFileAttributes.class,
                java.nio.file.LinkOption.NOFOLLOW_LINKS).isOther()) {
            throw new IllegalArgumentException(sock + " exists and is not a socket; give another --socket");
        }
        if (checkServing) {
            try (var probe = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
                probe.connect(java.net.UnixDomainSocketAddress.of(sock));
                throw new IllegalArgumentException("a kernel already serves " + sock
                        + "; halt it first (close its stdin), or give another --socket");
            } catch (IOException refused) {
                // a socket nobody listens on any more: the next kernel's to replace
            }
        }
    }

    private static void warmPlatform() throws IOException {
        try (var channel = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            final Path sock = Files.createTempDirectory("iopersist-warm");
            try {
                channel.bind(java.net.UnixDomainSocketAddress.of(sock.resolve("s")));
            } finally {
                Files.deleteIfExists(sock.resolve("s"));
                Files.deleteIfExists(sock);
            }
        }
        final Path file = Files.createTempFile("iopersist-warm", ".mem");
        try {
            Files.write(file, new byte[2 * 4096]);
            try (org.iopersist.hw.memory.PhysicalMemory memory = org.iopersist.hw.memory.PhysicalMemory.open(file)) {
                memory.store64Release(0, memory.load64Acquire(4096) + 1);
            }
        } finally {
            Files.deleteIfExists(file);
        }
        // The wake page's two futex calls, which the first register writes after the kexec make.
        final Path mmioFile = Files.createTempFile("iopersist-warm", ".mmio");
        try (org.iopersist.hw.memory.Mmio mmio = org.iopersist.hw.memory.Mmio.create(mmioFile, 0)) {
            final org.iopersist.hw.memory.Mmio.Wake wake = mmio.wake();
            wake.sleeping(true);
            mmio.window(org.iopersist.hw.memory.Mmio.unitWindow(0)).write32(0, 0); // rings: FUTEX_WAKE
            wake.sleeping(false);
            wake.await(wake.seq() - 1, 1); // FUTEX_WAIT on a word that moved: EAGAIN at once
        } finally {
            Files.deleteIfExists(mmioFile);
        }
    }

    /** Loads and initializes the kernel's, the hardware interface's and the uAPI's classes. */
    private static int loadImage() throws IOException {
        final ClassLoader loader = KernelCommand.class.getClassLoader();
        final List<String> names = new java.util.ArrayList<>();
        for (String pkg : List.of("org/iopersist/kernel/", "org/iopersist/hw/", "org/iopersist/uapi/")) {
            final URL url = loader.getResource(pkg);
            if (url == null) {
                continue;
            }
            if ("jar".equals(url.getProtocol())) {
                try (java.util.jar.JarFile jar = ((java.net.JarURLConnection) url.openConnection()).getJarFile()) {
                    jar.stream().map(java.util.jar.JarEntry::getName)
                            .filter(n -> n.startsWith(pkg) && n.endsWith(".class")).forEach(names::add);
                }
            } else if ("file".equals(url.getProtocol())) {
                final Path root;
                try {
                    root = Path.of(url.toURI());
                } catch (URISyntaxException e) {
                    continue;
                }
                final Path base = root.getParent().getParent().getParent(); // above org/iopersist/<pkg>
                try (var walk = Files.walk(root)) {
                    walk.filter(f -> f.toString().endsWith(".class"))
                            .forEach(f -> names.add(base.relativize(f).toString().replace(File.separatorChar, '/')));
                }
            }
        }
        int n = 0;
        for (String entry : names) {
            try {
                Class.forName(entry.substring(0, entry.length() - ".class".length()).replace('/', '.'), true, loader);
                n++;
            } catch (ClassNotFoundException | LinkageError e) {
                // not loadable alone: it loads on first use
            }
        }
        return n;
    }
}
