package org.iopersist.kernel.fs;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * The kernel's object tree, rooted at {@code /sys}. Subsystems add directories and attributes;
 * processes read and write attributes through open/read/write; the tree can be mirrored read-only
 * into a host directory for {@code ls} and {@code cat}. The mirror is output only: no boot ever
 * reads it, since a new kernel knows only what is in physical memory.
 *
 * <p>Lock: one monitor for the tree's shape. Attribute handlers run outside it, so a handler may
 * change the tree (finish removes directories).
 */
public final class Sysfs {
    public static final String ROOT = "/sys";
    private final SysfsDir root = new SysfsDir("");

    private static List<String> parts(final String path) {
        if (!path.startsWith(ROOT + "/") && !path.equals(ROOT)) {
            throw new KernelException(Errno.ENOENT, "not a sysfs path: " + path);
        }
        final List<String> out = new ArrayList<>();
        for (String p : path.substring(ROOT.length()).split("/")) {
            if (p.isEmpty() || p.equals(".")) {
                continue;
            }
            if (p.equals("..")) {
                throw new KernelException(Errno.EINVAL, "'..' in sysfs path " + path);
            }
            out.add(p);
        }
        return out;
    }

    /** Creates (if needed) the directory at {@code path} and its parents. */
    public synchronized void mkdirs(final String path) {
        SysfsDir dir = root;
        for (String p : parts(path)) {
            final SysfsNode n = dir.child(p);
            if (n == null) {
                final SysfsDir d = new SysfsDir(p);
                dir.put(d);
                dir = d;
            } else if (n instanceof SysfsDir d) {
                dir = d;
            } else {
                throw new KernelException(Errno.ENOTDIR, path + ": " + p + " is an attribute");
            }
        }
    }

    /** Adds or replaces an attribute in directory {@code dirPath} (created if needed). */
    public synchronized void add(final String dirPath, final SysfsAttribute attribute) {
        mkdirs(dirPath);
        ((SysfsDir) lookup(dirPath)).put(attribute);
    }

    /** Removes the node at {@code path} and everything under it; no-op if absent. */
    public synchronized void remove(final String path) {
        final List<String> ps = parts(path);
        if (ps.isEmpty()) {
            throw new KernelException(Errno.EBUSY, "cannot remove /sys");
        }
        final SysfsNode parent = lookupOrNull(ps.subList(0, ps.size() - 1));
        if (parent instanceof SysfsDir d) {
            d.remove(ps.get(ps.size() - 1));
        }
    }

    private SysfsNode lookupOrNull(final List<String> ps) {
        SysfsNode n = root;
        for (String p : ps) {
            if (!(n instanceof SysfsDir d)) {
                return null;
            }
            n = d.child(p);
            if (n == null) {
                return null;
            }
        }
        return n;
    }

    /** The node at {@code path}. @throws KernelException ENOENT if there is none */
    public synchronized SysfsNode lookup(final String path) {
        final SysfsNode n = lookupOrNull(parts(path));
        if (n == null) {
            throw new KernelException(Errno.ENOENT, path);
        }
        return n;
    }

    public boolean exists(final String path) {
        synchronized (this) {
            return lookupOrNull(parts(path)) != null;
        }
    }

    /** The attribute at {@code path}. @throws KernelException ENOENT, or EISDIR for a directory */
    public SysfsAttribute attribute(final String path) {
        final SysfsNode n = lookup(path);
        if (n instanceof SysfsAttribute a) {
            return a;
        }
        throw new KernelException(Errno.EISDIR, path);
    }

    public String read(final String path) {
        return attribute(path).read();
    }

    public void write(final String path, final String value) {
        attribute(path).write(value);
    }

    /** The entries of directory {@code path}, sorted by name, as getdents64 lists them. */
    public synchronized List<DirectoryFile.Entry> entries(final String path) {
        if (lookup(path) instanceof SysfsDir d) {
            return d.children().stream().map(c -> new DirectoryFile.Entry(c.name(), c instanceof SysfsDir)).toList();
        }
        throw new KernelException(Errno.ENOTDIR, path);
    }

    /** Names in directory {@code path}, sorted. */
    public synchronized List<String> list(final String path) {
        if (lookup(path) instanceof SysfsDir d) {
            return d.children().stream().map(SysfsNode::name).toList();
        }
        throw new KernelException(Errno.ENOTDIR, path);
    }

    /**
     * Writes the whole tree under {@code dir} (replacing what was there) as plain files with
     * read-only permissions. Attributes whose show fails are written with the error.
     */
    public void mirror(final Path dir) {
        try {
            if (Files.exists(dir)) {
                try (Stream<Path> walk = Files.walk(dir)) {
                    for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                        p.toFile().setWritable(true);
                        Files.delete(p);
                    }
                }
            }
            Files.createDirectories(dir);
            final List<MirrorEntry> entries = new ArrayList<>();
            synchronized (this) {
                collect(root, dir, entries);
            }
            // Handlers run outside the tree's lock: they may take their subsystem's locks.
            for (MirrorEntry e : entries) {
                final Path p = e.path();
                if (e.attribute() == null) {
                    Files.createDirectories(p);
                    continue;
                }
                byte[] text;
                try {
                    text = e.attribute().bytes();
                } catch (RuntimeException ex) {
                    text = ("<error: " + ex.getMessage() + ">\n").getBytes(java.nio.charset.StandardCharsets.UTF_8);
                }
                Files.write(p, text);
                p.toFile().setWritable(false, false);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot mirror sysfs to " + dir + ": " + e.getMessage(), e);
        }
    }

    /** A directory (attribute null) or an attribute to write into the mirror. */
    private record MirrorEntry(Path path, SysfsAttribute attribute) {
    }

    private static void collect(final SysfsDir d, final Path out, final List<MirrorEntry> entries) {
        for (SysfsNode n : d.children()) {
            final Path p = out.resolve(n.name());
            if (n instanceof SysfsDir sub) {
                entries.add(new MirrorEntry(p, null));
                collect(sub, p, entries);
            } else {
                entries.add(new MirrorEntry(p, (SysfsAttribute) n));
            }
        }
    }
}
