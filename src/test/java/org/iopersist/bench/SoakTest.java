package org.iopersist.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The soak in CI: {@code scripts/bench --soak 5} writes its report section, and nothing is lost
 * over five updates back to back with unpaced devices and maps and unmaps between them: no fault,
 * no corrupt or missing record, no leak (pins, poisoned frames, handover frames, frame drift).
 * {@code scripts/bench --soak 100} is the run BENCHMARKS.md records.
 */
class SoakTest {
    @TempDir
    Path dir;

    @Test
    void fiveUpdatesBackToBackLoseNothing() throws Exception {
        final Path out = dir.resolve("BENCHMARKS.md");
        final int exit = new CommandLine(new Bench()).execute("--soak", "5", "--out", out.toString());
        final String section = Files.readString(dir.resolve("docs").resolve("bench").resolve("soak.md"));
        assertEquals(0, exit, section);
        assertTrue(section.contains("## Soak") && section.contains("Nothing lost: yes."), section);
        assertTrue(section.matches("(?s).*\\| 5 \\| [0-9.]+ / [0-9.]+ / [0-9.]+ \\| [0-9]+ \\| 0, 0 \\| yes \\| -?[0-9]+ \\| 0 \\| 0 \\| 0 frames \\|.*"),
                section);
        assertTrue(Files.readString(dir.resolve("docs").resolve("bench").resolve("soak.json")).contains("\"blackout\""));
    }
}
