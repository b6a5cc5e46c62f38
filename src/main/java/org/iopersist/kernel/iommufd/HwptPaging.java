package org.iopersist.kernel.iommufd;

import java.util.List;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDomain;

/**
 * IOMMUFD_OBJ_HWPT_PAGING: a paging domain of the iommu core that mirrors one IOAS. It holds a
 * reference on its IOAS; every device attached holds one on it. An auto HWPT (made by attaching a
 * device to an IOAS) goes away with its last device.
 */
public final class HwptPaging extends IommufdObject implements IoasDomain {
    final Ioas ioas;
    final IommuDomain domain;
    final boolean auto;
    private final IommuCore iommu;
    /** Devices attached, guarded by the context's attach lock. */
    int devices;

    HwptPaging(final Ioas ioas, final IommuDomain domain, final boolean auto, final IommuCore iommu) {
        super(ObjectType.HWPT_PAGING);
        this.ioas = ioas;
        this.domain = domain;
        this.auto = auto;
        this.iommu = iommu;
    }

    public IommuDomain domain() {
        return domain;
    }

    // ------------------------------------------------------------------ IoasDomain

    @Override
    public void map(final long iova, final long phys, final long length, final int prot) {
        domain.map(iova, phys, length, prot);
    }

    @Override
    public void unmap(final long iova, final long length) {
        domain.unmap(iova, length);
    }

    @Override
    public long minPageSize() {
        return Long.lowestOneBit(domain.pgsizeBitmap());
    }

    @Override
    public List<IovaRange> reservedRanges() {
        final long last = domain.apertureLast();
        return last == -1L ? List.of() : List.of(new IovaRange(last + 1, -1L));
    }

    @Override
    void destroy() {
        ioas.removeDomain(this);
        ioas.users.decrementAndGet();
        iommu.free(domain);
    }
}
