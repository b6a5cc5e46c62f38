package org.iopersist.kernel.iommufd;

/**
 * The kernel's persistent iommufd contexts, as the RFC's global {@code persistent_iommufds}: what a
 * context asks of the live-update side. Implemented by
 * {@code org.iopersist.kernel.iommufd.persist.PersistentContexts}; iommufd itself never imports the
 * persistence package, so the dependency runs one way.
 */
public interface PersistentIommufds {
    /** Gives {@code ctx} a persistent id, unique across the kernel; released by {@link #unregister}. */
    int register(IommufdCtx ctx);

    /** The context with persistent {@code id} is gone: its id is free, its sysfs directory goes. */
    void unregister(int id, IommufdCtx ctx);

    /** True while a live update is finalized: the handover describes every persistent context as it is. */
    boolean frozen();

    /** A persistent context is losing state the handover describes: undo the finalize first. */
    void abortFinalize(String why);

    /** Every device restored into {@code ctx} is bound again by its VMM: the deferred checks may run now. */
    void devicesRebound(IommufdCtx ctx);
}
