package org.iopersist.kernel.iommu;

import java.util.List;

/** A domain a driver re-hydrated from a handover, and the devices already translating through it. */
public record RestoredDomain(DomainOps ops, int flags, List<IommuDevice> devices) {
    public RestoredDomain {
        devices = List.copyOf(devices);
    }
}
