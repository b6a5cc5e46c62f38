package org.iopersist.kernel.liveupdate;

import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.KhoSubsystem;

/**
 * One preserving subsystem's part in a live update (VT-d, guestmemfs, iommufd). The subsystem
 * supplies the steps; {@link LiveUpdate} (outgoing) and {@link IncomingBoot} (incoming) alone decide
 * when they run, in the order the handlers were registered, which is their dependency order.
 *
 * <pre>
 *  this boot   serialize (at freeze) ──► abort (unfreeze) │ shutdown (at kexec)
 *  next boot   validate (reads memory only) ──► [core reserves every preserved frame] ──► adopt
 *              ... finish (the preserved state nobody took is dropped)
 * </pre>
 *
 * A {@code validate} that throws means a cold boot: no handler adopts anything. {@code adopt}
 * applies a validated plan and does not fail; a failure there is a bug, not a bad handover.
 * This is Linux's LUO file-handler shape ({@code preserve/freeze/retrieve/finish}) with the
 * review's "validate, then adopt" split of retrieve.
 *
 * @param <P> what validate learned and adopt applies
 */
public interface LiveUpdateHandler<P> extends KhoSubsystem {
    /**
     * Checks this subsystem's part of the handover against the machine and the plans of the
     * handlers before it, reading memory only.
     *
     * @throws HandoverFormatException for anything that must not be adopted (the boot goes cold)
     */
    P validate(IncomingHandover in) throws HandoverFormatException;

    /** Applies {@code plan}; every preserved frame is reserved by now, and nothing has been allocated. */
    void adopt(P plan, IncomingHandover in);

    /**
     * At kexec, after the boot record is written: quiesce what is not handed over.
     *
     * @param handedOver whether a finalized handover goes to the next kernel
     */
    default void shutdown(final boolean handedOver) {
    }

    /** The incoming handover finished: drop what was restored and nobody took. Never fails. */
    default void finish() {
    }

    /**
     * Whether this handler has something to hand over without an explicit finalize (LUO's
     * sessions): {@code reboot(KEXEC)} then finalizes by itself, as {@code liveupdate_reboot} does.
     */
    default boolean wantsHandover() {
        return false;
    }

    /**
     * Whether restored state still waits for its owner (a context not reopened, a session not
     * finished): {@link LiveUpdate#finishIfIdle} finishes only when no handler is pending.
     */
    default boolean pending() {
        return false;
    }

    /** A finalize is about to serialize every handler: runs for all of them before the first serialize. */
    default void beforeFreeze() {
    }

    /** The core this handler reports to, given at registration (a handler may ask it to finish or abort). */
    default void bind(final LiveUpdate core) {
    }
}
