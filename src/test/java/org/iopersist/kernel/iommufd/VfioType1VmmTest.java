package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DmaRecord;
import org.iopersist.hw.pci.WorkloadMode;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioDeviceAttachIommufdPt;
import org.iopersist.uapi.VfioDeviceBindIommufd;
import org.junit.jupiter.api.Test;

/**
 * A VMM that maps guest RAM the type1 way, as QEMU's legacy container code does with iommufd
 * behind {@code /dev/vfio/vfio}: it opens the container node, binds its device's cdev to it and
 * names one IOAS the compatibility IOAS (its stand-in for attaching a group), and from then on
 * speaks only type1: VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU,
 * VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA and VFIO_IOMMU_UNMAP_DMA. The device then DMAs into guest
 * RAM through the VT-d tables those calls built.
 */
class VfioType1VmmTest extends IommufdAbiFixture {
    private static final long GUEST_RAM = 8L << 20;
    private static final long GPA = 0x10_0000;

    @Test
    void type1VmmMapsGuestRamAndItsDeviceDmasThroughIt() {
        // The container, and the device joined to it (the group step of a type1 VMM).
        final int container = c.open(Vfio.CONTAINER_PATH, Syscall.O_RDWR);
        final VfioType1 t = new VfioType1(c, container);
        assertEquals(Vfio.VFIO_API_VERSION, t.value(Vfio.VFIO_GET_API_VERSION, 0));
        assertEquals(1, t.value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_TYPE1v2_IOMMU));
        final MemorySegment alloc = struct(IommuIoasAlloc.LAYOUT);
        assertEquals(0, c.ioctl(container, Iommufd.IOMMU_IOAS_ALLOC, alloc));
        final int ioas = IommuIoasAlloc.outIoasId(alloc);
        final int dev = c.open(Vfio.cdevPath(0), Syscall.O_RDWR);
        final MemorySegment bind = MemorySegment.ofArray(new byte[16]);
        Vfio.argsz(bind, 16);
        VfioDeviceBindIommufd.iommufd(bind, container);
        assertEquals(0, c.ioctl(dev, Vfio.VFIO_DEVICE_BIND_IOMMUFD, bind));
        final MemorySegment attach = MemorySegment.ofArray(new byte[12]);
        Vfio.argsz(attach, 12);
        VfioDeviceAttachIommufdPt.ptId(attach, ioas);
        assertEquals(0, c.ioctl(dev, Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach));
        assertEquals(0, t.vfioIoas(Iommufd.IOMMU_VFIO_IOAS_SET, ioas));

        // Type1 from here on.
        assertEquals(0, t.value(Vfio.VFIO_SET_IOMMU, Vfio.VFIO_TYPE1v2_IOMMU));
        final long infoVa = c.mmapAnonymous(PAGE);
        c.memory().writeLong(infoVa, 4096);
        assertEquals(0, t.getInfo(infoVa));
        final byte[] info = c.memory().readBytes(infoVa, 128);
        final java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(info).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        assertEquals(Vfio.VFIO_IOMMU_INFO_PGSIZES | Vfio.VFIO_IOMMU_INFO_CAPS, b.getInt(4));
        assertTrue((b.getLong(8) & 0x1000) != 0, "4 KiB pages");
        assertEquals(24, b.getInt(16), "the chain fit: cap_offset");
        final int iovaCap = b.getInt(24 + 4); // DMA_AVAIL's next
        assertEquals(Vfio.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, b.getShort(iovaCap));
        assertEquals(2, b.getInt(iovaCap + 8), "the aperture less the interrupt window");
        assertTrue(Long.compareUnsigned(b.getLong(iovaCap + 24), GPA + GUEST_RAM) > 0, "guest RAM fits the first range");

        final long ram = c.mmapAnonymous(GUEST_RAM);
        for (long off = 0; off < GUEST_RAM; off += PAGE) {
            c.memory().writeLong(ram + off, 0);
        }
        assertEquals(0, t.map(ram, GPA, GUEST_RAM), "guest RAM at IOVA = GPA");
        assertEquals(Errno.EEXIST, err(t.map(ram, GPA, PAGE)), "over a mapping");

        // The device writes records across guest RAM; each lands where the CPU finds it.
        final DeviceBar bar = rig.bar(0);
        final long gen = 0x7e57_0001L;
        final WorkloadSettings w = WorkloadSettings.writeVerify(GPA, GUEST_RAM, (int) PAGE, gen).withMode(WorkloadMode.WRITE);
        bar.resetCounters();
        bar.start(w);
        bar.awaitSeq(w.slots());
        bar.stop();
        assertEquals(0, bar.counters().faults(), bar.counters().toString());
        c.memory().flush();
        for (long slot = 0; slot < w.slots(); slot += 97) {
            final long va = ram + slot * PAGE;
            assertEquals(w.slotIova(slot), c.memory().readLong(va + DmaRecord.IOVA_OFFSET), "record of slot " + slot);
            assertEquals(gen, c.memory().readLong(va + DmaRecord.GENERATION_OFFSET));
        }

        // type1v2 cannot punch a hole in a mapping; unmap-all takes it whole and DMA stops.
        assertEquals(Errno.ENOENT, err(t.unmap(0, GPA + PAGE, PAGE)[0]));
        final long[] r = t.unmap(Vfio.VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
        assertEquals(0, r[0]);
        assertEquals(GUEST_RAM, r[1]);
        bar.resetCounters();
        bar.start(WorkloadSettings.writeVerify(GPA, PAGE, (int) PAGE, gen + 1).withMode(WorkloadMode.WRITE));
        bar.awaitSeq(1);
        bar.stop();
        assertEquals(0, bar.counters().ops());
        assertTrue(bar.counters().faults() > 0, "DMA after unmap faults");
        c.close(dev);
        c.close(container);
    }
}
