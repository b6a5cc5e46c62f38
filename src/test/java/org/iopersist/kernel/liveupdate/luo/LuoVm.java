package org.iopersist.kernel.liveupdate.luo;

import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.SessionHandle;
import org.iopersist.vmm.VfioDeviceHandle;

/**
 * A VM as the iommufd LUO series' selftest sets it up for a session: sealed memfd RAM mapped by
 * file, an iommufd whose IOAS a HWPT of its own translates, a device bound and attached to that
 * HWPT, and the HWPT marked for preservation.
 *
 * @param attached what IOMMU attach answered (the HWPT's id, when it went as asked)
 */
record LuoVm(GuestRam ram, IommufdHandle iommufd, int ioas, int hwpt, VfioDeviceHandle dev, int attached) {

    /**
     * The selftest's order: RAM, iommufd, device; bind, IOAS, HWPT, attach; map the RAM in
     * {@code pieces} (IOVA = GPA), mark the HWPT under {@code hwptToken}.
     */
    static LuoVm create(final KernelClient c, final String ramName, final long ramBytes, final int device, final int pieces,
            final long hwptToken) {
        final GuestRam ram = GuestRam.createMemfd(c, ramName, ramBytes);
        final IommufdHandle iommufd = IommufdHandle.open(c);
        final VfioDeviceHandle dev = VfioDeviceHandle.open(c, device);
        final int devId = dev.bind(iommufd);
        final int ioas = iommufd.ioasAlloc();
        final int hwpt = iommufd.hwptAlloc(devId, ioas);
        final int attached = dev.attach(hwpt);
        ram.mapForDma(iommufd, ioas, pieces);
        iommufd.markPreserve(hwpt, hwptToken);
        return new LuoVm(ram, iommufd, ioas, hwpt, dev, attached);
    }

    /** PRESERVE_FD of the three in the only order the rules allow: the memfd, then its iommufd, then the device. */
    void preserveIn(final SessionHandle session, final long memfdToken, final long iommufdToken, final long devToken) {
        session.preserveFd(ram.fd(), memfdToken);
        session.preserveFd(iommufd.fd(), iommufdToken);
        session.preserveFd(dev.fd(), devToken);
    }
}
