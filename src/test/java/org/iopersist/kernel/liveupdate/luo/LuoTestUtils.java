package org.iopersist.kernel.liveupdate.luo;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;

/**
 * {@code tools/testing/selftests/liveupdate/luo_test_utils.c} for a process of the model: the same
 * helpers with the same steps (memfd_create, ftruncate a page, write through a shared mapping,
 * preserve, close; retrieve, map, compare), so a ported test reads as the selftest does.
 */
final class LuoTestUtils {
    static final long PAGE = 4096;

    private LuoTestUtils() {
    }

    /** create_and_preserve_memfd: a one-page memfd holding {@code data} (NUL-terminated), preserved under {@code token}, then closed. */
    static void createAndPreserveMemfd(final KernelClient c, final SessionHandle session, final long token, final String data) {
        final int mfd = c.memfdCreate("test_mfd");
        try {
            c.ftruncate(mfd, PAGE);
            final long map = c.mmap(0, PAGE, Syscall.PROT_WRITE, Syscall.MAP_SHARED, mfd, 0);
            c.memory().writeBytes(map, (data + "\0").getBytes(StandardCharsets.UTF_8));
            c.munmap(map, PAGE);
            session.preserveFd(mfd, token);
        } finally {
            c.close(mfd);
        }
    }

    /**
     * restore_and_verify_memfd: the memfd under {@code token}, mapped and compared as a C string to
     * {@code expected} (null: not compared); returns its fd.
     */
    static int restoreAndVerifyMemfd(final KernelClient c, final SessionHandle session, final long token, final String expected) {
        final int mfd = session.retrieveFd(token);
        final long map = c.mmap(0, PAGE, Syscall.PROT_READ, Syscall.MAP_SHARED, mfd, 0);
        try {
            final String got = cString(c.memory().readBytes(map, (int) PAGE));
            if (expected != null && !expected.equals(got)) {
                throw new AssertionError("Data mismatch! Expected '" + expected + "', Got '" + got + "'");
            }
        } finally {
            c.munmap(map, PAGE);
        }
        return mfd;
    }

    static String cString(final byte[] b) {
        int n = 0;
        while (n < b.length && b[n] != 0) {
            n++;
        }
        return new String(b, 0, n, StandardCharsets.UTF_8);
    }

    /** create_state_file: a session holding the next stage's number in a memfd; the session stays open. */
    static SessionHandle createStateFile(final KernelClient c, final LiveupdateHandle luo, final String name, final long token,
            final int nextStage) {
        final SessionHandle s = luo.createSession(name);
        createAndPreserveMemfd(c, s, token, Integer.toString(nextStage));
        return s; // DO NOT close: it would be unpreserved
    }

    /** restore_and_read_stage: the stage number from the state session. */
    static int restoreAndReadStage(final KernelClient c, final SessionHandle state, final long token) {
        final int mfd = restoreAndVerifyMemfd(c, state, token, null);
        try {
            return Integer.parseInt(cString(Arrays.copyOf(c.read(mfd, 31), 32)));
        } finally {
            c.close(mfd);
        }
    }

    /** luo_test's stage detection: 2 if the state session came through, 1 if it does not exist (ENOENT). */
    static int detectStage(final LiveupdateHandle luo, final String stateSession, final SessionHandle[] stateOut) {
        try {
            stateOut[0] = luo.retrieveSession(stateSession);
            return 2;
        } catch (ErrnoException e) {
            if (e.errno() == org.iopersist.uapi.Errno.ENOENT.number) {
                return 1;
            }
            throw e;
        }
    }
}
