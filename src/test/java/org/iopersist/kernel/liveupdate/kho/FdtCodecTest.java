package org.iopersist.kernel.liveupdate.kho;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The FDT codec against the real device-tree tools: {@code dtc} and {@code fdtget} read what the
 * writer produces, the reader reads what {@code dtc} produces, and no corruption of a blob makes the
 * reader throw anything but {@link HandoverFormatException}.
 */
class FdtCodecTest {
    @TempDir
    Path tmp;

    static byte[] sample() {
        return new FdtWriter()
                .reserve(0x1000_0000L, 0x20_0000L)
                .beginNode("")
                .propertyString("compatible", "kho-v1")
                .propertyU64("preserved-memory-map", 0x1_2345_6000L)
                .beginNode("intel-iommu")
                .propertyString("compatible", "intel-iommu-v1")
                .propertyU64("fdt", 0xdead_b000L)
                .propertyU32("units", 2)
                .propertyU64Array("areas", new long[] {0x1000, 0x2000, -1L})
                .propertyEmpty("persistent")
                .propertyU32("#address-cells", 1)
                .propertyU32("#size-cells", 0)
                .beginNode("unit@0")
                .propertyU32("reg", 0)
                .propertyU32("did", 0x12)
                .endNode()
                .endNode()
                .endNode()
                .finish();
    }

