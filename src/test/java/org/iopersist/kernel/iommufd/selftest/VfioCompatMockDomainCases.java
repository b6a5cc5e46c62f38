package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.IommuVfioIoas;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioIommuType1DmaMap;
import org.iopersist.uapi.VfioIommuType1DmaUnmap;
import org.junit.jupiter.api.Test;

/**
 * FIXTURE(vfio_compat_mock_domain) of the selftest: an IOAS with a mock domain (what VFIO would
 * consider a group) set as the compatibility IOAS, then VFIO_SET_IOMMU with the variant's type.
 */
abstract class VfioCompatMockDomainCases extends SelftestFixture {
    /** FIXTURE_VARIANT(vfio_compat_mock_domain): the type1 version. */
    abstract int version();

    int ioasId;

    @Override
    protected void setUpFixture() {
        // Create what VFIO would consider a group
        ioasId = ioasAlloc();
        mockDomain(ioasId);
        // Attach it to the vfio compat
        final MemorySegment cmd = struct(IommuVfioIoas.SIZE);
        IommuVfioIoas.op(cmd, Iommufd.IOMMU_VFIO_IOAS_SET);
        IommuVfioIoas.ioasId(cmd, ioasId);
        ok(ioctl(Iommufd.IOMMU_VFIO_IOAS, cmd));
        ok(c.syscall(Syscall.IOCTL, fd, Vfio.VFIO_SET_IOMMU, version()));
    }

    @Test
    void simple_close() {
    }

