package org.iopersist.kernel.liveupdate.kho;

/**
 * A user of KHO: at finalize it preserves its memory and hands over one blob, a flattened device
 * tree whose root {@code compatible} names its format and version ({@code "intel-iommu-v3"}, ...).
 */
public interface KhoSubsystem {
    /** Its node name under the KHO root; unique among subsystems. */
    String name();

    /**
     * Freezes the subsystem's preserved state, preserves its memory through {@code kho}, and returns
     * its blob, or null when it has nothing to hand over this time (no subtree is written). Throwing a {@link org.iopersist.kernel.KernelException} fails the whole finalize,
     * which then aborts every subsystem already serialized.
     */
    byte[] serialize(Kho kho);

    /** Finalize was aborted (or failed): unfreeze. Never fails. */
    void abort();
}
