package org.iopersist.kernel.liveupdate.luo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Liveupdate;
import org.iopersist.uapi.LiveupdateIoctlSession;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code tools/testing/selftests/liveupdate/liveupdate.c}, every case, against a kernel of the
 * model: each test is a process on the kernel's syscall socket doing what the C test does, with the
 * same names, tokens, data and expected errno. Cases the selftest does not have but the uAPI needs
 * (root only, the dispatchers' errno order) are at the end.
 */
class LiveupdateSelftestTest {
    private static final String CMDLINE = "liveupdate.finish_timeout=0";

    @TempDir
    Path dir;
    private KernelRig rig;
    private SyscallServer server;
    private KernelClient c;

    @BeforeEach
    void boot() throws Exception {
        rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small(), CMDLINE);
        server = rig.kernel.serve(dir.resolve("k.sock"));
        c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
    }

    @AfterEach
    void shutdown() {
        c.close();
        server.close();
        rig.close();
    }

    private static int errno(final Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    private static int errno(final long ret) {
        assertTrue(ret < 0, "expected an error, got " + ret);
        return (int) -ret;
    }

    /** create_session: the raw ioctl, as the selftest's helper (strncpy of at most 63 bytes). */
    private int createSession(final int luoFd, final String name) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) (LiveupdateIoctlSession.SIZE / 8)]);
        Liveupdate.size(s, (int) LiveupdateIoctlSession.SIZE);
        LiveupdateIoctlSession.name(s, name.length() > 63 ? name.substring(0, 63) : name);
        final long ret = c.ioctl(luoFd, Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION, s);
        return ret < 0 ? (int) ret : LiveupdateIoctlSession.fd(s);
    }

    @Test
    void basicOpenClose() {
        final int fd = c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR);
        assertTrue(fd >= 0);
        c.close(fd);
    }

    @Test
    void exclusiveOpen() {
        final int fd1 = c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR);
        assertEquals(Errno.EBUSY.number, errno(() -> c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR)));
        c.close(fd1);
        c.close(c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR)); // the first close lets the next open in
    }

    @Test
    void createDuplicateSession() {
        final int fd1 = c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR);
        final int s1 = createSession(fd1, "duplicate-session-test");
        assertTrue(s1 >= 0);
        assertEquals(-Errno.EEXIST.number, createSession(fd1, "duplicate-session-test"));
        c.close(s1);
    }

    @Test
    void createDistinctSessions() {
        final int fd1 = c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR);
        final int s1 = createSession(fd1, "distinct-session-1");
        final int s2 = createSession(fd1, "distinct-session-2");
        assertTrue(s1 >= 0 && s2 >= 0);
        c.close(s1);
        c.close(s2);
    }

    private void writeString(final int fd, final String s) {
        assertEquals(s.length(), c.write(fd, s.getBytes(StandardCharsets.UTF_8)));
    }

    private String readAll(final int fd) {
        c.lseek(fd, 0, 0);
        return new String(c.read(fd, 64), StandardCharsets.UTF_8);
    }

    @Test
    void preserveMemfd() {
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle session = luo.createSession("preserve-memfd-test");
            final int memFd = c.memfdCreate("test-memfd");
            writeString(memFd, "hello liveupdate");
            session.preserveFd(memFd, 0x1234);
            session.close();
            assertEquals("hello liveupdate", readAll(memFd));
            c.close(memFd);
        }
    }

    @Test
    void preserveMultipleMemfds() {
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle session = luo.createSession("preserve-multi-memfd-test");
            final int m1 = c.memfdCreate("test-memfd-1");
            final int m2 = c.memfdCreate("test-memfd-2");
            writeString(m1, "data for memfd one");
            writeString(m2, "data for memfd two");
            session.preserveFd(m1, 0xAAAA);
            session.preserveFd(m2, 0xBBBB);
            assertEquals("data for memfd one", readAll(m1));
            assertEquals("data for memfd two", readAll(m2));
            c.close(m1);
            c.close(m2);
            session.close();
        }
    }

    @Test
    void preserveComplexScenario() {
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle s1 = luo.createSession("complex-session-1");
            final SessionHandle s2 = luo.createSession("complex-session-2");
            final int data1 = c.memfdCreate("data1");
            writeString(data1, "data for session 1");
            final int empty1 = c.memfdCreate("empty1");
            final int data2 = c.memfdCreate("data2");
            writeString(data2, "data for session 2");
            final int empty2 = c.memfdCreate("empty2");
            s1.preserveFd(data1, 0x1111);
            s1.preserveFd(empty1, 0x2222);
            s2.preserveFd(data2, 0x3333);
            s2.preserveFd(empty2, 0x4444);
            assertEquals("data for session 1", readAll(data1));
            assertEquals("data for session 2", readAll(data2));
            assertEquals("", readAll(empty1));
            assertEquals("", readAll(empty2));
            for (int fd : new int[] {data1, empty1, data2, empty2}) {
                c.close(fd);
            }
            s1.close();
            s2.close();
        }
    }

    @Test
    void preserveUnsupportedFd() {
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle session = luo.createSession("unsupported-fd-test");
            final int unsupported = c.open("/dev/null", Syscall.O_RDWR);
            assertEquals(Errno.ENOENT.number, errno(() -> session.preserveFd(unsupported, 0xDEAD)));
            c.close(unsupported);
            session.close();
        }
    }

    @Test
    void preventDoublePreservation() {
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle s1 = luo.createSession("double-preserve-session-1");
            final SessionHandle s2 = luo.createSession("double-preserve-session-2");
            final int memFd = c.memfdCreate("test-memfd");
            s1.preserveFd(memFd, 0x1111);
            assertEquals(Errno.EBUSY.number, errno(() -> s2.preserveFd(memFd, 0x2222)), "in a different session");
            assertEquals(Errno.EBUSY.number, errno(() -> s1.preserveFd(memFd, 0x3333)), "in the same session");
            c.close(memFd);
            s1.close();
            s2.close();
        }
    }

    @Test
    void createSessionNoNullTermination() {
        final int fd1 = c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR);
        final MemorySegment s = MemorySegment.ofArray(new long[(int) (LiveupdateIoctlSession.SIZE / 8)]);
        Liveupdate.size(s, (int) LiveupdateIoctlSession.SIZE);
        s.asSlice(LiveupdateIoctlSession.NAME_OFFSET, Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH).fill((byte) 'X');
        assertEquals(Errno.EINVAL.number, errno(c.ioctl(fd1, Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION, s)));
    }

    @Test
    void createSessionEmptyName() {
        final int fd1 = c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR);
        assertEquals(-Errno.EINVAL.number, createSession(fd1, ""));
    }

    @Test
    void getSessionName() {
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle s = luo.createSession("get-name-test-session");
            assertEquals("get-name-test-session", s.name());
            s.close();
        }
    }

    @Test
    void getSessionNameMaxLength() {
        final String longName = "A".repeat(Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH - 1);
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle s = luo.createSession(longName);
            assertEquals(longName, s.name());
            s.close();
        }
    }

    /** luo_ensure_nofile_limit: raise RLIMIT_NOFILE past what the test opens. */
    private void ensureNofileLimit(final int want) {
        c.setNofileLimit(want + 16, Math.max(want + 16, 4096));
    }

    @Test
    void preserveManySessions() {
        final int many = 2000;
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            ensureNofileLimit(many);
            final SessionHandle[] fds = new SessionHandle[many];
            for (int i = 0; i < many; i++) {
                fds[i] = luo.createSession("many-session-" + i);
            }
            for (SessionHandle s : fds) {
                s.close();
            }
            assertEquals(0, rig.kernel.luo().outgoingSessions().size());
        }
    }

    @Test
    void preserveManyFiles() {
        final int many = 500;
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle session = luo.createSession("many-files-test");
            ensureNofileLimit(many + 10);
            final int[] fds = new int[many];
            for (int i = 0; i < many; i++) {
                fds[i] = c.memfdCreate("test-memfd");
                session.preserveFd(fds[i], i);
            }
            for (int fd : fds) {
                c.close(fd);
            }
            session.close();
        }
    }

    // ------------------------------------------------------------------ beyond the selftest

    @Test
    void onlyRootOpensTheDevice() {
        final UserProcess user = server.newProcess(1000, 1000);
        final byte[] path = (Liveupdate.DEV_PATH + "\0").getBytes(StandardCharsets.UTF_8);
        user.mm().copyToUser(user.stackVa(), MemorySegment.ofArray(path), 0, path.length);
        assertEquals(Errno.EACCES.number, errno(rig.kernel.syscalls().call(user, Syscall.OPEN, user.stackVa(), Syscall.O_RDWR,
                0, 0, 0, 0)));
    }

    @Test
    void theDispatchersCheckInLinuxsOrder() {
        final int luoFd = c.open(Liveupdate.DEV_PATH, Syscall.O_RDWR);
        final MemorySegment s = MemorySegment.ofArray(new long[(int) (LiveupdateIoctlSession.SIZE / 8) + 2]);
        Liveupdate.size(s, (int) LiveupdateIoctlSession.SIZE);
        LiveupdateIoctlSession.name(s, "order");
        // A number past the device's table: EINVAL, before the size is even read.
        assertEquals(Errno.EINVAL.number, errno(c.syscall(Syscall.IOCTL, luoFd, Liveupdate.io(0x02), 0)));
        assertEquals(Errno.EFAULT.number, errno(c.syscall(Syscall.IOCTL, luoFd, Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION, 0)));
        // The right number with another type: ENOIOCTLCMD, which userspace sees as ENOTTY.
        assertEquals(Errno.ENOTTY.number, errno(c.ioctl(luoFd, (0x3b << 8), s)));
        Liveupdate.size(s, (int) LiveupdateIoctlSession.SIZE - 1);
        assertEquals(Errno.EINVAL.number, errno(c.ioctl(luoFd, Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION, s)), "short size");
        Liveupdate.size(s, (int) LiveupdateIoctlSession.SIZE + 16);
        s.set(java.lang.foreign.ValueLayout.JAVA_BYTE, LiveupdateIoctlSession.SIZE + 3, (byte) 1);
        assertEquals(Errno.E2BIG.number, errno(c.ioctl(luoFd, Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION, s)), "dirty tail");
        s.set(java.lang.foreign.ValueLayout.JAVA_BYTE, LiveupdateIoctlSession.SIZE + 3, (byte) 0);
        assertEquals(0, c.ioctl(luoFd, Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION, s), "a longer struct with a zero tail");
        final int sessionFd = LiveupdateIoctlSession.fd(s);
        // No incoming session on a cold boot.
        LiveupdateIoctlSession.name(s, "order");
        assertEquals(Errno.ENOENT.number, errno(c.ioctl(luoFd, Liveupdate.LIVEUPDATE_IOCTL_RETRIEVE_SESSION, s)));

        final SessionHandle session = SessionHandle.of(c, sessionFd);
        final MemorySegment f = MemorySegment.ofArray(new long[2]);
        Liveupdate.size(f, 16);
        assertEquals(Errno.EINVAL.number, errno(c.ioctl(sessionFd, Liveupdate.io(0x3f), f)), "below the session base");
        assertEquals(Errno.EINVAL.number, errno(c.ioctl(sessionFd, Liveupdate.io(0x44), f)), "past the table");
        assertEquals(Errno.EINVAL.number, errno(c.ioctl(sessionFd, Liveupdate.LIVEUPDATE_SESSION_RETRIEVE_FD, f)),
                "RETRIEVE_FD is for incoming sessions");
        assertEquals(Errno.EINVAL.number, errno(c.ioctl(sessionFd, Liveupdate.LIVEUPDATE_SESSION_FINISH, f)),
                "FINISH is for incoming sessions");
        org.iopersist.uapi.LiveupdateSessionFd.fd(f, 77);
        assertEquals(Errno.EBADF.number, errno(c.ioctl(sessionFd, Liveupdate.LIVEUPDATE_SESSION_PRESERVE_FD, f)));
        final int m = c.memfdCreate("m");
        session.preserveFd(m, 5);
        assertEquals(Errno.EEXIST.number, errno(() -> session.preserveFd(m, 5)), "the token first, then the file");
        final MemorySegment n = MemorySegment.ofArray(new long[9]);
        Liveupdate.size(n, 72);
        n.set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED, 4, 1);
        assertEquals(Errno.EINVAL.number, errno(c.ioctl(sessionFd, Liveupdate.LIVEUPDATE_SESSION_GET_NAME, n)), "reserved");
        session.close();
    }

    @Test
    void closingTheSessionHandsThePreservedFramesBack() {
        final long before = rig.kernel.liveUpdate().kho().preservedFrames();
        try (LiveupdateHandle luo = LiveupdateHandle.open(c)) {
            final SessionHandle session = luo.createSession("frames");
            final int m = c.memfdCreate("m");
            c.ftruncate(m, 16 * LuoTestUtils.PAGE);
            session.preserveFd(m, 1);
            assertEquals(before + 16, rig.kernel.liveUpdate().kho().preservedFrames(), "every page preserved in place at once");
            assertEquals(Errno.EPERM.number, errno(() -> c.ftruncate(m, 0)), "its size is frozen while preserved");
            c.close(m);
            session.close();
            assertEquals(before, rig.kernel.liveUpdate().kho().preservedFrames(), "unpreserved with the session");
            // Without the session, the memfd's last user was the session: its frames are free again.
        }
    }
}
