package org.iopersist.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code inspect sysfs}: the running kernel's sysfs, every attribute with its value. A kernel
 * process mirrors its sysfs read-only into {@code DIR/sys} ({@link SysfsMirror}, a new generation
 * every 250 ms swapped in by one rename), and the mirror outlives the kernel; so a kernel counts as
 * running only if its syscall socket accepts a connection, and only then is the mirror shown.
 */
@Command(name = "sysfs", mixinStandardHelpOptions = true,
        description = "The running kernel's sysfs tree, every attribute and its value (from its mirror in DIR/sys).")
final class InspectSysfs implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Mixin
    private InspectCommand.Target target;

    @ParentCommand
    private InspectCommand parent;

    @Option(names = "--socket", paramLabel = "PATH", description = "the kernel's syscall socket (default: DIR/kernel.sock)")
    private Path socket;

    record View(String socket, String mirror, Map<String, String> attributes) {
    }

    @Override
    public Integer call() throws IOException {
        final Path dir = target.requireMachine(parent);
        final Path sock = socket != null ? socket : dir.resolve("kernel.sock");
        requireRunning(dir, sock);
        final Path link = dir.resolve("sys");
        Map<String, String> attrs = null;
        Path generation = null;
        // A refresh swaps the link and removes the generation before the last: walk one generation, and
        // if it goes away under the walk, take the next.
        for (int attempt = 0; attempt < 3 && attrs == null; attempt++) {
            if (!Files.isDirectory(link)) {
                throw new IllegalStateException("the kernel on " + sock + " runs but keeps no sysfs mirror at " + link
                        + " (a kernel booted inside another program, not by `iopersist kernel`)");
            }
            generation = Files.isSymbolicLink(link) ? link.resolveSibling(Files.readSymbolicLink(link)) : link;
            try {
                attrs = walk(generation);
            } catch (NoSuchFileException e) {
                attrs = null;
            }
        }
        if (attrs == null) {
            throw new IllegalStateException("the sysfs mirror at " + link + " changed under every read: try again");
        }
        final View view = new View(sock.toString(), generation.toString(), attrs);
        if (target.json) {
            InspectCommand.printJson(spec, view);
            return 0;
        }
        final PrintWriter out = spec.commandLine().getOut();
        out.printf("sysfs of the kernel serving %s (mirror %s, refreshed every 250 ms)%n", sock, generation);
        for (var e : attrs.entrySet()) {
            out.printf("%s = %s%n", e.getKey(), e.getValue().replace("\n", "\n    "));
        }
        out.flush();
        return 0;
    }

    /** A kernel runs on {@code dir} if its syscall socket accepts a connection (which it then closes at once). */
    private static void requireRunning(final Path dir, final Path sock) {
        if (!Files.exists(sock)) {
            throw new IllegalStateException("no kernel is running on " + dir + ": " + sock + " does not exist");
        }
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(sock));
        } catch (IOException e) {
            throw new IllegalStateException("no kernel is running on " + dir + ": nothing accepts on " + sock
                    + " (the kernel exited or kexec'd; DIR/sys is what it left)");
        }
    }

    /** Every attribute under {@code root} as {@code /sys/...} -> its value (text without the final newline). */
    private static Map<String, String> walk(final Path root) throws IOException {
        final Map<String, String> out = new LinkedHashMap<>();
        final List<Path> files;
        try (Stream<Path> s = Files.walk(root)) {
            files = s.filter(Files::isRegularFile).sorted().toList();
        }
        for (Path f : files) {
            final byte[] b = Files.readAllBytes(f);
            out.put("/sys/" + root.relativize(f).toString().replace('\\', '/'), text(b));
        }
        return out;
    }

    private static String text(final byte[] b) {
        for (byte x : b) {
            if (x == 0) {
                return "<binary, " + b.length + " bytes>";
            }
        }
        try {
            final String s = StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(b)).toString();
            return s.endsWith("\n") ? s.substring(0, s.length() - 1) : s;
        } catch (CharacterCodingException e) {
            return "<binary, " + b.length + " bytes>";
        }
    }
}
