package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwInfo;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * Cases of {@code tools/testing/selftests/iommu/iommufd.c} that need a device and a domain
 * (FIXTURE {@code iommufd_ioas} variant {@code mock_domain}, and {@code iommufd_mock_domain}), on a
 * VT-d domain behind a real device. Differences from the mock, case by case: the aperture is
 * {@code [0, 2^48-1]} instead of {@code [16 MiB, 2 GiB-1]}; the smallest page is 4 KiB, not 2 KiB;
 * the device's reserved region is the interrupt window; MD_CHECK_MAP is iova_to_phys plus a DMA.
 */
class IommufdSelftestDomainTest extends IommufdDomainFixture {
    private static final long MSI_START = ReservedRegion.INTERRUPT_WINDOW.start();
    private static final long MSI_LAST = ReservedRegion.INTERRUPT_WINDOW.last();

    @Test
    void basic() {
        final long buf = buffer(2);
        final long iova = map(ioasId, buf, PAGE, 0, false);
        assertTrue(iova > 0);
        assertDeviceReaches(0, iova, buf);
        assertEquals(PAGE, unmap(ioasId, iova, PAGE));
        assertDeviceFaults(0, iova);
        // EFAULT when part of the buffer is not mapped in the process.
        c.munmap(buf + PAGE, PAGE);
        assertEquals(Errno.EFAULT, err(map(ioasId, buf, 2 * PAGE, 0, false)));
        c.munmap(buf, PAGE);
        assertEquals(Errno.EFAULT, err(map(ioasId, buf, PAGE, 0, false)));
    }

    @Test
    void ioas_destroy() {
        assertEquals(Errno.EBUSY, err(destroy(ioasId)), "a device holds the IOAS through its HWPT");
        assertEquals(0, detachPt(devFd));
        assertEquals(Errno.ENOENT, err(destroy(hwptId)), "the auto HWPT went with its last device");
        assertEquals(0, destroy(ioasId));
    }

    @Test
    void ioas_area_destroy() {
        final long buf = buffer(4);
        assertEquals(0x10_0000L, map(ioasId, buf, 4 * PAGE, 0x10_0000L, true));
        assertEquals(Errno.EBUSY, err(destroy(ioasId)));
        assertEquals(0, detachPt(devFd));
        assertEquals(0, destroy(ioasId), "with only areas left, destroy unmaps them");
    }

    @Test
    void hwpt_attach() {
        final long hwpt = hwptAlloc(deviceId, ioasId, 0);
        assertTrue(hwpt > 0);
        final int dev1 = openDevice(1);
        bind(dev1, fd);
        assertEquals(hwpt, attachPt(dev1, (int) hwpt), "attach straight to an existing HWPT");
        final long buf = buffer(1);
        final long iova = map(ioasId, buf, PAGE, 0, false);
        assertDeviceReaches(1, iova, buf);
        assertDeviceReaches(0, iova, buf);
        assertEquals(Errno.EBUSY, err(destroy((int) hwpt)), "attached HWPT");
        c.close(dev1);
        assertEquals(0, destroy((int) hwpt), "closing the device fd detached and unbound it");
    }

