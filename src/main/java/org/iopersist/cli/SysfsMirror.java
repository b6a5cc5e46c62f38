package org.iopersist.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.stream.Stream;
import org.iopersist.kernel.fs.Sysfs;

/**
 * A kernel process's sysfs as {@code DIR/sys}, for {@code ls} and {@code cat}. Each refresh writes
 * a whole new generation {@code DIR/.sys.N} and then swaps the symlink {@code DIR/sys} to it in one
 * rename, so a reader sees one consistent tree, never a half-written one; the generation before
 * the last is removed.
 */
final class SysfsMirror {
    private final Sysfs sysfs;
    private final Path dir;
    private long generation;

    SysfsMirror(final Sysfs sysfs, final Path machineDir) throws IOException {
        this.sysfs = sysfs;
        this.dir = machineDir;
        // What an earlier kernel left: its generations and its link.
        final Path link = dir.resolve("sys");
        if (Files.isDirectory(link, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            SelfCheck.deleteTree(link);
        }
        try (Stream<Path> old = Files.list(dir)) {
            for (Path p : old.filter(p -> p.getFileName().toString().startsWith(".sys.")).toList()) {
                SelfCheck.deleteTree(p);
            }
        }
    }

    synchronized void refresh() throws IOException {
        final long gen = ++generation;
        final Path target = dir.resolve(".sys." + gen);
        sysfs.mirror(target);
        final Path tmpLink = dir.resolve(".sys.link");
        Files.deleteIfExists(tmpLink);
        Files.createSymbolicLink(tmpLink, target.getFileName());
        Files.move(tmpLink, dir.resolve("sys"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        final Path stale = dir.resolve(".sys." + (gen - 2));
        if (Files.exists(stale)) {
            SelfCheck.deleteTree(stale);
        }
    }
}
