package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Vfio;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * FIXTURE(vfio_compat_mock_domain) of the iommufd selftest on a VT-d domain behind a real device: an
 * IOAS with a device attached becomes the compatibility IOAS, then VFIO_SET_IOMMU with the variant's
 * type. The selftest's mock aperture is one range; here the IOVA range capability shows the VT-d
 * aperture with the interrupt window cut out.
 */
abstract class VfioCompatDomainCases extends IommufdDomainFixture {
    static final long IOVA = 1L << 24;
    VfioType1 t;

    /** VFIO_TYPE1_IOMMU or VFIO_TYPE1v2_IOMMU. */
    abstract int version();

    @BeforeEach
    void setUpCompat() {
        t = new VfioType1(c, fd);
        assertEquals(0, t.vfioIoas(Iommufd.IOMMU_VFIO_IOAS_SET, ioasId));
        assertEquals(0, t.value(Vfio.VFIO_SET_IOMMU, version()));
    }

    @Test
    void option_huge_pages() {
        final MemorySegment o = struct(IommuOption.LAYOUT);
        IommuOption.optionId(o, Iommufd.IOMMU_OPTION_HUGE_PAGES);
        IommuOption.op(o, Iommufd.IOMMU_OPTION_OP_GET);
        IommuOption.val64(o, 3);
        IommuOption.objectId(o, ioasId);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertEquals(version() == Vfio.VFIO_TYPE1_IOMMU ? 0 : 1, IommuOption.val64(o), "type1 disables large pages");
    }

    /** ioctl_check_buf: the struct at {@code va} with {@code argsz}; bytes past argsz must stay 0xAA. */
    private void checkBuf(final long va, final int argsz) {
        final byte[] fill = new byte[(int) (BUFFER_SIZE)];
        java.util.Arrays.fill(fill, (byte) 0xAA);
        c.memory().writeBytes(va, fill);
        c.memory().writeBytes(va, new byte[Math.min(argsz, 24)]); // the struct, zeroed up to argsz; 0xAA after
        c.memory().writeBytes(va, new byte[] {(byte) argsz, (byte) (argsz >> 8), 0, 0});
        assertEquals(0, t.getInfo(va));
        final byte[] after = c.memory().readBytes(va, (int) BUFFER_SIZE);
        for (int i = argsz; i < after.length; i++) {
            assertEquals((byte) 0xAA, after[i], "byte " + i + " past argsz " + argsz + " was written");
        }
    }

    private int u32(final byte[] b, final int off) {
        return (b[off] & 0xff) | (b[off + 1] & 0xff) << 8 | (b[off + 2] & 0xff) << 16 | (b[off + 3] & 0xff) << 24;
    }

    private long u64(final byte[] b, final int off) {
        return (u32(b, off) & 0xFFFF_FFFFL) | (long) u32(b, off + 4) << 32;
    }

    @Test
    void get_info() {
        final long va = c.mmapAnonymous(BUFFER_SIZE);
        final int flags = Vfio.VFIO_IOMMU_INFO_PGSIZES | Vfio.VFIO_IOMMU_INFO_CAPS;
        // Pre-cap ABI: argsz = offsetof(cap_offset).
        checkBuf(va, 16);
        byte[] info = c.memory().readBytes(va, 24);
        assertNotEquals(0, u64(info, 8), "iova_pgsizes");
        assertEquals(flags, u32(info, 4));
        // The chain's size.
        checkBuf(va, 24);
        info = c.memory().readBytes(va, 24);
        assertEquals(flags, u32(info, 4));
        assertEquals(0, u32(info, 16), "cap_offset: the chain did not fit");
        final int caplen = u32(info, 0);
        assertEquals(24 + 16 + 16 + 2 * 16, caplen, "DMA_AVAIL (12 bytes, padded to 16) then IOVA_RANGE with two ranges");
        assertEquals(0x1000, u64(info, 8) & 0x1FFF, "4 KiB pages, nothing smaller");
        // Every argsz up to the whole chain: never a corrupted chain, never a byte past argsz.
        for (int argsz = 24; argsz <= caplen; argsz++) {
            checkBuf(va, argsz);
            final byte[] b = c.memory().readBytes(va, caplen);
            assertEquals(flags, u32(b, 4));
            if (u32(b, 16) == 0) {
                assertTrue(argsz < caplen, "cap_offset is 0 only while the chain does not fit");
                continue;
            }
            assertEquals(caplen, argsz);
            checkChain(b, caplen);
        }
    }

