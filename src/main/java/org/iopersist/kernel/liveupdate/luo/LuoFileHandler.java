package org.iopersist.kernel.liveupdate.luo;

import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;

/**
 * A file type the orchestrator can preserve: Linux's {@code struct liveupdate_file_handler} with
 * its {@code liveupdate_file_ops}, split into the two halves a boot sees.
 *
 * <pre>
 *  this boot   can_preserve ─► preserve (PRESERVE_FD, the workload still runs) ─► unpreserve (session closed)
 *              freeze + serialize (reboot(KEXEC), or the RFC's finalize) ─► unfreeze (finalize undone)
 *  next boot   validate (memory only, before the allocator opens) ─► adopt (kernel-held object)
 *              ─► retrieve (RETRIEVE_FD, any order, once: a failure is permanent) ─► can_finish ─► finish
 * </pre>
 *
 * A file handler is one subsystem's part of the live-update contract ({@code LiveUpdateHandler}),
 * reached through sessions instead of the RFC's global registry: its {@code validate} runs inside
 * the orchestrator's, and a throw there makes the whole boot cold, as any handler's does.
 */
public interface LuoFileHandler {
    /** Longest compatible string, its NUL included ({@code LIVEUPDATE_HNDL_COMPAT_LENGTH}). */
    int COMPAT_LENGTH = 48;

    /** The handler's compatible string, in every record it writes ({@code "memfd-v2"}). */
    String compatible();

    /** can_preserve: whether this handler takes {@code file}; cheap, no side effect. */
    boolean canPreserve(KernelFile file);

    /**
     * preserve: checks {@code file} and preserves what it needs (memory through KHO), while the
     * workload runs. {@code session} answers which other files it already holds, by token.
     *
     * @throws org.iopersist.kernel.KernelException with the errno PRESERVE_FD answers; nothing stays preserved
     */
    Preserved preserve(OpenFile file, long token, LuoSession session);

    /**
     * validate, on the next boot: this handler's record (node {@code node} of {@code blob}), read
     * from memory only, against the machine and the plans of the files before it in its session.
     *
     * @throws HandoverFormatException anything that must not be restored: the boot goes cold
     */
    Restorable validate(FdtReader blob, int node, LuoSession session, IncomingHandover in) throws HandoverFormatException;

    /** One preserved file of this boot. */
    interface Preserved {
        /** freeze, inside the reboot: the last chance to refresh state; a throw fails the reboot. */
        default void freeze() {
        }

        /** unfreeze: a later file's freeze failed, or the finalize was undone. Never fails. */
        default void unfreeze() {
        }

        /** Writes this file's properties into its node of the LUO blob, after {@link #freeze}. */
        void serialize(FdtWriter node);

        /** unpreserve: the session was closed before the kexec; undo {@code preserve}. Never fails. */
        void unpreserve();
    }

    /** One file the previous kernel preserved, validated. */
    interface Restorable {
        /** adopt: every preserved frame is reserved; claim this file's and build the kernel-held object. */
        void adopt(IncomingHandover in);

        /**
         * retrieve: a new open file over the restored object, its one reference the orchestrator's
         * (it holds it until finish and gives each caller another).
         *
         * @throws org.iopersist.kernel.KernelException the errno RETRIEVE_FD answers, now and every later time
         */
        OpenFile retrieve(UserProcess caller);

        /** can_finish: whether the session may finish now ({@code retrieved}: whether retrieve succeeded). */
        default boolean canFinish(final boolean retrieved) {
            return true;
        }

        /**
         * finish: the orchestrator lets go. A file never retrieved is freed (its memory, its devices
         * blocked); a retrieved one lives on with its users. Never fails.
         */
        void finish(boolean retrieved);

        /**
         * The next live update froze while this file's session was still unfinished: what it still
         * asks the hardware to keep (domains, devices) is not handed over again, as Linux resets
         * such files at the next live update.
         */
        default void dropped() {
        }
    }
}
