package org.iopersist.kernel.kho;

/**
 * A flattened device tree that does not validate. Checked on purpose: a handover comes from a
 * previous kernel, and a caller must decide what a bad one means (a cold boot), not crash on it.
 */
public final class FdtFormatException extends Exception {
    private static final long serialVersionUID = 1L;

    public FdtFormatException(final String message) {
        super(message);
    }
}