    @Test
    void get_hw_info() {
        final var l = IommuHwInfo.LAYOUT;
        final long data = c.mmapAnonymous(PAGE);
        final long cap = rig.machine.board().unitRegisters(0).read64(VtdRegisters.CAP);
        final long ecap = rig.machine.board().unitRegisters(0).read64(VtdRegisters.ECAP);
        for (int len : new int[] {0, 24, 40, 8}) {
            c.memory().writeBytes(data, filled(48, (byte) 0x5a));
            final MemorySegment s = struct(l);
            set32(s, l, "dev_id", deviceId);
            set32(s, l, "data_len", len);
            set64(s, l, "data_uptr", data);
            assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_GET_HW_INFO, s), "data_len " + len);
            assertEquals(24, get32(s, l, "data_len"), "the kernel's length comes back");
            assertEquals(Iommufd.IOMMU_HW_INFO_TYPE_INTEL_VTD, get32(s, l, "out_data_type"));
            final ByteBuffer expect = ByteBuffer.allocate(48).order(ByteOrder.LITTLE_ENDIAN);
            expect.put(filled(48, (byte) 0x5a)).putInt(0, 0).putInt(4, 0).putLong(8, cap).putLong(16, ecap);
            final byte[] want = expect.array();
            for (int i = 24; i < len; i++) {
                want[i] = 0; // a larger buffer's tail is zeroed
            }
            for (int i = len; i < 48; i++) {
                want[i] = 0x5a; // beyond data_len nothing is written
            }
            assertArrayEquals(want, c.memory().readBytes(data, 48), "data_len " + len);
        }
        final MemorySegment s = struct(l);
        set32(s, l, "dev_id", ioasId);
        assertEquals(Errno.ENOENT, err(c.ioctl(fd, Iommufd.IOMMU_GET_HW_INFO, s)), "not a device");
        set32(s, l, "dev_id", deviceId);
        set32(s, l, "flags", 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_GET_HW_INFO, s)));
    }

    private static byte[] filled(final int n, final byte b) {
        final byte[] a = new byte[n];
        java.util.Arrays.fill(a, b);
        return a;
    }

    @Test
    void iova_ranges() {
        final long[] r = iovaRanges(ioasId, 4);
        assertEquals(PAGE, r[0], "alignment: the domain's smallest page");
        assertEquals(2, r[1], "the aperture minus the interrupt window");
        assertEquals(0, r[2]);
        assertEquals(MSI_START - 1, r[3]);
        assertEquals(MSI_LAST + 1, r[4]);
        assertEquals((1L << 48) - 1, r[5], "the 48-bit aperture ends the last range");
    }

    @Test
    void area_allowed() {
        final var l = IommuIoasAllowIovas.LAYOUT;
        final long arr = c.mmapAnonymous(PAGE);
        final MemorySegment s = struct(l);
        set32(s, l, "ioas_id", ioasId);
        set32(s, l, "num_iovas", 1);
        set64(s, l, "allowed_iovas", arr);
        // An allowed range over the reserved interrupt window is refused.
        c.memory().writeLong(arr, MSI_START - PAGE);
        c.memory().writeLong(arr + 8, MSI_START + PAGE);
        assertEquals(Errno.EADDRINUSE, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s)));
        set32(s, l, "num_iovas", 0);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s), "clearing is fine");
        // Allowed first, then a device whose reserved region falls inside: the attach fails.
        final int other = ioasAlloc();
        set32(s, l, "ioas_id", other);
        set32(s, l, "num_iovas", 1);
        c.memory().writeLong(arr, 0);
        c.memory().writeLong(arr + 8, 0xFFFF_FFFFL);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s));
        final int dev1 = openDevice(1);
        bind(dev1, fd);
        assertEquals(Errno.EADDRINUSE, err(attachPt(dev1, other)), "reserved inside allowed");
    }

    @Test
    void area_auto_iova() {
        // Automatic IOVAs climb past 4 GiB and never land in the device's reserved window.
        final long len = 16L << 20;
        final long buf = buffer(len / PAGE);
        long iova = 0;
        while (iova < 0x1_0000_0000L) {
            iova = map(ioasId, buf, len, 0, false);
            assertTrue(iova > 0, "auto map gave " + iova);
            assertTrue(iova + len - 1 < MSI_START || iova > MSI_LAST, Long.toHexString(iova));
        }
        assertEquals(-1, domainOf(0).iovaToPhys(MSI_START), "nothing mapped in the window");
    }

    @Test
    void all_aligns() {
        final long buf = buffer(BUFFER_SIZE / PAGE);
        for (long start = 0; start < BUFFER_SIZE; start += PAGE) {
            for (long end = start + PAGE; end <= BUFFER_SIZE; end += PAGE) {
                final long iova = map(ioasId, buf + start, end - start, 0, false);
                assertTrue(iova > 0);
                for (long off = 0; off < end - start; off += PAGE) {
                    final long phys = c.memory().physOf(buf + start + off);
                    assertEquals(phys, domainOf(0).iovaToPhys(iova + off));
                    assertEquals(2, refs.count(phys), "mapping + one pin");
                }
                assertEquals(end - start, unmap(ioasId, iova, end - start));
                for (long off = 0; off < end - start; off += PAGE) {
                    assertEquals(1, refs.count(c.memory().physOf(buf + start + off)), "unpinned");
                }
            }
        }
        assertDeviceFaults(0, 0x1000);
    }

    @Test
    void all_aligns_copy() {
        final long buf = buffer(BUFFER_SIZE / PAGE);
        final int dev1 = openDevice(1);
        final int dev1Id = bind(dev1, fd);
        for (long start = 0; start < BUFFER_SIZE; start += 4 * PAGE) {
            for (long end = start + PAGE; end <= BUFFER_SIZE; end += 3 * PAGE) {
                final long iova = map(ioasId, buf + start, end - start, 0, false);
                // A second domain joins while the area exists: it is filled from the pinned pages.
                final long hwpt = hwptAlloc(dev1Id, ioasId, 0);
                assertEquals(hwpt, attachPt(dev1, (int) hwpt));
                for (long off = 0; off < end - start; off += PAGE) {
                    final long phys = c.memory().physOf(buf + start + off);
                    assertEquals(phys, domainOf(1).iovaToPhys(iova + off));
                    assertEquals(2, refs.count(phys), "still one pin for two domains");
                }
                assertDeviceReaches(1, iova, buf + start);
                assertEquals(0, detachPt(dev1));
                assertEquals(0, destroy((int) hwpt));
                assertEquals(end - start, unmap(ioasId, iova, end - start));
            }
        }
    }

    @Test
    void replace() {
        final long buf = buffer(1);
        final int ioas2 = ioasAlloc();
        final long iova = 0x40_0000L;
        assertEquals(iova, map(ioasId, buf, PAGE, iova, true));
        final long other = buffer(1);
        assertEquals(iova, map(ioas2, other, PAGE, iova, true));
        assertDeviceReaches(0, iova, buf);
        final long newHwpt = attachPt(devFd, ioas2);
        assertTrue(newHwpt > 0);
        assertNotEquals(hwptId, newHwpt);
        assertEquals(Errno.ENOENT, err(attachPt(devFd, hwptId)), "the old auto HWPT is gone");
        assertDeviceReaches(0, iova, other);
        // Rotate between two allocated HWPTs.
        final long h1 = hwptAlloc(deviceId, ioasId, 0);
        final long h2 = hwptAlloc(deviceId, ioas2, 0);
        for (int i = 0; i < 3; i++) {
            assertEquals(h1, attachPt(devFd, (int) h1));
            assertDeviceReaches(0, iova, buf);
            assertEquals(h2, attachPt(devFd, (int) h2));
            assertDeviceReaches(0, iova, other);
        }
        assertEquals(Errno.EINVAL, err(attachPt(devFd, deviceId)), "a device is not a page table");
    }

    @Test
    void alloc_hwpt() {
        assertEquals(Errno.EOPNOTSUPP, err(hwptAlloc(deviceId, ioasId, 1 << 7)), "unknown flag");
        assertEquals(Errno.EOPNOTSUPP, err(hwptAlloc(deviceId, ioasId, Iommufd.IOMMU_HWPT_ALLOC_NEST_PARENT)),
                "nesting is not modelled");
        assertEquals(Errno.EOPNOTSUPP, err(hwptAlloc(deviceId, ioasId, Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)),
                "VT-d second-level dirty tracking is not modelled");
        assertEquals(Errno.ENOENT, err(hwptAlloc(ioasId, ioasId, 0)), "dev_id must be a device");
        assertEquals(Errno.EINVAL, err(hwptAlloc(deviceId, 999, 0)), "pt_id names nothing");
        assertEquals(Errno.EOPNOTSUPP, err(hwptAlloc(deviceId, hwptId, 0)),
                "a nested HWPT without driver data (iommufd_hwpt_nested_alloc checks that before the parent)");
        final long hwpt = hwptAlloc(deviceId, ioasId, 0);
        assertEquals(hwpt, attachPt(devFd, (int) hwpt));
        assertEquals(Errno.EBUSY, err(destroy((int) hwpt)));
        final int dev1 = openDevice(1);
        bind(dev1, fd);
        assertEquals(hwpt, attachPt(dev1, (int) hwpt), "a new device joins the HWPT");
    }

    /**
     * iopt_table_add_domain: an area a domain cannot map at its page offset makes the attach fail
     * with EADDRINUSE before anything is pinned or mapped; unmap and destroy then work as usual.
     */
    @Test
    void attach_over_an_area_at_a_page_offset() {
        final int ioas = ioasAlloc();
        final long buf = c.mmapAnonymous(4 * PAGE);
        assertEquals(0, map(ioas, buf + 0x800, PAGE, 0, true));
        final int dev1 = openDevice(1);
        bind(dev1, fd);
        assertEquals(Errno.EADDRINUSE, err(attachPt(dev1, ioas)));
        assertEquals(PAGE, unmap(ioas, 0, -1L), "the area's pages were not left pinned");
        assertEquals(0, destroy(ioas));
    }

    @Test
    void vfio_cdev_framing() {
        final int dev1 = openDevice(1);
        assertEquals(Errno.EINVAL, err(attachPt(dev1, ioasId)), "attach before bind");
        assertEquals(Errno.EINVAL, err(bindRaw(dev1, fd, 12, 0)), "argsz below minsz");
        assertEquals(Errno.EINVAL, err(bindRaw(dev1, fd, 16, 1)), "flags");
        assertEquals(Errno.EBADF, err(bindRaw(dev1, 77, 16, 0)));
        assertEquals(Errno.EINVAL, err(bindRaw(dev1, -1, 16, 0)), "a negative fd is malformed (vfio_df_ioctl_bind_iommufd)");
        assertEquals(Errno.EBADFD, err(bindRaw(dev1, devFd, 16, 0)), "a vfio fd is not an iommufd");
        assertTrue(bindRaw(dev1, fd, 64, 0) > 0, "a larger argsz is fine");
        assertEquals(Errno.EINVAL, err(bindRaw(dev1, fd, 16, 0)), "bound twice");
        final int again = openDevice(1);
        assertEquals(Errno.EINVAL, err(bindRaw(again, fd, 16, 0)), "another open file of a bound device");
        assertEquals(Errno.EBUSY, err(destroy(deviceId)), "userspace cannot destroy a bound device");
        assertEquals("511:0", c.readFile("/sys/bus/pci/devices/0000:00:02.0/vfio-dev/vfio0/dev").trim());
        assertEquals(Errno.ENOENT.number, org.junit.jupiter.api.Assertions.assertThrows(org.iopersist.uapi.ErrnoException.class,
                () -> c.open("/dev/vfio/devices/vfio9", Syscall.O_RDWR)).errno());
    }

    @Test
    void closingTheIommufdKeepsABoundDeviceWorking() {
        final long buf = buffer(1);
        final long iova = map(ioasId, buf, PAGE, 0, false);
        c.close(fd);
        assertDeviceReaches(0, iova, buf);
        c.close(devFd);
        assertDeviceFaults(0, iova);
        assertEquals(1, refs.count(c.memory().physOf(buf)), "the last reference released the pin");
        fd = c.open("/dev/iommu", Syscall.O_RDWR);
    }
}