    private String run(final String... cmd) throws IOException, InterruptedException {
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "timeout: " + String.join(" ", cmd));
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + " failed:\n" + out);
        return out;
    }

    @Test
    void dtcDecompilesWhatTheWriterWrites() throws Exception {
        final Path dtb = tmp.resolve("sample.dtb");
        Files.write(dtb, sample());
        final String dts = run("dtc", "-I", "dtb", "-O", "dts", dtb.toString()).replace('\t', ' ');
        assertTrue(!dts.contains("Warning"), dts);
        assertTrue(dts.contains("/memreserve/ 0x0000000010000000 0x0000000000200000;"), dts);
        assertTrue(dts.contains("compatible = \"kho-v1\";"), dts);
        assertTrue(dts.contains("preserved-memory-map = <0x01 0x23456000>;"), dts);
        assertTrue(dts.contains("intel-iommu {"), dts);
        assertTrue(dts.contains("fdt = <0x00 0xdeadb000>;"), dts);
        assertTrue(dts.contains("units = <0x02>;"), dts);
        assertTrue(dts.contains("areas = <0x00 0x1000 0x00 0x2000 0xffffffff 0xffffffff>;"), dts);
        assertTrue(dts.contains("persistent;"), dts);
        assertTrue(dts.contains("unit@0 {"), dts);
        assertTrue(dts.contains("did = <0x12>;"), dts);
    }

    @Test
    void fdtgetReadsValuesBigEndian() throws Exception {
        final Path dtb = tmp.resolve("sample.dtb");
        Files.write(dtb, sample());
        assertEquals("kho-v1", run("fdtget", "-t", "s", dtb.toString(), "/", "compatible").trim());
        assertEquals("0 deadb000", run("fdtget", "-t", "x", dtb.toString(), "/intel-iommu", "fdt").trim());
        assertEquals("12", run("fdtget", "-t", "x", dtb.toString(), "/intel-iommu/unit@0", "did").trim());
        assertEquals("intel-iommu", run("fdtget", "-l", dtb.toString(), "/").trim());
    }

    @Test
    void readerReadsWhatDtcWrites() throws Exception {
        final Path src = tmp.resolve("in.dts");
        Files.writeString(src, """
                /dts-v1/;
                /memreserve/ 0x40000000 0x1000;
                / {
                    compatible = "kho-v1";
                    big = /bits/ 64 <0x123456789abcdef0>;
                    cells = <1 2 3>;
                    sub {
                        name2 = "x";
                        deeper@4 { v = <0xfeedface>; };
                    };
                    other { };
                };
                """);
        final Path dtb = tmp.resolve("in.dtb");
        run("dtc", "-I", "dts", "-O", "dtb", "-o", dtb.toString(), src.toString());
        final FdtReader r = FdtReader.open(Files.readAllBytes(dtb));
        assertEquals("kho-v1", r.string(r.root(), "compatible"));
        assertEquals(0x123456789abcdef0L, r.u64(r.root(), "big"));
        assertArrayEquals(new byte[] {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, r.bytes(r.root(), "cells"));
        final int deeper = r.path("/sub/deeper@4");
        assertTrue(deeper > 0);
        assertEquals(0xfeedface, r.u32(deeper, "v"));
        assertEquals(deeper, r.path("/sub/deeper"));
        assertEquals(List.of("sub", "other"), r.children(r.root()).stream().map(r::nodeName).toList());
        assertEquals(1, r.reservations().size());
        assertEquals(0x40000000L, r.reservations().get(0)[0]);
        assertEquals(-1, r.path("/missing"));
        assertThrows(HandoverFormatException.class, () -> r.u64(r.root(), "cells"));
        assertThrows(HandoverFormatException.class, () -> r.u32(r.root(), "nope"));
    }

    @Test
    void roundTrip() throws Exception {
        final FdtReader r = FdtReader.open(sample());
        final int iommu = r.path("/intel-iommu");
        assertEquals("intel-iommu-v1", r.string(iommu, "compatible"));
        assertArrayEquals(new long[] {0x1000, 0x2000, -1L}, r.u64Array(iommu, "areas"));
        assertTrue(r.has(iommu, "persistent"));
        assertEquals(0x12, r.u32(r.path("/intel-iommu/unit@0"), "did"));
    }

    @Test
    void writerRefusesNamesDtcWouldReject() {
        assertThrows(IllegalArgumentException.class, () -> new FdtWriter().beginNode("").beginNode("bad name"));
        assertThrows(IllegalArgumentException.class, () -> new FdtWriter().beginNode("").propertyU32("bad/prop", 1));
        assertThrows(IllegalStateException.class, () -> new FdtWriter().beginNode("").finish());
    }

    @Test
    void everyTruncationIsAFormatError() {
        final byte[] blob = sample();
        for (int len = 0; len < blob.length; len++) {
            final byte[] cut = java.util.Arrays.copyOf(blob, len);
            assertThrows(HandoverFormatException.class, () -> FdtReader.open(cut), "length " + len);
        }
    }

    @Test
    void headerLiesAreFormatErrors() {
        final int[] fields = {Fdt.OFF_MAGIC, Fdt.OFF_TOTALSIZE, Fdt.OFF_DT_STRUCT, Fdt.OFF_DT_STRINGS,
            Fdt.OFF_MEM_RSVMAP, Fdt.OFF_VERSION, Fdt.OFF_SIZE_DT_STRINGS, Fdt.OFF_SIZE_DT_STRUCT};
        for (int field : fields) {
            for (int value : new int[] {0, 1, 3, 0x7fffffff, -1, -40}) {
                final byte[] b = sample();
                java.nio.ByteBuffer.wrap(b).putInt(field, value);
                try {
                    walk(FdtReader.open(b));
                } catch (HandoverFormatException expected) {
                    // fine
                } catch (RuntimeException e) {
                    fail("field 0x" + Integer.toHexString(field) + "=" + value + " threw " + e);
                }
            }
        }
    }

    @Property(tries = 300)
    void corruptionNeverEscapesAsUncheckedException(@ForAll @IntRange(min = 0, max = 400) final int position,
                                                    @ForAll final byte value,
                                                    @ForAll @IntRange(min = 1, max = 4) final int count) {
        final byte[] b = sample();
        for (int i = 0; i < count; i++) {
            b[(position + i * 7) % b.length] ^= (byte) (value == 0 ? 0x55 : value);
        }
        try {
            walk(FdtReader.open(b));
        } catch (HandoverFormatException expected) {
            // a corrupt blob is allowed to be refused
        }
    }

    /** Touches every node, property name and value, as a consumer would. */
    static void walk(final FdtReader r) throws HandoverFormatException {
        walkNode(r, r.root());
        r.reservations();
    }

    private static void walkNode(final FdtReader r, final int node) throws HandoverFormatException {
        r.nodeName(node);
        for (int p : r.properties(node)) {
            r.propertyName(p);
            r.value(p).byteSize();
        }
        for (int c : r.children(node)) {
            walkNode(r, c);
        }
    }
}
