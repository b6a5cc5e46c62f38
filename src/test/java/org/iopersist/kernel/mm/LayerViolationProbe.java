package org.iopersist.kernel.mm;

import org.iopersist.kernel.iommufd.IommufdCtx;

/** A wrong import on purpose: ArchitectureTest checks that its layer rule rejects it. */
public final class LayerViolationProbe {
    private LayerViolationProbe() {
    }

    static Class<?> upward() {
        return IommufdCtx.class;
    }
}
