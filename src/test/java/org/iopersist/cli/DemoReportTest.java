package org.iopersist.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.networknt.schema.Error;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SpecificationVersion;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.imageio.ImageIO;
import org.iopersist.hw.pci.CompletionTrace;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code demo --out DIR --json}: the report it writes reads back with Jackson, validates against
 * docs/report.schema.json and agrees with itself, with the summary lines and with the machine's
 * completion trace; the timeline is a real PNG; every process's log is there; stdout is the JSON.
 */
class DemoReportTest {
    private static final Path SCHEMA = Path.of("docs", "report.schema.json");

    @TempDir
    Path dir;

    @Test
    void theLuoFlowsReportMatchesTheSchemaToo() throws Exception {
        final Path out = dir.resolve("luo-out");
        final PrintStream stdout = System.out;
        final ByteArrayOutputStream outBuf = new ByteArrayOutputStream();
        System.setOut(new PrintStream(outBuf, true, StandardCharsets.UTF_8));
        final int exit;
        try {
            exit = new CommandLine(new Main()).execute("demo", "--flow", "luo", "--seconds", "0.2", "--out", out.toString(),
                    "--dir", dir.resolve("luo-m").toString());
        } finally {
            System.setOut(stdout);
        }
        final String summary = outBuf.toString(StandardCharsets.UTF_8);
        assertEquals(0, exit, summary);
        assertTrue(summary.endsWith("demo: ok\n"), summary);
        final JsonNode report = new ObjectMapper().readTree(out.resolve("report.json").toFile());
        final Schema schema = SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_2020_12).getSchema(Files.readString(SCHEMA));
        assertEquals(List.of(), schema.validate(report), "report.json against " + SCHEMA);
        assertEquals("luo", report.get("flow").asText());
        assertTrue(report.get("ok").asBoolean(), report.toString());
        final JsonNode update = report.get("updates").get(0);
        assertTrue(update.get("handover").isNull() && update.get("scrub").isNull(), update.toString());
        assertEquals(0.0, update.get("phases").get("finalizeMs").asDouble(), "no finalize in the LUO flow");
        assertTrue(update.get("devIdsKept").asBoolean());
    }

    @Test
    void theDemoWritesAReportThatMatchesItsSchemaATimelineAndTheLogs() throws Exception {
        final Path out = dir.resolve("out");
        final Path machine = dir.resolve("m");
        final PrintStream stdout = System.out;
        final PrintStream stderr = System.err;
        final ByteArrayOutputStream outBuf = new ByteArrayOutputStream();
        final ByteArrayOutputStream errBuf = new ByteArrayOutputStream();
        System.setOut(new PrintStream(outBuf, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(errBuf, true, StandardCharsets.UTF_8));
        final int exit;
        try {
            exit = new CommandLine(new Main()).execute("demo", "--seconds", "0.3", "--updates", "2", "--out", out.toString(),
                    "--json", "--dir", machine.toString());
        } finally {
            System.setOut(stdout);
            System.setErr(stderr);
        }
        final String summary = errBuf.toString(StandardCharsets.UTF_8);
        assertEquals(0, exit, summary);
        assertTrue(summary.contains("demo: ok"), "with --json the summary lines go to stderr: " + summary);

        final ObjectMapper mapper = new ObjectMapper();
        final JsonNode report = mapper.readTree(out.resolve("report.json").toFile());
        assertEquals(report, mapper.readTree(outBuf.toString(StandardCharsets.UTF_8)), "--json prints the report, and only it");

        final SchemaRegistry registry = SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_2020_12);
        final Schema schema = registry.getSchema(Files.readString(SCHEMA));
        final List<Error> errors = schema.validate(report);
        assertEquals(List.of(), errors, "report.json against " + SCHEMA);
        // The schema is not vacuous: a report missing a field, or with a wrong type, fails it.
        final JsonNode broken = report.deepCopy();
        ((com.fasterxml.jackson.databind.node.ObjectNode) broken.get("updates").get(0).get("phases")).remove("blackoutMs");
        ((com.fasterxml.jackson.databind.node.ObjectNode) broken.get("devices").get(0)).put("records", "many");
        assertEquals(2, schema.validate(broken).size(), schema.validate(broken).toString());

        // The report agrees with itself and with the run.
        assertEquals("rfc", report.get("flow").asText());
        assertTrue(report.get("ok").asBoolean());
        assertEquals(3, report.get("kernels").size());
        assertEquals("cold", report.get("kernels").get(0).get("boot").asText());
        assertEquals("live_update", report.get("kernels").get(2).get("boot").asText());
        assertEquals(2, report.get("updates").size());
        assertEquals("iommufd-v1", report.get("versions").get("handover").get("iommufd").asText());
        assertEquals("intel-iommu-v3", report.get("versions").get("handover").get("intel-iommu").asText());
        for (JsonNode u : report.get("updates")) {
            final JsonNode p = u.get("phases");
            assertTrue(p.get("blackoutMs").asDouble() >= p.get("finalizeMs").asDouble() + p.get("kexecMs").asDouble()
                    + p.get("kexecToServingMs").asDouble() + p.get("reopenMs").asDouble() - 0.01, p.toString());
            assertTrue(u.get("devIdsKept").asBoolean() && u.get("scrub").get("ok").asBoolean(), u.toString());
            final JsonNode h = u.get("handover");
            long sum = h.get("treeBytes").asLong() + h.get("tracker").get("bytes").asLong();
            for (JsonNode b : h.get("blobs")) {
                sum += b.get("bytes").asLong();
            }
            assertEquals(sum, h.get("totalBytes").asLong());
            assertEquals(3, h.get("blobs").size());
            // 64 MiB of guest RAM is preserved, at least.
            assertTrue(h.get("tracker").get("preservedFrames").asLong() >= 16384, h.toString());
        }
        final List<String> events = new ArrayList<>();
        double last = -1;
        for (JsonNode m : report.get("timeline").get("marks")) {
            events.add(m.get("event").asText() + m.get("update").asInt());
            assertTrue(m.get("ms").asDouble() > last, "marks in time order: " + report.get("timeline"));
            last = m.get("ms").asDouble();
        }
        assertEquals(List.of("finalize1", "kexec1", "boot1", "reopen1", "finalize2", "kexec2", "boot2", "reopen2"), events);
        assertTrue(report.get("timeline").get("endMs").asDouble() > last);
        try (CompletionTrace trace = CompletionTrace.open(machine)) {
            assertEquals(trace.originNanos(), report.get("timeline").get("originNanos").asLong());
        }
        for (JsonNode d : report.get("devices")) {
            final String name = d.get("name").asText();
            assertEquals(d.get("records").asLong(), d.get("tracedRecords").asLong(), "the trace saw every record of " + name);
            assertEquals(0, d.get("faults").get("total").asLong());
            assertTrue(d.get("checker").get("clean").asBoolean());
            assertTrue(summary.contains("device   " + name + ": " + d.get("records").asLong() + " records ("
                    + d.get("recordsAfterFirstUpdate").asLong() + " after the first update), 0 faults, 0 corrupt"), summary);
        }

        // timeline.png: a PNG by its signature and IHDR, of the size drawn, and it decodes.
        final Path png = out.resolve("timeline.png");
        try (InputStream in = Files.newInputStream(png); DataInputStream data = new DataInputStream(in)) {
            final byte[] signature = new byte[8];
            data.readFully(signature);
            assertArrayEquals(new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, signature);
            assertEquals(13, data.readInt());
            final byte[] type = new byte[4];
            data.readFully(type);
            assertEquals("IHDR", new String(type, StandardCharsets.US_ASCII));
            assertEquals(TimelineChart.WIDTH, data.readInt());
            assertEquals(TimelineChart.HEIGHT, data.readInt());
        }
        final long size = Files.size(png);
        assertTrue(size > 10_000 && size < 5_000_000, "a chart, not an empty or runaway image: " + size + " bytes");
        final BufferedImage image = ImageIO.read(png.toFile());
        assertEquals(TimelineChart.WIDTH, image.getWidth());
        // Not blank: the plot has many colours (series, marks, shading).
        final java.util.Set<Integer> colours = new java.util.HashSet<>();
        for (int x = 0; x < image.getWidth(); x += 7) {
            for (int y = 0; y < image.getHeight(); y += 7) {
                colours.add(image.getRGB(x, y));
            }
        }
        assertTrue(colours.size() > 8, colours.size() + " colours");

        for (String log : List.of("machine.log", "kernel1.log", "kernel2.log", "kernel3.log")) {
            assertTrue(Files.isRegularFile(out.resolve(log)), log);
        }
        assertTrue(Files.readString(out.resolve("kernel3.log")).contains("kernel ready"), "kernel 3's own log");
        assertFalse(Files.exists(out.resolve("kernel4.log")));
    }

    @Test
    void gapsAreTheLongestRunsOfEmptyMillisecondsPlacedAgainstThePhases() {
        final int[] counts = {0, 0, 5, 6, 0, 0, 0, 7, 0, 6, 0, 0, 0, 0, 0, 0, 8, 0};
        final List<DemoReport.Mark> marks = List.of(new DemoReport.Mark("finalize", 1, 3.2), new DemoReport.Mark("kexec", 1, 5.0),
                new DemoReport.Mark("boot", 1, 9.5), new DemoReport.Mark("reopen", 1, 12.0));
        // Before the first completion the device had not started; the last bin is partial.
        assertEquals(List.of(new DemoReport.Gap(4, 3, "finalize+kexec 1, boot 1"), new DemoReport.Gap(8, 1, "boot 1"),
                new DemoReport.Gap(10, 6, "reopen 1")), Demo.gaps(counts, marks));
        final int[] noisy = new int[40];
        for (int i = 0; i < noisy.length; i += 2) {
            noisy[i] = 1; // 19 one-ms gaps: only the ten kept, in time order
        }
        final List<DemoReport.Gap> kept = Demo.gaps(noisy, List.of());
        assertEquals(Demo.MAX_GAPS, kept.size());
        assertEquals(new DemoReport.Gap(1, 1, "running"), kept.get(0));
    }
}
