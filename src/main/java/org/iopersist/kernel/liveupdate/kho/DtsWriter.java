package org.iopersist.kernel.liveupdate.kho;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A flattened device tree as device-tree source, byte for byte what {@code dtc -I dtb -O dts}
 * prints for it (dtc 1.6's {@code treesource.c}, as Debian 12 ships it): a blob
 * carries no types, so each property value is guessed the way dtc guesses it ({@link #kindOf}),
 * and printed as dtc prints that kind. (dtc 1.7 differs in one case: it prints a string list as
 * {@code "a", "b"} where 1.6 prints {@code "a\0b"}.)
 *
 * <pre>
 * /dts-v1/;
 *
 * /memreserve/	0x0000000000001000 0x0000000000002000;     (one per reservation)
 * / {
 * 	compatible = "kho-v2";                               string(s): printable, NUL-terminated
 * 	preserved-memory-map = &lt;0x00 0x3ff000&gt;;              length a multiple of 4: u32 cells
 * 	odd = [01 02 03];                                    anything else: bytes
 * 	flag;                                                empty
 *
 * 	child {                                              a blank line before each child
 * 	};
 * };
 * </pre>
 */
public final class DtsWriter {
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** How dtc prints a property value it knows nothing about. */
    public enum Kind { EMPTY, STRINGS, CELLS, BYTES }

    private DtsWriter() {
    }

    /** The whole tree as dtc prints it. */
    public static String toDts(final FdtReader fdt) {
        final StringBuilder sb = new StringBuilder("/dts-v1/;\n\n");
        for (long[] r : fdt.reservations()) {
            sb.append(String.format("/memreserve/\t0x%016x 0x%016x;\n", r[0], r[1]));
        }
        node(sb, fdt, fdt.root(), 0);
        return sb.toString();
    }

    private static void node(final StringBuilder sb, final FdtReader fdt, final int node, final int depth) {
        final String name = fdt.nodeName(node);
        sb.append("\t".repeat(depth)).append(name.isEmpty() ? "/" : name).append(" {\n");
        for (int prop : fdt.properties(node)) {
            sb.append("\t".repeat(depth + 1)).append(fdt.propertyName(prop));
            value(sb, fdt.value(prop));
            sb.append('\n');
        }
        for (int child : fdt.children(node)) {
            sb.append('\n');
            node(sb, fdt, child, depth + 1);
        }
        sb.append("\t".repeat(depth)).append("};\n");
    }

    /** dtc's {@code isstring}: printable ASCII, NUL, or one of the C escapes it writes back. */
    private static boolean stringByte(final int c) {
        return (c >= 0x20 && c < 0x7f) || c == 0 || (c >= 7 && c <= 13);
    }

    /** dtc's {@code guess_value_type} over a whole value. */
    public static Kind kindOf(final MemorySegment v) {
        final long len = v.byteSize();
        if (len == 0) {
            return Kind.EMPTY;
        }
        long nul = 0;
        boolean printable = true;
        for (long i = 0; i < len; i++) {
            final int c = v.get(ValueLayout.JAVA_BYTE, i) & 0xff;
            printable &= stringByte(c);
            if (c == 0) {
                nul++;
            }
        }
        if (v.get(ValueLayout.JAVA_BYTE, len - 1) == 0 && printable && nul <= len - nul) {
            return Kind.STRINGS;
        }
        return (len & 3) == 0 ? Kind.CELLS : Kind.BYTES;
    }

    /** The NUL-terminated strings of a {@link Kind#STRINGS} value. */
    public static List<String> strings(final MemorySegment v) {
        final List<String> out = new ArrayList<>();
        final byte[] b = v.toArray(ValueLayout.JAVA_BYTE);
        int start = 0;
        for (int i = 0; i < b.length; i++) {
            if (b[i] == 0) {
                out.add(new String(b, start, i - start, java.nio.charset.StandardCharsets.ISO_8859_1));
                start = i + 1;
            }
        }
        return out;
    }

    /** The big-endian u32 cells of a {@link Kind#CELLS} value. */
    public static long[] cells(final MemorySegment v) {
        final long[] out = new long[(int) (v.byteSize() / 4)];
        for (int i = 0; i < out.length; i++) {
            out[i] = Integer.toUnsignedLong(v.get(BE32, i * 4L));
        }
        return out;
    }

    private static void value(final StringBuilder sb, final MemorySegment v) {
        switch (kindOf(v)) {
            case EMPTY -> sb.append(';');
            case STRINGS -> {
                // dtc 1.6 prints a string list as one string, each inner NUL as \0 (1.7 splits it: "a", "b").
                sb.append(" = \"");
                escape(sb, String.join("\0", strings(v)));
                sb.append("\";");
            }
            case CELLS -> {
                sb.append(" = <");
                final long[] cells = cells(v);
                for (int i = 0; i < cells.length; i++) {
                    sb.append(i == 0 ? "" : " ").append(String.format("0x%02x", cells[i]));
                }
                sb.append(">;");
            }
            case BYTES -> {
                sb.append(" = [");
                for (long i = 0; i < v.byteSize(); i++) {
                    sb.append(i == 0 ? "" : " ").append(String.format("%02x", v.get(ValueLayout.JAVA_BYTE, i) & 0xff));
                }
                sb.append("];");
            }
        }
    }

    /** dtc's {@code write_propval_string}, for the bytes {@link #kindOf} lets into a string. */
    private static void escape(final StringBuilder sb, final String s) {
        for (int i = 0; i < s.length(); i++) {
            final char c = s.charAt(i);
            switch (c) {
                case 7 -> sb.append("\\a");
                case '\b' -> sb.append("\\b");
                case '\t' -> sb.append("\\t");
                case '\n' -> sb.append("\\n");
                case 11 -> sb.append("\\v");
                case '\f' -> sb.append("\\f");
                case '\r' -> sb.append("\\r");
                case '\\' -> sb.append("\\\\");
                case '"' -> sb.append("\\\"");
                case 0 -> sb.append("\\0");
                default -> sb.append(c);
            }
        }
    }
}
