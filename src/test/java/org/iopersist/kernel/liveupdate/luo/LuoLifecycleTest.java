package org.iopersist.kernel.liveupdate.luo;

import static org.iopersist.kernel.liveupdate.luo.LuoTestUtils.createAndPreserveMemfd;
import static org.iopersist.kernel.liveupdate.luo.LuoTestUtils.restoreAndVerifyMemfd;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.fs.DevNull;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The session lifecycle across kexecs in one JVM (the kernels are booted from the board alone; the
 * users are processes on the syscall socket): a session closed before the kexec is unpreserved;
 * reboot(KEXEC) is the freeze point, and a failed freeze fails the reboot; a failed retrieve stays
 * failed; sessions nobody retrieves are freed at finish; the last finish finishes the update.
 */
class LuoLifecycleTest {
    private static final String CMDLINE = "liveupdate.finish_timeout=0";

    @TempDir
    Path dir;
    /** The machine and kernel A, as {@link #bootKernelA} left them. */
    private KernelRig rig;
    private Kernel a;
    /** A process of kernel A, and its /dev/liveupdate. */
    private KernelClient vmm;
    private LiveupdateHandle luo;

    /** A module's handler for /dev/null: freeze fails on demand, retrieve always fails (ENODEV). */
    static final class NullHandler implements LuoFileHandler {
        final AtomicBoolean failFreeze = new AtomicBoolean();
        final AtomicInteger retrieves = new AtomicInteger();
        final AtomicInteger unfreezes = new AtomicInteger();

        @Override
        public String compatible() {
            return "test-null-v1";
        }

        @Override
        public boolean canPreserve(final KernelFile file) {
            return file instanceof DevNull;
        }

        @Override
        public Preserved preserve(final OpenFile file, final long token, final LuoSession session) {
            return new Preserved() {
                @Override
                public void freeze() {
                    if (failFreeze.get()) {
                        throw new KernelException(Errno.EAGAIN, "test freeze failure");
                    }
                }

                @Override
                public void unfreeze() {
                    unfreezes.incrementAndGet();
                }

                @Override
                public void serialize(final FdtWriter node) {
                }

                @Override
                public void unpreserve() {
                }
            };
        }

        @Override
        public Restorable validate(final FdtReader blob, final int node, final LuoSession session, final IncomingHandover in) {
            return new Restorable() {
                @Override
                public void adopt(final IncomingHandover handover) {
                }

                @Override
                public OpenFile retrieve(final UserProcess caller) {
                    retrieves.incrementAndGet();
                    throw new KernelException(Errno.ENODEV, "the test device went away");
                }

                @Override
                public void finish(final boolean retrieved) {
                }
            };
        }
    }