    @Test
    void option_huge_pages() {
        final MemorySegment cmd = struct(IommuOption.SIZE);
        IommuOption.optionId(cmd, Iommufd.IOMMU_OPTION_HUGE_PAGES);
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_GET);
        IommuOption.val64(cmd, 3);
        IommuOption.objectId(cmd, ioasId);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        assertEquals(version() == Vfio.VFIO_TYPE1_IOMMU ? 0 : 1, IommuOption.val64(cmd));
    }

    /**
     * ioctl_check_buf: the command in {@code buffer} (its first u32 its length), bytes after it
     * filled with 0xAA, which must still be there after the ioctl.
     */
    private void ioctlCheckBuf(final int cmd, final int cmdLen, final byte[] head) {
        final byte[] fill = new byte[(int) BUFFER_SIZE];
        Arrays.fill(fill, cmdLen, fill.length, (byte) 0xAA);
        System.arraycopy(head, 0, fill, 0, Math.min(head.length, cmdLen));
        c.memory().writeBytes(buffer, fill);
        ok(c.syscall(Syscall.IOCTL, fd, cmd, buffer));
        final byte[] after = c.memory().readBytes(buffer + cmdLen, (int) BUFFER_SIZE - cmdLen);
        for (byte b : after) {
            assertEquals((byte) 0xAA, b, "the kernel wrote past argsz");
        }
    }

    /** A zeroed vfio_iommu_type1_info with {@code argsz}. */
    private static byte[] info(final int argsz) {
        final byte[] b = new byte[24];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(0, argsz);
        return b;
    }

    private ByteBuffer readBuffer(final int length) {
        return ByteBuffer.wrap(c.memory().readBytes(buffer, length)).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** check_vfio_info_cap_chain. */
    private void checkVfioInfoCapChain(final ByteBuffer b) {
        final int argsz = b.getInt(0);
        int cap = b.getInt(16);
        assertTrue(argsz >= cap + 8);
        while (true) {
            final int next = b.getInt(cap + 4);
            final int capSize = (next != 0 ? next : argsz) - cap;
            switch (b.getShort(cap)) {
                case Vfio.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE -> {
                    assertEquals(1, b.getShort(cap + 2));
                    assertEquals(1, b.getInt(cap + 8));
                    assertEquals(MOCK_APERTURE_START, b.getLong(cap + 16));
                    assertEquals(MOCK_APERTURE_LAST, b.getLong(cap + 24));
                }
                case Vfio.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL -> {
                    assertEquals(1, b.getShort(cap + 2));
                    // The selftest's sizeof(*data) (12): the loop above never reaches a whole chain,
                    // where since "vfio: align capability structures" the next one starts at 16.
                    assertEquals(16, capSize);
                }
                default -> throw new AssertionError("unknown capability " + b.getShort(cap));
            }
            if (next == 0) {
                break;
            }
            assertTrue(argsz >= next + 8);
            assertTrue(next >= cap);
            cap = next;
        }
    }

    @Test
    void get_info() {
        final int flags = Vfio.VFIO_IOMMU_INFO_PGSIZES | Vfio.VFIO_IOMMU_INFO_CAPS;
        // Pre-cap ABI
        ioctlCheckBuf(Vfio.VFIO_IOMMU_GET_INFO, 16, info(16));
        ByteBuffer b = readBuffer(24);
        assertNotEquals(0, b.getLong(8));
        assertEquals(flags, b.getInt(4));
        // Read the cap chain size
        ioctlCheckBuf(Vfio.VFIO_IOMMU_GET_INFO, 24, info(24));
        b = readBuffer(24);
        assertNotEquals(0, b.getLong(8));
        assertEquals(flags, b.getInt(4));
        assertEquals(0, b.getInt(16));
        assertTrue(24 < b.getInt(0));
        // Read the caps, kernel should never create a corrupted caps
        final int caplen = b.getInt(0);
        for (int i = 24; i < caplen; i++) {
            ioctlCheckBuf(Vfio.VFIO_IOMMU_GET_INFO, i, info(i));
            b = readBuffer(caplen);
            assertEquals(flags, b.getInt(4));
            if (b.getInt(16) == 0) {
                continue;
            }
            checkVfioInfoCapChain(b);
        }
        // Beyond the selftest's loop: with argsz = caplen the whole chain comes back, and checks out:
        // every capability 8-byte aligned, DMA_AVAIL at 24 and IOVA_RANGE at 40.
        ioctlCheckBuf(Vfio.VFIO_IOMMU_GET_INFO, caplen, info(caplen));
        b = readBuffer(caplen);
        assertEquals(24, b.getInt(16));
        assertEquals(40, b.getInt(24 + 4), "DMA_AVAIL's next");
        assertEquals(56 + 16, caplen, "one usable range");
        checkVfioInfoCapChain(b);
        // Room for DMA_AVAIL but not for where the next one starts: its next stays 0.
        ioctlCheckBuf(Vfio.VFIO_IOMMU_GET_INFO, 36, info(36));
        b = readBuffer(40);
        assertEquals(Vfio.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, b.getShort(24));
        assertEquals(0, b.getInt(24 + 4), "a next naming a capability past argsz");
    }

    private long mapDma(final long vaddr, final long iova, final long size) {
        final MemorySegment map = MemorySegment.ofArray(new long[4]);
        Vfio.argsz(map, (int) VfioIommuType1DmaMap.SIZE);
        Vfio.flags(map, Vfio.VFIO_DMA_MAP_FLAG_READ | Vfio.VFIO_DMA_MAP_FLAG_WRITE);
        VfioIommuType1DmaMap.vaddr(map, vaddr);
        VfioIommuType1DmaMap.size(map, size);
        VfioIommuType1DmaMap.iova(map, iova);
        return ioctl(Vfio.VFIO_IOMMU_MAP_DMA, map);
    }

    /** VFIO_IOMMU_UNMAP_DMA: {ret, size}. */
    private long[] unmapDma(final int flags, final long iova, final long size) {
        final MemorySegment unmap = MemorySegment.ofArray(new long[3]);
        Vfio.argsz(unmap, (int) VfioIommuType1DmaUnmap.SIZE);
        Vfio.flags(unmap, flags);
        VfioIommuType1DmaUnmap.iova(unmap, iova);
        VfioIommuType1DmaUnmap.size(unmap, size);
        final long ret = ioctl(Vfio.VFIO_IOMMU_UNMAP_DMA, unmap);
        return new long[] {ret, VfioIommuType1DmaUnmap.size(unmap)};
    }

    /** shuffle_array. */
    private static void shuffle(final long[] array, final Random rand) {
        for (int i = 0; i != array.length; i++) {
            final long tmp = array[i];
            final int other = rand.nextInt(array.length - i);
            array[i] = array[other];
            array[other] = tmp;
        }
    }

    @Test
    void map() {
        // Simple map/unmap
        ok(mapDma(buffer, MOCK_APERTURE_START, BUFFER_SIZE));
        long[] r = unmapDma(0, MOCK_APERTURE_START, BUFFER_SIZE);
        ok(r[0]);
        assertEquals(BUFFER_SIZE, r[1]);
        // UNMAP_FLAG_ALL requires 0 iova/size
        ok(mapDma(buffer, MOCK_APERTURE_START, BUFFER_SIZE));
        err(Errno.EINVAL, unmapDma(Vfio.VFIO_DMA_UNMAP_FLAG_ALL, MOCK_APERTURE_START, BUFFER_SIZE)[0]);
        r = unmapDma(Vfio.VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
        ok(r[0]);
        assertEquals(BUFFER_SIZE, r[1]);
        // Small pages
        final long[] pagesIova = new long[(int) (BUFFER_SIZE / PAGE_SIZE)];
        for (int i = 0; i != pagesIova.length; i++) {
            pagesIova[i] = MOCK_APERTURE_START + i * PAGE_SIZE;
            ok(mapDma(buffer + i * PAGE_SIZE, pagesIova[i], PAGE_SIZE));
        }
        shuffle(pagesIova, new Random(1));
        for (long iova : pagesIova) {
            ok(unmapDma(0, iova, PAGE_SIZE)[0]);
        }
    }

    @Test
    void huge_map() {
        final long bufSize = HUGEPAGE_SIZE * 2;
        // Test huge pages and splitting
        final long buf = mmap(bufSize, Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS | Syscall.MAP_HUGETLB | Syscall.MAP_POPULATE);
        ok(mapDma(buf, MOCK_APERTURE_START, bufSize));
        final long[] pagesIova = new long[16];
        final long piece = bufSize / pagesIova.length;
        for (int i = 0; i != pagesIova.length; i++) {
            pagesIova[i] = MOCK_APERTURE_START + i * piece;
        }
        shuffle(pagesIova, new Random(2));
        // type1 mode can cut up larger mappings, type1v2 always fails
        for (long iova : pagesIova) {
            if (version() == Vfio.VFIO_TYPE1_IOMMU) {
                ok(unmapDma(0, iova, piece)[0]);
            } else {
                err(Errno.ENOENT, unmapDma(0, iova, piece)[0]);
            }
        }
    }
}
