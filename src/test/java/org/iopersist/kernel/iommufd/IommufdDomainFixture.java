package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DmaRecord;
import org.iopersist.hw.pci.WorkloadMode;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioDeviceAttachIommufdPt;
import org.iopersist.uapi.VfioDeviceBindIommufd;
import org.iopersist.uapi.VfioDeviceDetachIommufdPt;
import org.junit.jupiter.api.BeforeEach;

/**
 * The selftest's {@code mock_domain} fixture on real hardware: on the booted kernel, device 0
 * opened through its VFIO cdev, bound, and attached to a fresh IOAS (so an auto HWPT over a VT-d
 * domain exists). Devices are checked by making them DMA.
 */
abstract class IommufdDomainFixture extends IommufdAbiFixture {
    static final long PAGE = 4096;
    static final long BUFFER_SIZE = 16 * PAGE;
    int ioasId;
    int devFd;
    int deviceId;
    int hwptId;

    @BeforeEach
    void setUpDomain() {
        ioasId = ioasAlloc();
        devFd = openDevice(0);
        deviceId = bind(devFd, fd);
        hwptId = (int) attachPt(devFd, ioasId);
        assertTrue(hwptId > 0, "attach gave " + hwptId);
    }

    int openDevice(final int n) {
        return c.open(Vfio.cdevPath(n), Syscall.O_RDWR);
    }

    /** VFIO_DEVICE_BIND_IOMMUFD; the device id or the negative errno. */
    long bindRaw(final int deviceFd, final int iommufd, final int argsz, final int flags) {
        final MemorySegment s = struct(VfioDeviceBindIommufd.LAYOUT);
        set32(s, VfioDeviceBindIommufd.LAYOUT, "argsz", argsz);
        set32(s, VfioDeviceBindIommufd.LAYOUT, "flags", flags);
        set32(s, VfioDeviceBindIommufd.LAYOUT, "iommufd", iommufd);
        final long ret = c.ioctl(deviceFd, Vfio.VFIO_DEVICE_BIND_IOMMUFD, s);
        return ret < 0 ? ret : get32(s, VfioDeviceBindIommufd.LAYOUT, "out_devid");
    }

    int bind(final int deviceFd, final int iommufd) {
        final long id = bindRaw(deviceFd, iommufd, 16, 0);
        assertTrue(id > 0, "bind gave " + id);
        return (int) id;
    }

    /** VFIO_DEVICE_ATTACH_IOMMUFD_PT; the HWPT id or the negative errno. */
    long attachPt(final int deviceFd, final int ptId) {
        final MemorySegment s = struct(VfioDeviceAttachIommufdPt.LAYOUT);
        set32(s, VfioDeviceAttachIommufdPt.LAYOUT, "argsz", 12);
        set32(s, VfioDeviceAttachIommufdPt.LAYOUT, "pt_id", ptId);
        final long ret = c.ioctl(deviceFd, Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT, s);
        return ret < 0 ? ret : get32(s, VfioDeviceAttachIommufdPt.LAYOUT, "pt_id");
    }

    long detachPt(final int deviceFd) {
        final MemorySegment s = struct(VfioDeviceDetachIommufdPt.LAYOUT);
        set32(s, VfioDeviceDetachIommufdPt.LAYOUT, "argsz", 8);
        return c.ioctl(deviceFd, Vfio.VFIO_DEVICE_DETACH_IOMMUFD_PT, s);
    }

    /** IOMMU_HWPT_ALLOC; the HWPT id or the negative errno. */
    long hwptAlloc(final int devId, final int ptId, final int flags) {
        final var l = IommuHwptAlloc.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "dev_id", devId);
        set32(s, l, "pt_id", ptId);
        set32(s, l, "flags", flags);
        final long ret = c.ioctl(fd, Iommufd.IOMMU_HWPT_ALLOC, s);
        return ret < 0 ? ret : get32(s, l, "out_hwpt_id");
    }

    long destroy(final int id) {
        final MemorySegment d = struct(IommuDestroy.LAYOUT);
        set32(d, IommuDestroy.LAYOUT, "id", id);
        return c.ioctl(fd, Iommufd.IOMMU_DESTROY, d);
    }

    /** A buffer of {@code pages} faulted-in anonymous pages. */
    long buffer(final long pages) {
        final long va = c.mmapAnonymous(pages * PAGE);
        for (long i = 0; i < pages; i++) {
            c.memory().writeLong(va + i * PAGE, 0);
        }
        return va;
    }

    /** The kernel domain device {@code n} translates through now (white-box, for iova_to_phys). */
    IommuDomain domainOf(final int n) {
        return rig.kernel.iommu().domainOf(rig.kernel.iommu().devices().get(n));
    }

    /**
     * The MD_CHECK_MAP equivalent: the domain's tables and a real DMA both take {@code iova} to the
     * frame behind {@code va}. The device writes one record there; the CPU reads it at {@code va}.
     */
    void assertDeviceReaches(final int device, final long iova, final long va) {
        assertEquals(c.memory().physOf(va), domainOf(device).iovaToPhys(iova), "iova_to_phys");
        final DeviceBar bar = rig.bar(device);
        bar.resetCounters();
        final long gen = System.nanoTime() & 0xFFFF_FFFFL;
        bar.start(WorkloadSettings.writeVerify(iova, PAGE, (int) PAGE, gen).withMode(WorkloadMode.WRITE));
        bar.awaitSeq(1);
        bar.stop();
        assertEquals(0, bar.counters().faults(), bar.counters().toString());
        c.memory().flush();
        assertEquals(iova, c.memory().readLong(va + DmaRecord.IOVA_OFFSET), "the record landed in the user's page");
        assertEquals(gen, c.memory().readLong(va + DmaRecord.GENERATION_OFFSET));
    }

    /** A DMA by {@code device} at {@code iova} faults and writes nothing. */
    void assertDeviceFaults(final int device, final long iova) {
        final DeviceBar bar = rig.bar(device);
        bar.resetCounters();
        bar.start(WorkloadSettings.writeVerify(iova, PAGE, (int) PAGE, 1).withMode(WorkloadMode.WRITE));
        bar.awaitSeq(1);
        bar.stop();
        assertEquals(0, bar.counters().ops(), bar.counters().toString());
        assertTrue(bar.counters().faults() > 0, bar.counters().toString());
    }
}