    /** Kernel A on a fresh machine, with the file handlers of {@code modules}; the VMM connects and opens /dev/liveupdate. */
    private void bootKernelA(final List<Function<Luo, LuoFileHandler>> modules) throws Exception {
        rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small(), CMDLINE, modules);
        a = rig.kernel;
        vmm = rig.connect(a);
        luo = LiveupdateHandle.open(vmm);
    }

    @AfterEach
    void powerOff() {
        if (rig != null) {
            rig.close();
        }
    }

    /** kexec_load and reboot(KEXEC) from a root process of kernel A, then the next kernel boots from the board alone. */
    private Kernel kexec(final List<Function<Luo, LuoFileHandler>> modules) throws Exception {
        try (KernelClient root = rig.connect(a)) {
            root.kexecLoad(CMDLINE);
            root.rebootKexec();
        }
        Handovers.checkIfHandedOver(rig.machine.board());
        return rig.bootNext(modules);
    }

    private static int errno(final Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    @Test
    void aSessionClosedBeforeTheKexecIsUnpreserved() throws Exception {
        bootKernelA(List.of());
        final SessionHandle kept = luo.createSession("kept");
        createAndPreserveMemfd(vmm, kept, 1, "kept data");
        final SessionHandle closed = luo.createSession("closed");
        final int big = vmm.memfdCreate("big");
        vmm.ftruncate(big, 64 * LuoTestUtils.PAGE);
        closed.preserveFd(big, 2);
        final long preserved = a.liveUpdate().kho().preservedFrames();
        closed.close();
        assertEquals(preserved - 64, a.liveUpdate().kho().preservedFrames(), "closing the session unpreserved its memfd");
        vmm.ftruncate(big, 0); // no longer frozen: it is the process's plain memfd again
        final Kernel b = kexec(List.of());
        assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
        assertEquals(List.of("kept"), b.luo().incomingSessions());
        try (KernelClient v2 = rig.connect(b)) {
            final LiveupdateHandle luo2 = LiveupdateHandle.open(v2);
            assertEquals(Errno.ENOENT.number, errno(() -> luo2.retrieveSession("closed")));
            final SessionHandle s = luo2.retrieveSession("kept");
            assertEquals(Errno.EINVAL.number, errno(() -> luo2.retrieveSession("kept")), "retrieved once");
            assertEquals("kept", s.name(), "GET_NAME works on both kinds of session");
            assertEquals(Errno.EINVAL.number, errno(() -> s.preserveFd(v2.memfdCreate("x"), 9)),
                    "PRESERVE_FD is for outgoing sessions");
            v2.close(restoreAndVerifyMemfd(v2, s, 1, "kept data"));
            assertEquals(Errno.ENOENT.number, errno(() -> s.retrieveFd(2)), "the closed session's token is nowhere");
            s.finish();
            assertEquals(Errno.ENOENT.number, errno(() -> s.retrieveFd(1)), "finished: its files are gone");
            s.close();
            assertEquals(Errno.ENOENT.number, errno(() -> luo2.retrieveSession("kept")), "closed: the session is gone");
        }
        assertTrue(b.liveUpdate().incoming().finished(), "the last session's finish finished the update");
        rig.server(b).close();
    }

    @Test
    void rebootIsTheFreezePointAndAFailedFreezeFailsIt() throws Exception {
        final NullHandler h = new NullHandler();
        bootKernelA(List.of(luo -> h));
        final SessionHandle s = luo.createSession("vm");
        createAndPreserveMemfd(vmm, s, 1, "ram");
        s.preserveFd(vmm.open(DevNull.PATH, Syscall.O_RDWR), 2);
        h.failFreeze.set(true);
        vmm.kexecLoad(CMDLINE);
        assertEquals(Errno.EAGAIN.number, errno(vmm::rebootKexec), "the freeze failure is the reboot's answer");
        assertEquals(0, h.unfreezes.get(), "the file whose freeze failed is not unfrozen (the memfd before it is)");
        assertFalse(a.liveUpdate().finalized(), "the kernel goes on, nothing frozen");
        createAndPreserveMemfd(vmm, s, 3, "after");
        h.failFreeze.set(false);
        final Kernel b = kexec(List.of(luo2 -> h));
        assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
        try (KernelClient v2 = rig.connect(b)) {
            final SessionHandle r = LiveupdateHandle.open(v2).retrieveSession("vm");
            v2.close(restoreAndVerifyMemfd(v2, r, 3, "after"));
            assertEquals(Errno.ENODEV.number, errno(() -> r.retrieveFd(2)));
            assertEquals(Errno.ENODEV.number, errno(() -> r.retrieveFd(2)), "a failed retrieve fails again");
            assertEquals(1, h.retrieves.get(), "without calling the handler again");
            r.finish();
        }
        rig.server(b).close();
    }

    @Test
    void sessionsNobodyRetrievesAreFreedAtFinish() throws Exception {
        bootKernelA(List.of());
        createAndPreserveMemfd(vmm, luo.createSession("taken"), 1, "taken");
        final SessionHandle left = luo.createSession("left");
        final int big = vmm.memfdCreate("big");
        vmm.ftruncate(big, 256 * LuoTestUtils.PAGE);
        left.preserveFd(big, 7);
        vmm.close(big);
        final Kernel b = kexec(List.of());
        try (KernelClient v2 = rig.connect(b)) {
            final SessionHandle t = LiveupdateHandle.open(v2).retrieveSession("taken");
            v2.close(restoreAndVerifyMemfd(v2, t, 1, "taken"));
            t.finish();
            assertFalse(b.liveUpdate().incoming().finished(), "'left' is still pending");
            final long free = b.frames().stats().freeFrames();
            v2.writeFile("/sys/kernel/liveupdate/finish", "1");
            assertEquals(List.of("taken"), b.luo().incomingSessions(), "finish freed the session nobody retrieved");
            assertTrue(b.frames().stats().freeFrames() >= free + 256, "its memfd's frames are free again");
            t.close();
        }
        rig.server(b).close();
    }

    @Test
    void closingASessionAfterAFinalizeUndoesTheFinalize() throws Exception {
        bootKernelA(List.of());
        final SessionHandle s = luo.createSession("vm");
        createAndPreserveMemfd(vmm, s, 1, "ram");
        vmm.writeFile("/sys/kernel/kho/finalize", "1"); // the RFC's finalize freezes the sessions too
        assertEquals(Errno.EBUSY.number, errno(() -> luo.createSession("late")), "frozen");
        assertEquals(Errno.EBUSY.number, errno(() -> createAndPreserveMemfd(vmm, s, 2, "late")), "frozen");
        s.close();
        assertFalse(a.liveUpdate().finalized(), "the handover named the session: the finalize is undone");
        assertEquals(List.of(), a.luo().outgoingSessions());
        vmm.close();
        rig.server(a).close();
    }
}
