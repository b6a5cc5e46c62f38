package org.iopersist.kernel.liveupdate.kho;

/**
 * A handover structure (a flattened device tree, the preserved-memory tracker, a subsystem's
 * records) that does not validate. Checked on purpose: a handover comes from a
 * previous kernel, and a caller must decide what a bad one means (a cold boot), not crash on it.
 */
public final class HandoverFormatException extends Exception {
    private static final long serialVersionUID = 1L;

    public HandoverFormatException(final String message) {
        super(message);
    }
}