    private void checkChain(final byte[] b, final int argsz) {
        int cap = u32(b, 16);
        int seen = 0;
        while (true) {
            final int id = u32(b, cap) & 0xFFFF;
            final int ver = u32(b, cap) >>> 16;
            final int next = u32(b, cap + 4);
            final int capSize = (next != 0 ? next : argsz) - cap;
            assertEquals(1, ver);
            assertEquals(0, cap % 8, "every capability starts 8-byte aligned (its u64s are aligned)");
            if (id == Vfio.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
                assertEquals(2, u32(b, cap + 8), "nr_iovas");
                assertEquals(0, u64(b, cap + 16));
                assertEquals(ReservedRegion.INTERRUPT_WINDOW.start() - 1, u64(b, cap + 24));
                assertEquals(ReservedRegion.INTERRUPT_WINDOW.last() + 1, u64(b, cap + 32));
                assertEquals((1L << 48) - 1, u64(b, cap + 40));
            } else if (id == Vfio.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
                assertEquals(16, capSize, "12 bytes and 4 of padding");
                assertEquals(-1, u32(b, cap + 8), "U32_MAX mappings");
            } else {
                throw new AssertionError("unknown capability " + id);
            }
            seen++;
            if (next == 0) {
                break;
            }
            assertTrue(next >= cap + 8 && next + 8 <= argsz);
            cap = next;
        }
        assertEquals(2, seen);
    }

    @Test
    void map() {
        final long buffer = buffer(16);
        assertEquals(0, t.map(buffer, IOVA, BUFFER_SIZE));
        long[] r = t.unmap(0, IOVA, BUFFER_SIZE);
        assertEquals(0, r[0]);
        assertEquals(BUFFER_SIZE, r[1]);
        // UNMAP_FLAG_ALL requires iova = size = 0.
        assertEquals(0, t.map(buffer, IOVA, BUFFER_SIZE));
        assertEquals(Errno.EINVAL, err(t.unmap(Vfio.VFIO_DMA_UNMAP_FLAG_ALL, IOVA, BUFFER_SIZE)[0]));
        r = t.unmap(Vfio.VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
        assertEquals(0, r[0]);
        assertEquals(BUFFER_SIZE, r[1]);
        // Small pages, unmapped in a shuffled order.
        final List<Long> iovas = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            assertEquals(0, t.map(buffer + i * PAGE, IOVA + i * PAGE, PAGE));
            iovas.add(IOVA + i * PAGE);
        }
        Collections.shuffle(iovas, new Random(7));
        for (long iova : iovas) {
            assertEquals(0, t.unmap(0, iova, PAGE)[0]);
        }
    }

    @Test
    void huge_map() {
        final long size = 4L << 20;
        final long buf = c.mmapAnonymous(size);
        assertEquals(0, t.map(buf, IOVA, size));
        final List<Long> iovas = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            iovas.add(IOVA + i * (size / 16));
        }
        Collections.shuffle(iovas, new Random(11));
        // type1 can cut up a larger mapping, type1v2 always fails.
        for (long iova : iovas) {
            final long[] r = t.unmap(0, iova, size / 16);
            if (version() == Vfio.VFIO_TYPE1_IOMMU) {
                assertEquals(0, r[0]);
                assertEquals(size / 16, r[1]);
            } else {
                assertEquals(Errno.ENOENT, err(r[0]));
            }
        }
        if (version() == Vfio.VFIO_TYPE1_IOMMU) {
            assertDeviceFaults(0, IOVA);
        }
    }
}
