package org.iopersist.kernel.liveupdate.kho;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * A read-only view over a flattened device tree in a {@link MemorySegment}: no copy, no object per
 * node. Nodes and properties are named by their offset in the structure block, as libfdt does.
 *
 * <p>{@link #open} validates the whole blob once, header and structure block: every offset and
 * length is checked before use, names must be NUL-terminated inside their block, nesting must
 * balance and end in FDT_END. Navigation after that cannot leave the blob. Malformed input is a
 * {@link HandoverFormatException} and never an unchecked exception.
 */
public final class FdtReader {
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private final MemorySegment blob;
    private final long structOffset;
    private final long structSize;
    private final long stringsOffset;
    private final long stringsSize;
    private final long rsvOffset;
    private final int root;

    private FdtReader(final MemorySegment blob, final long structOffset, final long structSize,
                      final long stringsOffset, final long stringsSize, final long rsvOffset, final int root) {
        this.blob = blob;
        this.structOffset = structOffset;
        this.structSize = structSize;
        this.stringsOffset = stringsOffset;
        this.stringsSize = stringsSize;
        this.rsvOffset = rsvOffset;
        this.root = root;
    }

    public static FdtReader open(final byte[] blob) throws HandoverFormatException {
        return open(MemorySegment.ofArray(blob));
    }

    /** Validates and wraps {@code segment}; the tree may be shorter than the segment (totalsize). */
    public static FdtReader open(final MemorySegment segment) throws HandoverFormatException {
        final long avail = segment.byteSize();
        if (avail < Fdt.HEADER_SIZE) {
            throw new HandoverFormatException("blob of " + avail + " bytes is shorter than the 40-byte header");
        }
        final int magic = segment.get(BE32, Fdt.OFF_MAGIC);
        if (magic != Fdt.MAGIC) {
            throw new HandoverFormatException(String.format("bad magic 0x%08x", magic));
        }
        final long total = u32(segment, Fdt.OFF_TOTALSIZE);
        final long version = u32(segment, Fdt.OFF_VERSION);
        final long lastComp = u32(segment, Fdt.OFF_LAST_COMP_VERSION);
        if (version < Fdt.VERSION || lastComp > Fdt.VERSION) {
            throw new HandoverFormatException("unsupported version " + version + " (last compatible " + lastComp + ")");
        }
        if (total < Fdt.HEADER_SIZE || total > avail) {
            throw new HandoverFormatException("totalsize " + total + " outside 40.." + avail);
        }
        final MemorySegment fdt = segment.asSlice(0, total);
        final long structOff = u32(fdt, Fdt.OFF_DT_STRUCT);
        final long structSize = u32(fdt, Fdt.OFF_SIZE_DT_STRUCT);
        final long stringsOff = u32(fdt, Fdt.OFF_DT_STRINGS);
        final long stringsSize = u32(fdt, Fdt.OFF_SIZE_DT_STRINGS);
        final long rsvOff = u32(fdt, Fdt.OFF_MEM_RSVMAP);
        checkBlock("structure", structOff, structSize, total);
        checkBlock("strings", stringsOff, stringsSize, total);
        if ((structOff & 3) != 0) {
            throw new HandoverFormatException("structure block at " + structOff + " is not 4-byte aligned");
        }
        if ((rsvOff & 7) != 0 || rsvOff < Fdt.HEADER_SIZE || rsvOff > total) {
            throw new HandoverFormatException("memory reservation block at " + rsvOff + " is misplaced");
        }
        for (long p = rsvOff; ; p += 16) {
            if (p + 16 > total) {
                throw new HandoverFormatException("memory reservation block is not terminated");
            }
            if (fdt.get(BE64, p) == 0 && fdt.get(BE64, p + 8) == 0) {
                break;
            }
        }
        final int root = validateStructure(fdt, structOff, structSize, stringsOff, stringsSize);
        return new FdtReader(fdt, structOff, structSize, stringsOff, stringsSize, rsvOff, root);
    }

    private static long u32(final MemorySegment s, final long off) {
        return Integer.toUnsignedLong(s.get(BE32, off));
    }

    private static void checkBlock(final String what, final long off, final long size, final long total)
            throws HandoverFormatException {
        if (off < Fdt.HEADER_SIZE || off > total || size > total - off) {
            throw new HandoverFormatException(what + " block [" + off + ", +" + size + ") outside totalsize " + total);
        }
    }

    /** Walks every token once; returns the offset of the root node. */
    private static int validateStructure(final MemorySegment fdt, final long so, final long size,
                                         final long stro, final long strSize) throws HandoverFormatException {
        long p = 0;
        int depth = 0;
        int rootOffset = -1;
        boolean rootClosed = false;
        while (true) {
            if (p + 4 > size) {
                throw new HandoverFormatException("structure block ends without FDT_END at " + p);
            }
            final int token = fdt.get(BE32, so + p);
            final long at = p;
            p += 4;
            switch (token) {
                case Fdt.BEGIN_NODE -> {
                    if (rootClosed) {
                        throw new HandoverFormatException("second root node at " + at);
                    }
                    final long nameLen = strlen(fdt, so + p, size - p, "node name at " + at);
                    if (depth == 0) {
                        if (nameLen != 0) {
                            throw new HandoverFormatException("root node has a name");
                        }
                        rootOffset = (int) at;
                    } else if (nameLen == 0) {
                        throw new HandoverFormatException("node at " + at + " has an empty name");
                    }
                    p = align4(p + nameLen + 1);
                    if (++depth > Fdt.MAX_DEPTH) {
                        throw new HandoverFormatException("nesting deeper than " + Fdt.MAX_DEPTH);
                    }
                }
                case Fdt.END_NODE -> {
                    if (depth == 0) {
                        throw new HandoverFormatException("FDT_END_NODE without a node at " + at);
                    }
                    if (--depth == 0) {
                        rootClosed = true;
                    }
                }
                case Fdt.PROP -> {
                    if (depth == 0) {
                        throw new HandoverFormatException("property outside a node at " + at);
                    }
                    if (p + 8 > size) {
                        throw new HandoverFormatException("truncated property header at " + at);
                    }
                    final long len = u32(fdt, so + p);
                    final long nameOff = u32(fdt, so + p + 4);
                    p += 8;
                    if (len > size - p) {
                        throw new HandoverFormatException("property at " + at + " of length " + len + " runs past the block");
                    }
                    if (nameOff >= strSize) {
                        throw new HandoverFormatException("property at " + at + " names string offset " + nameOff
                                + " outside the strings block");
                    }
                    strlen(fdt, stro + nameOff, strSize - nameOff, "property name of " + at);
                    p = align4(p + len);
                }
                case Fdt.NOP -> {
                }
                case Fdt.END -> {
                    if (depth != 0 || !rootClosed) {
                        throw new HandoverFormatException("FDT_END inside an open node at " + at);
                    }
                    return rootOffset;
                }
                default -> throw new HandoverFormatException(String.format("unknown token 0x%x at %d", token, at));
            }
        }
    }

    private static long strlen(final MemorySegment fdt, final long off, final long max, final String what)
            throws HandoverFormatException {
        for (long i = 0; i < max; i++) {
            if (fdt.get(ValueLayout.JAVA_BYTE, off + i) == 0) {
                return i;
            }
        }
        throw new HandoverFormatException(what + " is not NUL-terminated inside its block");
    }

    private static long align4(final long n) {
        return (n + 3) & ~3L;
    }

    // ------------------------------------------------------------------ navigation (validated)

    public int root() {
        return root;
    }

    /** Bytes the tree occupies (header totalsize). */
    public long totalSize() {
        return blob.byteSize();
    }

    public MemorySegment segment() {
        return blob;
    }

    /** Memory reservation block entries as (address, size) pairs. */
    public List<long[]> reservations() {
        final List<long[]> out = new ArrayList<>();
        for (long p = rsvOffset; ; p += 16) {
            final long a = blob.get(BE64, p);
            final long s = blob.get(BE64, p + 8);
            if (a == 0 && s == 0) {
                return out;
            }
            out.add(new long[] {a, s});
        }
    }

    private int token(final long off) {
        return blob.get(BE32, structOffset + off);
    }

    private String cString(final long abs) {
        long end = abs;
        while (blob.get(ValueLayout.JAVA_BYTE, end) != 0) {
            end++;
        }
        return new String(blob.asSlice(abs, end - abs).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
    }

    public String nodeName(final int node) {
        return cString(structOffset + node + 4);
    }

    /** Offset just after the BEGIN_NODE token and name of {@code node}. */
    private long bodyOf(final int node) {
        long p = node + 4;
        while (blob.get(ValueLayout.JAVA_BYTE, structOffset + p) != 0) {
            p++;
        }
        return align4(p + 1);
    }

    /** Offset after the token at {@code p}, skipping a whole subtree for BEGIN_NODE. */
    private long skip(final long p) {
        switch (token(p)) {
            case Fdt.BEGIN_NODE -> {
                long q = bodyOf((int) p);
                while (token(q) != Fdt.END_NODE) {
                    q = skip(q);
                }
                return q + 4;
            }
            case Fdt.PROP -> {
                return align4(p + 12 + u32(blob, structOffset + p + 4));
            }
            default -> {
                return p + 4;
            }
        }
    }

    /** Child nodes of {@code node}, in order. */
    public List<Integer> children(final int node) {
        final List<Integer> out = new ArrayList<>();
        long p = bodyOf(node);
        while (token(p) != Fdt.END_NODE) {
            if (token(p) == Fdt.BEGIN_NODE) {
                out.add((int) p);
            }
            p = skip(p);
        }
        return out;
    }

    /** Property offsets of {@code node}, in order. */
    public List<Integer> properties(final int node) {
        final List<Integer> out = new ArrayList<>();
        long p = bodyOf(node);
        while (token(p) != Fdt.END_NODE) {
            if (token(p) == Fdt.PROP) {
                out.add((int) p);
            }
            p = skip(p);
        }
        return out;
    }

    /** The child called {@code name} (or {@code name@unit} when {@code name} has no '@'), or -1. */
    public int subnode(final int node, final String name) {
        for (int child : children(node)) {
            final String n = nodeName(child);
            if (n.equals(name) || name.indexOf('@') < 0 && n.startsWith(name + "@")) {
                return child;
            }
        }
        return -1;
    }

    /** Node at an absolute path like {@code /iommu/unit@0}, or -1. */
    public int path(final String path) {
        if (!path.startsWith("/")) {
            return -1;
        }
        int node = root;
        for (String part : path.split("/")) {
            if (part.isEmpty()) {
                continue;
            }
            node = subnode(node, part);
            if (node < 0) {
                return -1;
            }
        }
        return node;
    }

    public String propertyName(final int prop) {
        return cString(stringsOffset + u32(blob, structOffset + prop + 8));
    }

    /** Offset of property {@code name} of {@code node}, or -1. */
    public int property(final int node, final String name) {
        for (int prop : properties(node)) {
            if (propertyName(prop).equals(name)) {
                return prop;
            }
        }
        return -1;
    }

    /** Where property {@code prop}'s value starts, in bytes from the start of the blob. */
    public long valueOffset(final int prop) {
        return structOffset + prop + 12;
    }

    public MemorySegment value(final int prop) {
        final long len = u32(blob, structOffset + prop + 4);
        return blob.asSlice(structOffset + prop + 12, len);
    }

    // ------------------------------------------------------------------ typed access

    private MemorySegment required(final int node, final String name) throws HandoverFormatException {
        final int prop = property(node, name);
        if (prop < 0) {
            throw new HandoverFormatException("node '" + nodeName(node) + "' lacks property '" + name + "'");
        }
        return value(prop);
    }

    public boolean has(final int node, final String name) {
        return property(node, name) >= 0;
    }

    public long u64(final int node, final String name) throws HandoverFormatException {
        final MemorySegment v = required(node, name);
        if (v.byteSize() != 8) {
            throw new HandoverFormatException("property '" + name + "' is " + v.byteSize() + " bytes, not a u64");
        }
        return v.get(BE64, 0);
    }

    public int u32(final int node, final String name) throws HandoverFormatException {
        final MemorySegment v = required(node, name);
        if (v.byteSize() != 4) {
            throw new HandoverFormatException("property '" + name + "' is " + v.byteSize() + " bytes, not a u32");
        }
        return v.get(BE32, 0);
    }

    public String string(final int node, final String name) throws HandoverFormatException {
        final MemorySegment v = required(node, name);
        final long n = v.byteSize();
        if (n == 0 || v.get(ValueLayout.JAVA_BYTE, n - 1) != 0) {
            throw new HandoverFormatException("property '" + name + "' is not a NUL-terminated string");
        }
        for (long i = 0; i < n - 1; i++) {
            if (v.get(ValueLayout.JAVA_BYTE, i) == 0) {
                throw new HandoverFormatException("property '" + name + "' is a string list, not a string");
            }
        }
        return new String(v.asSlice(0, n - 1).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
    }

    public long[] u64Array(final int node, final String name) throws HandoverFormatException {
        final MemorySegment v = required(node, name);
        if ((v.byteSize() & 7) != 0) {
            throw new HandoverFormatException("property '" + name + "' of " + v.byteSize() + " bytes is not a u64 array");
        }
        final long[] out = new long[(int) (v.byteSize() / 8)];
        for (int i = 0; i < out.length; i++) {
            out[i] = v.get(BE64, i * 8L);
        }
        return out;
    }

    public byte[] bytes(final int node, final String name) throws HandoverFormatException {
        return required(node, name).toArray(ValueLayout.JAVA_BYTE);
    }
}
