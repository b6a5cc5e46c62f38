package org.iopersist.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** The main job as the README shows it: the demo runs clean, and bad options get one-line errors. */
class DemoTest {
    @TempDir
    Path dir;

    private static String run(final int expectedExit, final String... args) {
        final PrintStream out = System.out;
        final ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
        try {
            final CommandLine cli = new CommandLine(new Main());
            final java.io.StringWriter err = new java.io.StringWriter();
            cli.setErr(new java.io.PrintWriter(err));
            cli.setExecutionExceptionHandler((ex, cmd, pr) -> {
                cmd.getErr().println("iopersist: " + ex.getMessage());
                return 1;
            });
            assertEquals(expectedExit, cli.execute(args), err.toString() + buf);
            return buf.toString(StandardCharsets.UTF_8) + err;
        } finally {
            System.setOut(out);
        }
    }

    @Test
    void theLiveUpdateDemoRunsCleanAndEveryRecordIsInPlace() {
        final String out = run(0, "demo", "--seconds", "0.2", "--updates", "2", "--dir", dir.resolve("m").toString());
        assertTrue(out.contains("kernel 2 (process ") && out.contains("kernel 3 (process ")
                && out.contains(") booted from the handover (live_update) in "), out);
        assertTrue(out.contains("vmm 3    reopened /sys/kernel/iommufd_persisted/1/iommufd (persistent id 1), devices rebound with dev_id 2, 4"), out);
        assertTrue(out.contains("kernel 1 booted (cold)"), out);
        assertTrue(out.contains("vmm 2    reopened /sys/kernel/iommufd_persisted/1/iommufd (persistent id 1), devices rebound with dev_id 2, 4"), out);
        assertTrue(out.contains("vfio0: ") && out.contains(", 0 faults, 0 corrupt") && out.contains("checker: every record in place"), out);
        assertTrue(out.endsWith("demo: ok\n"), out);
    }

    @Test
    void theLuoFlowRunsTheSameDevicesAndChecksThroughSessions() {
        final String out = run(0, "demo", "--flow", "luo", "--seconds", "0.2", "--updates", "2", "--dir", dir.resolve("m").toString());
        assertTrue(out.contains("kernel 1 booted (cold)") && out.contains("cmdline \"liveupdate.finish_timeout=30\""), out);
        assertTrue(out.contains("vmm 1    guest RAM memfd:vm0-ram (64 MiB, sealed) at IOVA 0, iommufd with HWPT 3 marked, devices bound "
                + "(dev_id 2, 4) and running; session vm0: state, RAM, iommufd and devices preserved"), out);
        assertTrue(out.contains("kexec 1   reboot (freeze + serialize) + kexec ") && out.contains("kexec 2   reboot"), out);
        assertTrue(out.contains("vmm 3    retrieved session vm0 (ioas=1 hwpt=3 devids=2, 4): devices bound and attached, iommufd, "
                + "guest RAM; finished"), out);
        assertTrue(out.contains("vfio1: ") && out.contains(", 0 faults, 0 corrupt") && out.contains("checker: every record in place"), out);
        assertTrue(out.endsWith("demo: ok\n"), out);
    }

    /** A memfd is runs now, so the LUO flow takes guests above the 4 GiB hole, up to the RFC flow's bound. */
    @Test
    void theLuoFlowTakesGuestRamAboveTheHole() {
        final String out = run(0, "demo", "--flow", "luo", "--guest-ram", "6G", "--seconds", "0.2", "--updates", "1",
                "--dir", dir.resolve("m").toString());
        assertTrue(out.contains("guest RAM memfd:vm0-ram (6 GiB, sealed) at IOVA 0 and 4G (q35 hole below 4 GiB)"), out);
        assertTrue(out.contains("booted from the handover (live_update)") && out.endsWith("demo: ok\n"), out);
        assertEquals("iopersist: --guest-ram must be a multiple of 2 MiB in 4M..1T\n",
                run(1, "demo", "--flow", "luo", "--guest-ram", "2T"));
    }

    @Test
    void aDirectoryThatHoldsAMachineIsRefused() throws Exception {
        java.nio.file.Files.createDirectories(dir.resolve("m"));
        java.nio.file.Files.writeString(dir.resolve("m").resolve("machine.properties"), "memory.size=1\n");
        final String out = run(1, "demo", "--dir", dir.resolve("m").toString());
        assertEquals("iopersist: " + dir.resolve("m") + " already holds a machine; give a new directory\n", out);
    }

    @Test
    void aKernelWithoutAMachineIsOneLine() {
        final String out = run(1, "kernel", dir.resolve("none").toString());
        assertEquals("iopersist: " + dir.resolve("none") + " is not a machine directory; start one with `iopersist machine "
                + dir.resolve("none") + "`\n", out);
    }

    @Test
    void badOptionsAreOneLine() {
        final String out = run(1, "demo", "--seconds", "-1");
        assertEquals("iopersist: --seconds must be in (0, 3600]\n", out);
    }

    @Test
    void badInputIsRefusedBeforeAnythingRuns() throws Exception {
        assertEquals("iopersist: --seconds must be in (0, 3600]\n", run(1, "demo", "--seconds", "NaN"));
        assertEquals("iopersist: --dir is empty; give a path\n", run(1, "demo", "--dir", ""));
        assertEquals("iopersist: --vmm-command " + dir.resolve("nope") + ": no executable file there (give its path)\n",
                run(1, "demo", "--vmm-command", dir.resolve("nope").toString()));
        java.nio.file.Files.writeString(dir.resolve("afile"), "mine");
        assertTrue(run(1, "demo", "--out", dir.resolve("afile").resolve("sub").toString())
                .startsWith("iopersist: --out " + dir.resolve("afile").resolve("sub") + ": cannot create it: "));
        // selfcheck, as demo, never rebuilds a machine that is there.
        java.nio.file.Files.createDirectories(dir.resolve("m"));
        java.nio.file.Files.writeString(dir.resolve("m").resolve("machine.properties"), "memory.size=1\n");
        assertEquals("iopersist: " + dir.resolve("m") + " already holds a machine; give a new directory\n",
                run(1, "selfcheck", "--dir", dir.resolve("m").toString()));
        assertEquals("memory.size=1\n", java.nio.file.Files.readString(dir.resolve("m").resolve("machine.properties")));
    }

    /** A kernel never takes a socket path from a user's file, nor from a kernel that still serves it. */
    @Test
    void aKernelRefusesASocketPathThatIsTaken() throws Exception {
        try (org.iopersist.kernel.KernelRig rig = org.iopersist.kernel.KernelRig.boot(dir.resolve("m"),
                org.iopersist.hw.MachineConfig.small().withMemorySize(256L << 20), "");
             org.iopersist.kernel.syscall.SyscallServer server = rig.kernel.serve(dir.resolve("m").resolve("kernel.sock"))) {
            assertEquals("iopersist: a kernel already serves " + server.path()
                    + "; halt it first (close its stdin), or give another --socket\n", run(1, "kernel", dir.resolve("m").toString()));
            java.nio.file.Files.writeString(dir.resolve("notes"), "mine");
            assertEquals("iopersist: " + dir.resolve("notes") + " exists and is not a socket; give another --socket\n",
                    run(1, "kernel", dir.resolve("m").toString(), "--socket", dir.resolve("notes").toString()));
            assertEquals("mine", java.nio.file.Files.readString(dir.resolve("notes")));
        }
    }
}
