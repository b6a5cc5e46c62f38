package org.iopersist.kernel.liveupdate.kho;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

/**
 * Builds a version-17 flattened device tree, the way libfdt's sequential-write API does:
 * {@code beginNode}, properties, {@code endNode}, and {@link #finish()}. Property names are
 * deduplicated in the strings block. Every value is big-endian, the device-tree convention, so
 * {@code dtc} and {@code fdtget} print the numbers the model meant.
 *
 * <p>Names are checked as the specification restricts them (node names 1-31 characters of
 * {@code [0-9a-zA-Z,._+-]} plus an optional {@code @unit}; property names of {@code [0-9a-zA-Z,._+?#-]}),
 * so that every tree written here is one {@code dtc} accepts.
 */
public final class FdtWriter {
    private final ByteArrayOutputStream struct = new ByteArrayOutputStream(4096);
    private final ByteArrayOutputStream strings = new ByteArrayOutputStream(512);
    private final Map<String, Integer> stringOffsets = new HashMap<>();
    private final ByteArrayOutputStream reservations = new ByteArrayOutputStream();
    private int depth;
    private boolean finished;
    private boolean rootDone;

    /** Adds a memory reservation block entry. */
    public FdtWriter reserve(final long address, final long size) {
        check();
        if (depth != 0 || rootDone || struct.size() != 0) {
            throw new IllegalStateException("reservations come before the root node");
        }
        putLong(reservations, address);
        putLong(reservations, size);
        return this;
    }

    public FdtWriter beginNode(final String name) {
        check();
        if (depth == 0) {
            if (rootDone) {
                throw new IllegalStateException("a tree has one root");
            }
            if (!name.isEmpty()) {
                throw new IllegalArgumentException("the root node's name is empty, not '" + name + "'");
            }
        } else if (!validNodeName(name)) {
            throw new IllegalArgumentException("invalid node name '" + name + "'");
        }
        putInt(struct, Fdt.BEGIN_NODE);
        putString(struct, name);
        pad(struct);
        depth++;
        return this;
    }

    public FdtWriter endNode() {
        check();
        if (depth == 0) {
            throw new IllegalStateException("endNode without beginNode");
        }
        putInt(struct, Fdt.END_NODE);
        depth--;
        if (depth == 0) {
            rootDone = true;
        }
        return this;
    }

    /** A property with raw bytes as its value. */
    public FdtWriter property(final String name, final byte[] value) {
        check();
        if (depth == 0) {
            throw new IllegalStateException("property '" + name + "' outside a node");
        }
        if (!validPropertyName(name)) {
            throw new IllegalArgumentException("invalid property name '" + name + "'");
        }
        putInt(struct, Fdt.PROP);
        putInt(struct, value.length);
        putInt(struct, stringOffset(name));
        struct.write(value, 0, value.length);
        pad(struct);
        return this;
    }

    public FdtWriter propertyEmpty(final String name) {
        return property(name, new byte[0]);
    }

    public FdtWriter propertyString(final String name, final String value) {
        if (value.indexOf('\0') >= 0) {
            throw new IllegalArgumentException("string property '" + name + "' contains NUL");
        }
        final byte[] s = value.getBytes(StandardCharsets.UTF_8);
        final byte[] v = new byte[s.length + 1];
        System.arraycopy(s, 0, v, 0, s.length);
        return property(name, v);
    }

    public FdtWriter propertyU32(final String name, final int value) {
        return property(name, ByteBuffer.allocate(4).order(ByteOrder.BIG_ENDIAN).putInt(value).array());
    }

    /** A u64 as two big-endian cells, the way {@code dtc} writes {@code /bits/ 64 <x>}. */
    public FdtWriter propertyU64(final String name, final long value) {
        return property(name, ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN).putLong(value).array());
    }

    /** A packed array of big-endian u64 values. */
    public FdtWriter propertyU64Array(final String name, final long[] values) {
        final ByteBuffer b = ByteBuffer.allocate(values.length * 8).order(ByteOrder.BIG_ENDIAN);
        for (long v : values) {
            b.putLong(v);
        }
        return property(name, b.array());
    }

    public FdtWriter propertyU32Array(final String name, final int[] values) {
        final ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.BIG_ENDIAN);
        for (int v : values) {
            b.putInt(v);
        }
        return property(name, b.array());
    }

    /** Returns the finished blob. The writer cannot be used afterwards. */
    public byte[] finish() {
        check();
        if (depth != 0 || !rootDone) {
            throw new IllegalStateException("tree is not complete: depth=" + depth);
        }
        putInt(struct, Fdt.END);
        finished = true;
        final int rsvOffset = Fdt.HEADER_SIZE; // 40 is 8-aligned
        final int rsvSize = reservations.size() + 16;
        final int structOffset = rsvOffset + rsvSize;
        final int structSize = struct.size();
        final int stringsOffset = structOffset + structSize;
        final int stringsSize = strings.size();
        final int total = stringsOffset + stringsSize;
        final ByteBuffer b = ByteBuffer.allocate(total).order(ByteOrder.BIG_ENDIAN);
        b.putInt(Fdt.MAGIC).putInt(total).putInt(structOffset).putInt(stringsOffset).putInt(rsvOffset)
                .putInt(Fdt.VERSION).putInt(Fdt.LAST_COMP_VERSION).putInt(0).putInt(stringsSize).putInt(structSize);
        b.put(reservations.toByteArray()).putLong(0).putLong(0);
        b.put(struct.toByteArray());
        b.put(strings.toByteArray());
        return b.array();
    }

    private void check() {
        if (finished) {
            throw new IllegalStateException("writer already finished");
        }
    }

    private int stringOffset(final String name) {
        return stringOffsets.computeIfAbsent(name, n -> {
            final int off = strings.size();
            putString(strings, n);
            return off;
        });
    }

    static boolean validNodeName(final String name) {
        final int at = name.indexOf('@');
        final String base = at < 0 ? name : name.substring(0, at);
        if (base.isEmpty() || base.length() > 31) {
            return false;
        }
        for (int i = 0; i < name.length(); i++) {
            final char c = name.charAt(i);
            final boolean ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
                    || c == ',' || c == '.' || c == '_' || c == '+' || c == '-' || (c == '@' && i == at);
            if (!ok) {
                return false;
            }
        }
        return true;
    }

    static boolean validPropertyName(final String name) {
        if (name.isEmpty() || name.length() > 31) {
            return false;
        }
        for (int i = 0; i < name.length(); i++) {
            final char c = name.charAt(i);
            final boolean ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
                    || c == ',' || c == '.' || c == '_' || c == '+' || c == '?' || c == '#' || c == '-';
            if (!ok) {
                return false;
            }
        }
        return true;
    }

    private static void putInt(final ByteArrayOutputStream out, final int v) {
        out.write(v >>> 24);
        out.write(v >>> 16);
        out.write(v >>> 8);
        out.write(v);
    }

    private static void putLong(final ByteArrayOutputStream out, final long v) {
        putInt(out, (int) (v >>> 32));
        putInt(out, (int) v);
    }

    private static void putString(final ByteArrayOutputStream out, final String s) {
        final byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.write(b, 0, b.length);
        out.write(0);
    }

    private static void pad(final ByteArrayOutputStream out) {
        while ((out.size() & 3) != 0) {
            out.write(0);
        }
    }
}
