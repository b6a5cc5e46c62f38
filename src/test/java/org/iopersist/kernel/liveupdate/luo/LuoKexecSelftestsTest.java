package org.iopersist.kernel.liveupdate.luo;

import static org.iopersist.kernel.liveupdate.luo.LuoTestUtils.createAndPreserveMemfd;
import static org.iopersist.kernel.liveupdate.luo.LuoTestUtils.createStateFile;
import static org.iopersist.kernel.liveupdate.luo.LuoTestUtils.detectStage;
import static org.iopersist.kernel.liveupdate.luo.LuoTestUtils.restoreAndReadStage;
import static org.iopersist.kernel.liveupdate.luo.LuoTestUtils.restoreAndVerifyMemfd;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.cli.Main;
import org.iopersist.hw.MachineMain;
import org.iopersist.testing.ChildJvm;
import org.iopersist.testing.Handovers;
import org.iopersist.hw.Board;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The two-stage selftests of {@code tools/testing/selftests/liveupdate/} across a real kexec: the
 * machine is one process, kernel 1 another, kernel 2 a third, and each selftest's stage 1 is a
 * process of kernel 1 that keeps its sessions open through the kexec (the selftest's
 * {@code daemonize_and_wait}), its stage 2 a process of kernel 2. All four run through one kexec,
 * each with its own state session, as they would one after another on one machine:
 * {@code luo_kexec_simple.c}, {@code luo_multi_session.c}, {@code luo_stress_files.c} and
 * {@code luo_stress_sessions.c}.
 */
class LuoKexecSelftestsTest {
    private static final String CMDLINE = "liveupdate.finish_timeout=0";

    @TempDir
    Path dir;

    /** One selftest: its state session (each is a record of the two), what stage 1 does, and what stage 2 checks. */
    private interface Selftest {
        String stateSession();

        long stateToken();

        void stage1(KernelClient c, LiveupdateHandle luo);

        void stage2(KernelClient c, LiveupdateHandle luo, SessionHandle state);
    }

    /** The selftests' last step: LIVEUPDATE_SESSION_FINISH, then close, for each session in turn. */
    private static void finishAndClose(final SessionHandle... sessions) {
        for (SessionHandle s : sessions) {
            s.finish();
            s.close();
        }
    }

    /** luo_kexec_simple.c. */
    private record Simple(String stateSession, long stateToken) implements Selftest {
        Simple() {
            this("kexec_simple_state", 999);
        }

        @Override
        public void stage1(final KernelClient c, final LiveupdateHandle luo) {
            createStateFile(c, luo, stateSession(), stateToken(), 2);
            final SessionHandle s = luo.createSession("test-session");
            createAndPreserveMemfd(c, s, 0x1A, "hello kexec world");
        }

        @Override
        public void stage2(final KernelClient c, final LiveupdateHandle luo, final SessionHandle state) {
            assertEquals(2, restoreAndReadStage(c, state, stateToken()));
            final SessionHandle s = luo.retrieveSession("test-session");
            c.close(restoreAndVerifyMemfd(c, s, 0x1A, "hello kexec world"));
            finishAndClose(s, state);
        }
    }

    /** luo_multi_session.c. */
    private record MultiSession(String stateSession, long stateToken) implements Selftest {
        MultiSession() {
            this("kexec_multi_state", 998);
        }

        @Override
        public void stage1(final KernelClient c, final LiveupdateHandle luo) {
            createStateFile(c, luo, stateSession(), stateToken(), 2);
            luo.createSession("multi-test-empty-1");
            luo.createSession("multi-test-empty-2");
            final SessionHandle f1 = luo.createSession("multi-test-files-1");
            createAndPreserveMemfd(c, f1, 0x1001, "Data for session files 1");
            final SessionHandle f2 = luo.createSession("multi-test-files-2");
            createAndPreserveMemfd(c, f2, 0x2002, "First file for session files 2");
            createAndPreserveMemfd(c, f2, 0x3003, "Second file for session files 2");
        }

        @Override
        public void stage2(final KernelClient c, final LiveupdateHandle luo, final SessionHandle state) {
            assertEquals(2, restoreAndReadStage(c, state, stateToken()));
            final SessionHandle e1 = luo.retrieveSession("multi-test-empty-1");
            final SessionHandle e2 = luo.retrieveSession("multi-test-empty-2");
            final SessionHandle f1 = luo.retrieveSession("multi-test-files-1");
            final SessionHandle f2 = luo.retrieveSession("multi-test-files-2");
            c.close(restoreAndVerifyMemfd(c, f1, 0x1001, "Data for session files 1"));
            c.close(restoreAndVerifyMemfd(c, f2, 0x2002, "First file for session files 2"));
            c.close(restoreAndVerifyMemfd(c, f2, 0x3003, "Second file for session files 2"));
            finishAndClose(e1, e2, f1, f2, state);
        }
    }

    /** luo_stress_files.c: 500 files in one session. */
    private record StressFiles(String stateSession, long stateToken) implements Selftest {
        static final int NUM_FILES = 500;

        StressFiles() {
            this("kexec_many_files_state", 9999);
        }

