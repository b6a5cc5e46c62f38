package org.iopersist.kernel.iommu;

import java.util.List;
import org.iopersist.kernel.mm.FrameSource;

/**
 * The interface between the iommu core and a hardware driver (Linux's {@code iommu_ops}). VT-d
 * implements it in {@code kernel.iommu.intel}; AMD-Vi or SMMUv3 would implement it the same way.
 */
public interface IommuDriver {
    String name();

    /** The devices behind this driver's units, in BDF order. */
    List<IommuDevice> devices();

    /**
     * Brings every unit up with translation on and every device blocked. Runs before the frame
     * allocator opens, so it allocates from {@code early} only; old DMA may still be in flight.
     */
    void init(FrameSource early);

    /** After the allocator opened: moves what {@link #init} placed in early memory to normal frames. */
    void lateInit();

    /** A paging domain usable by {@code dev}'s unit; {@code flags} as in {@link IommuDomain}. */
    DomainOps allocPaging(IommuDevice dev, int flags);

    /**
     * ops->domain_alloc_user: a paging domain with the uAPI's IOMMU_HWPT_ALLOC_* {@code hwptFlags}
     * (dirty tracking, nest parent). A driver that takes no flags answers EOPNOTSUPP for any.
     */
    default DomainOps allocUser(final IommuDevice dev, final int hwptFlags) {
        if (hwptFlags != 0) {
            throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EOPNOTSUPP,
                    name() + ": HWPT_ALLOC flags 0x" + Integer.toHexString(hwptFlags));
        }
        return allocPaging(dev, 0);
    }

    /**
     * Points {@code dev} at {@code domainOrNull} (null blocks it), invalidating what the old
     * setting left in the unit's caches before the new one is published.
     */
    void setDomain(IommuDevice dev, DomainOps domainOrNull);

    /**
     * LUO preserves {@code domain} (on) or stops (off): its tables go into the next handover, and
     * only the devices {@link #setDevicePreserved} names keep translating through it at the kexec.
     */
    default void setDomainPreserved(final DomainOps domain, final boolean on) {
        throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EOPNOTSUPP, name() + " cannot preserve a domain");
    }

    /** LUO preserves {@code dev} (on) or stops (off): with its domain preserved, it keeps translating at the kexec. */
    default void setDevicePreserved(final IommuDevice dev, final boolean on) {
        throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EOPNOTSUPP, name() + " cannot preserve a device");
    }

    /** IOMMU_GET_HW_INFO's answer for {@code dev}. */
    HwInfo hwInfo(IommuDevice dev);

    /** What {@link #validateHandover} found, for {@link #adopt}; opaque to the core. */
    interface HandoverPlan {
        /** The persistent domains it will restore, by handover key, with the devices each serves. */
        java.util.Map<Long, java.util.Set<IommuDevice>> domains();

        /** The last IOVA each of those domains translates, by handover key. */
        java.util.Map<Long, Long> apertures();
    }

    /**
     * On a live-update boot, before anything is adopted anywhere: checks the driver's handover
     * against the hardware and memory. Reads only; a {@link org.iopersist.kernel.liveupdate.kho.HandoverFormatException}
     * means the kernel cold-boots.
     */
    HandoverPlan validateHandover(org.iopersist.kernel.liveupdate.kho.KhoIncoming incoming)
            throws org.iopersist.kernel.liveupdate.kho.HandoverFormatException;

    /**
     * Instead of {@link #init}, once every subsystem validated: claims the preserved frames, adopts
     * the live tables and returns the persistent domains with the devices translating through them.
     */
    List<RestoredDomain> adopt(HandoverPlan plan);
}
