package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasMapFile;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * The selftest's FIXTURE(iommufd_ioas) cases for the no_domain variant: areas, unmap rules, automatic
 * IOVAs, copies and alignment. (With no domain, IOVA 0 is a valid base and nothing is pinned.)
 */
class IommufdSelftestAreaTest extends IommufdAbiFixture {
    static final long BUFFER_SIZE = 16 * PAGE;

    long buffer() {
        return c.mmapAnonymous(BUFFER_SIZE);
    }

    @Test
    void area() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        assertEquals(Errno.ENOENT, err(unmap(ioas, 0, PAGE)), "nothing mapped");
        for (int i = 0; i != 10; i++) {
            assertEquals(i * PAGE, map(ioas, buf, PAGE, i * PAGE, true));
        }
        for (int i = 0; i != 10; i++) {
            assertEquals(PAGE, unmap(ioas, i * PAGE, PAGE));
        }
        // A two-page area cannot be unmapped by halves.
        map(ioas, buf, 2 * PAGE, 0, true);
        assertEquals(Errno.ENOENT, err(unmap(ioas, 0, PAGE)));
        assertEquals(Errno.ENOENT, err(unmap(ioas, PAGE, PAGE)));
        // Overlapping fixed maps: every shape is EEXIST.
        map(ioas, buf, 4 * PAGE, 16 * PAGE, true);
        for (long[] shape : new long[][] {{16 * PAGE, PAGE}, {15 * PAGE, 2 * PAGE}, {19 * PAGE, 2 * PAGE},
            {15 * PAGE, 6 * PAGE}, {17 * PAGE, PAGE}}) {
            assertEquals(Errno.EEXIST, err(map(ioas, buf, shape[1], shape[0], true)));
        }
        assertEquals(6 * PAGE, unmap(ioas, 0, -1L), "unmap-all returns every byte");
        assertEquals(0, unmap(ioas, 0, -1L), "unmap-all on an empty IOAS succeeds");
    }

    @Test
    void unmap_fully_contained_areas() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        final long base = 4 * PAGE; // room below the first area, as the selftest rewinds base_iova
        for (int i = 0; i != 4; i++) {
            assertEquals(base + 16 * PAGE * i, map(ioas, buf, 8 * PAGE, base + 16 * PAGE * i, true));
        }
        assertEquals(Errno.ENOENT, err(unmap(ioas, base - 4 * PAGE, 8 * PAGE)), "cuts the first area");
        assertEquals(Errno.ENOENT, err(unmap(ioas, base + 3 * 16 * PAGE + 8 * PAGE - 4 * PAGE, 8 * PAGE)),
                "cuts the last area");
        assertEquals(32 * PAGE, unmap(ioas, base - 4 * PAGE, 3 * 16 * PAGE + 8 * PAGE + 4 * PAGE),
                "every area inside the range goes");
        assertEquals(Errno.ENOENT, err(unmap(ioas, 0, -2L)), "nothing left");
    }

    @Test
    void area_auto_iova() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        final long[] iovas = new long[10];
        for (int i = 0; i != 10; i++) {
            iovas[i] = map(ioas, buf, PAGE, 0, false);
            assertTrue(iovas[i] > 0, "never IOVA 0");
        }
        for (int i = 0; i != 10; i++) {
            assertEquals(PAGE, unmap(ioas, iovas[i], PAGE));
        }
        for (int i = 1; i != 10; i++) {
            final long iova = map(ioas, buf, PAGE * i, 0, false);
            assertTrue(iova > 0);
            final long lowBit = Long.lowestOneBit(PAGE * i);
            assertEquals(0, iova % lowBit, "aligned to the lowest set bit of the length");
            assertEquals(PAGE * i, unmap(ioas, iova, PAGE * i));
        }
        // With an allowed window, every automatic IOVA lands inside it.
        final long arrayVa = c.mmapAnonymous(PAGE);
        c.memory().writeLong(arrayVa, 200 * PAGE);
        c.memory().writeLong(arrayVa + 8, 600 * PAGE - 1);
        final StructLayout l = IommuIoasAllowIovas.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "ioas_id", ioas);
        set32(s, l, "num_iovas", 1);
        set64(s, l, "allowed_iovas", arrayVa);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s));
        for (int i = 1; i != 10; i++) {
            final long iova = map(ioas, buf, PAGE * i, 0, false);
            assertTrue(iova >= 200 * PAGE && iova + PAGE * i <= 600 * PAGE, Long.toHexString(iova));
        }
    }

    @Test
    void copy_area() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        map(ioas, buf, PAGE, 0, true);
        assertEquals(PAGE, copy(ioas, PAGE, ioas, 0, PAGE, true), "copy within one IOAS");
        final int other = ioasAlloc();
        assertEquals(0, copy(other, 0, ioas, 0, PAGE, true), "copy to a fresh IOAS at IOVA 0");
        assertEquals(Errno.ENOENT, err(copy(other, 8 * PAGE, ioas, 4 * PAGE, PAGE, true)), "source not mapped");
        assertEquals(Errno.EEXIST, err(copy(other, 0, ioas, 0, PAGE, true)), "destination taken");
        assertEquals(Errno.ENOENT, err(copy(99, 0, ioas, 0, PAGE, true)), "no such destination");
        assertEquals(Errno.EOVERFLOW, err(copy(other, 0, ioas, -1L, PAGE, true)));
    }

    @Test
    void ioas_iova_alloc() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        for (long length = 1; length < 2 * PAGE; length += 511) {
            final long iova = map(ioas, buf, length, 0, false);
            assertTrue(iova > 0, "length " + length + " gave " + iova);
            assertEquals(length, unmap(ioas, iova, length));
        }
    }

    /** IOMMU_OPTION SET HUGE_PAGES = 0 on {@code ioas}. */
    private MemorySegment hugePagesOff(final int ioas) {
        final StructLayout l = IommuOption.LAYOUT;
        final MemorySegment o = struct(l);
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_HUGE_PAGES);
        o.set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_SET);
        set32(o, l, "object_id", ioas);
        set64(o, l, "val64", 0);
        return o;
    }

    @Test
    void ioas_align_change() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        // A misaligned area blocks disabling large pages.
        assertEquals(0, map(ioas, buf + 100, PAGE, 100, true) - 100, "sub-page IOVA is fine at alignment 1");
        final MemorySegment o = hugePagesOff(ioas);
        assertEquals(Errno.EADDRINUSE, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)));
        unmap(ioas, 0, -1L);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertEquals(Errno.EINVAL, err(map(ioas, buf, PAGE, 100, true)), "misaligned once the alignment is PAGE_SIZE");
        assertEquals(Errno.EINVAL, err(map(ioas, buf + 100, PAGE, PAGE, true)), "page offset misaligned");
        assertEquals(PAGE, map(ioas, buf, PAGE, PAGE, true));
    }

    /** iopt_check_iova_alignment checks the page offset too: an aligned IOVA over buffer + 0x800 still blocks PAGE_SIZE. */
    @Test
    void ioas_align_change_with_a_page_offset() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        assertEquals(0, map(ioas, buf + 0x800, PAGE, 0, true), "alignment 1 takes it");
        final MemorySegment o = hugePagesOff(ioas);
        assertEquals(Errno.EADDRINUSE, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)));
        assertEquals(PAGE, unmap(ioas, 0, -1L));
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o), "with the area gone");
    }

    @Test
    void copy_sweep() {
        final int ioas = ioasAlloc();
        final int dst = ioasAlloc();
        final long buf = buffer();
        final long base = 4 * PAGE;
        map(ioas, buf, 4 * PAGE, base, true);
        for (long src = base - 4 * PAGE; src < base + 8 * PAGE; src += 511) {
            final long ret = copy(dst, 0, ioas, src, 2048, false);
            if (src < base || src + 2048 > base + 4 * PAGE) {
                assertEquals(Errno.ENOENT, err(ret), "src 0x" + Long.toHexString(src));
            } else {
                assertTrue(ret > 0, "src 0x" + Long.toHexString(src) + " gave " + ret);
                assertEquals(2048, unmap(dst, ret, 2048));
            }
        }
    }

    @Test
    void map_errno_ladder() {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        final StructLayout l = IommuIoasMap.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "ioas_id", ioas);
        set64(s, l, "user_va", buf);
        set64(s, l, "length", PAGE);
        set32(s, l, "flags", 1 << 5);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s)), "unknown flag");
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_READABLE);
        set32(s, l, "__reserved", 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s)), "__reserved");
        set32(s, l, "__reserved", 0);
        set64(s, l, "length", -1L);
        assertEquals(Errno.EOVERFLOW, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s)));
        set64(s, l, "length", PAGE);
        set32(s, l, "flags", 0);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s)), "neither R nor W");
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_READABLE);
        set32(s, l, "ioas_id", 77);
        assertEquals(Errno.ENOENT, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s)));
        set32(s, l, "ioas_id", ioas);
        set64(s, l, "length", 0);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s)), "length 0");
        set64(s, l, "length", PAGE);
        set64(s, l, "user_va", -PAGE);
        set64(s, l, "length", 2 * PAGE);
        assertEquals(Errno.EOVERFLOW, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s)), "user_va + length wraps");
    }

    @Test
    void mapFileNeedsAMemfd() {
        final int ioas = ioasAlloc();
        final int memfd = c.memfdCreate("guest");
        c.ftruncate(memfd, 8 * PAGE);
        final StructLayout l = IommuIoasMapFile.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE);
        set32(s, l, "ioas_id", ioas);
        set32(s, l, "fd", memfd);
        set64(s, l, "start", 2 * PAGE);
        set64(s, l, "length", 4 * PAGE);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP_FILE, s));
        final long iova = get64(s, l, "iova");
        assertTrue(iova > 0);
        set64(s, l, "length", 8 * PAGE);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP_FILE, s)), "beyond the file");
        set32(s, l, "fd", 99);
        assertEquals(Errno.EBADF, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP_FILE, s)));
        set32(s, l, "fd", fd);
        set64(s, l, "length", PAGE);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP_FILE, s)), "an iommufd cannot back DMA");
        assertEquals(4 * PAGE, unmap(ioas, iova, 4 * PAGE));
    }

    @Test
    void ioas_area_auto_destroy() throws Exception {
        final int ioas = ioasAlloc();
        final long buf = buffer();
        for (int i = 0; i != 10; i++) {
            map(ioas, buf, PAGE, i * PAGE * 2, true);
        }
        c.close(fd);
        fd = c.open("/dev/iommu", Syscall.O_RDWR);
        assertEquals(1, ioasAlloc());
    }
}