        @Override
        public void stage1(final KernelClient c, final LiveupdateHandle luo) {
            createStateFile(c, luo, stateSession(), stateToken(), 2);
            final SessionHandle s = luo.createSession("many_files_session");
            for (int i = 0; i < NUM_FILES; i++) {
                createAndPreserveMemfd(c, s, i, "file-data-" + i);
            }
        }

        @Override
        public void stage2(final KernelClient c, final LiveupdateHandle luo, final SessionHandle state) {
            assertEquals(2, restoreAndReadStage(c, state, stateToken()));
            final SessionHandle s = luo.retrieveSession("many_files_session");
            for (int i = 0; i < NUM_FILES; i++) {
                c.close(restoreAndVerifyMemfd(c, s, i, "file-data-" + i));
            }
            finishAndClose(s, state);
        }
    }

    /** luo_stress_sessions.c: 2000 sessions, RLIMIT_NOFILE raised for them. */
    private record StressSessions(String stateSession, long stateToken) implements Selftest {
        static final int NUM_SESSIONS = 2000;

        StressSessions() {
            this("kexec_many_state", 999);
        }

        @Override
        public void stage1(final KernelClient c, final LiveupdateHandle luo) {
            c.setNofileLimit(NUM_SESSIONS + 16, 4096); // luo_ensure_nofile_limit
            createStateFile(c, luo, stateSession(), stateToken(), 2);
            for (int i = 0; i < NUM_SESSIONS; i++) {
                luo.createSession("many-test-" + i);
            }
        }

        @Override
        public void stage2(final KernelClient c, final LiveupdateHandle luo, final SessionHandle state) {
            assertEquals(2, restoreAndReadStage(c, state, stateToken()));
            for (int i = 0; i < NUM_SESSIONS; i++) {
                finishAndClose(luo.retrieveSession("many-test-" + i));
            }
            finishAndClose(state);
        }
    }

    @Test
    void theTwoStageSelftestsAcrossOneKexec() throws Exception {
        final List<Selftest> tests = List.of(new Simple(), new MultiSession(), new StressFiles(), new StressSessions());
        final Path m = dir.resolve("machine");
        final Path sock = dir.resolve("k.sock");
        try (ChildJvm machine = ChildJvm.start(dir.resolve("machine.log"), MachineMain.class, m.toString())) {
            machine.awaitLine("machine ready");
            Files.writeString(m.resolve("boot").resolve("cmdline"), CMDLINE);
            final List<KernelClient> daemons = new ArrayList<>();
            try (ChildJvm kernel1 = ChildJvm.start(dir.resolve("kernel1.log"), Main.class, "kernel", m.toString(),
                    "--socket", sock.toString())) {
                kernel1.awaitLine("kernel ready " + sock + " cold");
                for (Selftest t : tests) {
                    // luo_test: one process per selftest, which finds itself in stage 1 and then holds its sessions.
                    final KernelClient c = KernelClient.connect(sock, m.resolve("memory"));
                    final LiveupdateHandle luo = LiveupdateHandle.open(c);
                    assertEquals(1, detectStage(luo, t.stateSession(), new SessionHandle[1]), t.stateSession());
                    t.stage1(c, luo);
                    luo.close(); // close(luo_fd); daemonize_and_wait()
                    daemons.add(c);
                }
                try (KernelClient root = KernelClient.connect(sock, m.resolve("memory"))) {
                    root.kexecLoad(CMDLINE);
                    root.rebootKexec(); // do_kexec.sh: no finalize step, the reboot freezes every session
                }
                assertEquals(0, kernel1.waitFor(60), kernel1.output());
                assertTrue(kernel1.output().contains("liveupdate: 2010 sessions"), kernel1.output());
            }
            try (Board board = Board.open(m)) {
                final var dts = Handovers.checkWithDtc(board);
                assertTrue(dts.get("LUO").contains("compatible = \"luo-v1\""), dts.get("LUO"));
                assertTrue(dts.get("LUO").contains("session-name = \"test-session\""), "the session is in the blob dtc reads");
            }
            try (ChildJvm kernel2 = ChildJvm.start(dir.resolve("kernel2.log"), Main.class, "kernel", m.toString(),
                    "--socket", sock.toString())) {
                kernel2.awaitLine("kernel ready " + sock + " live_update");
                for (Selftest t : tests) {
                    try (KernelClient c = KernelClient.connect(sock, m.resolve("memory"))) {
                        final LiveupdateHandle luo = LiveupdateHandle.open(c);
                        final SessionHandle[] state = new SessionHandle[1];
                        assertEquals(2, detectStage(luo, t.stateSession(), state), t.stateSession());
                        t.stage2(c, luo, state[0]);
                        luo.close();
                    }
                }
                try (KernelClient c = KernelClient.connect(sock, m.resolve("memory"))) {
                    assertEquals("1", c.readFile("/sys/kernel/liveupdate/finish").trim(),
                            "the last session's finish finished the live update");
                }
                kernel2.process().getOutputStream().close();
                assertEquals(0, kernel2.waitFor(30), kernel2.output());
                assertTrue(kernel2.output().contains("live update 1: 2010 sessions restored"), kernel2.output());
            }
            machine.process().getOutputStream().close();
            assertEquals(0, machine.waitFor(30), machine.output());
        }
    }
}
