package org.iopersist.kernel.liveupdate.kho;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Our DTS is dtc's DTS: for every kind of value dtc guesses (empty, string, string list, escapes,
 * u32 cells, bytes, a NUL-heavy value), reservations and nesting, {@link DtsWriter} prints what the
 * real {@code dtc -I dtb -O dts} prints, byte for byte. (Each real handover is compared too, in the
 * inspect command's test.)
 */
class DtsWriterTest {
    @TempDir
    Path dir;

    static String dtc(final Path dtb) throws Exception {
        final Process p = new ProcessBuilder("dtc", "-I", "dtb", "-O", "dts", dtb.toString()).redirectError(ProcessBuilder.Redirect.DISCARD)
                .start();
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), "dtc refuses " + dtb);
        return out;
    }

    private void same(final String name, final byte[] blob) throws Exception {
        final Path f = dir.resolve(name + ".dtb");
        Files.write(f, blob);
        assertEquals(dtc(f), DtsWriter.toDts(FdtReader.open(blob)), name);
    }

    private static byte[] bytes(final String s) {
        return s.getBytes(StandardCharsets.ISO_8859_1);
    }

    @Test
    void everyKindOfValuePrintsAsDtcPrintsIt() throws Exception {
        same("kinds", new FdtWriter().reserve(0x1000, 0x2000).reserve(0x10_0000_0000L, 0x1000).beginNode("")
                .propertyString("compatible", "kho-v1")
                .propertyEmpty("flag")
                .property("list", bytes("one\0two\0three\0"))
                .property("escapes", bytes("tab\there \"q\" back\\slash\n\r\u0007\0"))
                .property("empty-strings", bytes("ab\0\0"))
                .property("nul-heavy", bytes("a\0\0\0"))
                .property("unterminated", bytes("abcd"))
                .property("three", new byte[] {1, 2, 3})
                .property("high", new byte[] {(byte) 0xff, 0, 0, 0x7f, 'x', 0})
                .property("nul", new byte[] {0})
                .propertyU32("cell", 7)
                .propertyU64("u64", 0x1234_5678_9abcL)
                .propertyU64Array("u64s", new long[] {0, -1L, 0x3ff000})
                .beginNode("child@1").propertyU32("reg", 1)
                .beginNode("grandchild").propertyString("s", "x").endNode()
                .endNode()
                .beginNode("empty-node").endNode()
                .endNode().finish());
    }

    @Test
    void aTreeWithoutReservationsOrProperties() throws Exception {
        same("bare", new FdtWriter().beginNode("").endNode().finish());
    }
}
