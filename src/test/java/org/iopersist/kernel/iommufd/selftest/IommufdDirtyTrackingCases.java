package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.MemorySegment;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwptGetDirtyBitmap;
import org.iopersist.uapi.IommuHwptSetDirtyTracking;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * FIXTURE(iommufd_dirty_tracking) of the selftest: a mock domain (with 1 MiB IO pages in the huge
 * variants, whose buffer is MAP_HUGETLB) and a buffer of the variant's size at a 2 MiB aligned
 * address, each variant a subclass.
 */
abstract class IommufdDirtyTrackingCases extends SelftestFixture {
    /** FIXTURE_VARIANT(iommufd_dirty_tracking). */
    record Variant(long bufferSize, boolean hugepages) {
    }

    abstract Variant variant();

    /** Where this fixture's buffer (self->buffer) goes: 2 MiB aligned, clear of the global one. */
    private static final long DIRTY_BUFFER_VA = 0x7d00_0000_0000L;

    int ioasId;
    int hwptId;
    int stdevId;
    int idevId;
    long pageSize;
    long bitmapSize;
    long bitmap;
    long bitmapAlloc;
    long dirtyBuffer;

    @Override
    protected long machineMemory() {
        return variant().bufferSize() + (256L << 20);
    }

    @Override
    protected void setUpFixture() {
        int flags = Syscall.MAP_SHARED | Syscall.MAP_ANONYMOUS | Syscall.MAP_FIXED;
        if (variant().hugepages()) {
            // MAP_POPULATE will cause the kernel to fail mmap if THPs are not available.
            flags |= Syscall.MAP_HUGETLB | Syscall.MAP_POPULATE;
        }
        dirtyBuffer = c.mmap(DIRTY_BUFFER_VA, variant().bufferSize(), Syscall.PROT_READ | Syscall.PROT_WRITE, flags, -1, 0);
        pageSize = MOCK_PAGE_SIZE;
        bitmapSize = variant().bufferSize() / pageSize;
        // Provision with an extra (PAGE_SIZE) for the unaligned case
        bitmapAlloc = (bitmapSize + 7) / 8 + PAGE_SIZE;
        bitmap = c.mmapAnonymous(bitmapAlloc);
        ioasId = ioasAlloc();
        // Enable 1M mock IOMMU hugepages
        final int[] ids = variant().hugepages() ? mockDomainFlags(ioasId, IommuTestCmd.MOCK_FLAGS_DEVICE_HUGE_IOVA) : mockDomain(ioasId);
        stdevId = ids[0];
        hwptId = ids[1];
        idevId = ids[2];
    }

    @Override
    protected void tearDownFixture() {
        c.munmap(dirtyBuffer, variant().bufferSize());
        c.munmap(bitmap, bitmapAlloc);
    }

    private void setDirtyTracking(final int hwpt, final boolean enabled) {
        final MemorySegment cmd = struct(IommuHwptSetDirtyTracking.SIZE);
        IommuHwptSetDirtyTracking.flags(cmd, enabled ? Iommufd.IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0);
        IommuHwptSetDirtyTracking.hwptId(cmd, hwpt);
        ok(ioctl(Iommufd.IOMMU_HWPT_SET_DIRTY_TRACKING, cmd));
    }

    private void getDirtyBitmap(final int hwpt, final long length, final long iova, final long ps, final long bmap,
            final int flags) {
        final MemorySegment cmd = struct(IommuHwptGetDirtyBitmap.SIZE);
        IommuHwptGetDirtyBitmap.hwptId(cmd, hwpt);
        IommuHwptGetDirtyBitmap.flags(cmd, flags);
        IommuHwptGetDirtyBitmap.iova(cmd, iova);
        IommuHwptGetDirtyBitmap.length(cmd, length);
        IommuHwptGetDirtyBitmap.pageSize(cmd, ps);
        IommuHwptGetDirtyBitmap.data(cmd, bmap);
        ok(ioctl(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, cmd));
    }

    private static boolean testBit(final byte[] b, final long nr) {
        return (b[(int) (nr >>> 3)] & (1 << (nr & 7))) != 0;
    }

    /**
     * _test_mock_dirty_bitmaps: marks every other IOPTE dirty in the mock domain (IOMMU_TEST_OP_DIRTY),
     * reads the bitmap (every bit of a dirty IOPTE set, none other), reads it again (all clear, or
     * the same with NO_CLEAR).
     */
    private void testMockDirtyBitmaps(final int hwpt, final long length, final long iova, final long ps, final long ptePageSize,
            final long bmap, final long nbits, final int flags) {
        final long npte = ptePageSize / ps;
        final long pteset = 2 * npte;
        final long nr = nbits / pteset != 0 ? nbits / pteset : 1;
        final int bytes = (int) ((nbits + 7) / 8);
        // Mark all even bits as dirty in the mock domain
        final byte[] set = new byte[bytes];
        for (long i = 0; i < nbits; i += pteset) {
            set[(int) (i >>> 3)] |= (byte) (1 << (i & 7));
        }
        c.memory().writeBytes(bmap, set);
        final MemorySegment dirty = testCmd(IommuTestCmd.IOMMU_TEST_OP_DIRTY, hwpt);
        IommuTestCmd.dirtyIova(dirty, iova);
        IommuTestCmd.dirtyLength(dirty, length);
        IommuTestCmd.dirtyPageSize(dirty, ps);
        IommuTestCmd.dirtyUptr(dirty, bmap);
        ok(test(dirty));
        assertEquals(nr, IommuTestCmd.dirtyOutNrDirty(dirty));
        // Expect all even bits as dirty in the user bitmap
        c.memory().writeBytes(bmap, new byte[bytes]);
        getDirtyBitmap(hwpt, length, iova, ps, bmap, flags);
        byte[] got = c.memory().readBytes(bmap, bytes);
        for (long i = 0; i < nbits; i += pteset) {
            for (long j = 0; j < pteset; j++) {
                assertEquals(j < npte, testBit(got, i + j), "bit " + (i + j));
            }
            assertEquals(i % pteset == 0, testBit(got, i));
        }
        c.memory().writeBytes(bmap, new byte[bytes]);
        getDirtyBitmap(hwpt, length, iova, ps, bmap, flags);
        // It was read already -- expect all zeroes
        got = c.memory().readBytes(bmap, bytes);
        for (long i = 0; i < nbits; i += pteset) {
            for (long j = 0; j < pteset; j++) {
                assertEquals(j < npte && (flags & Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) != 0, testBit(got, i + j),
                        "bit " + (i + j) + " on the second read");
            }
        }
    }

    @Test
    void enforce_dirty() {
        // Regular case
        final int devFlags = IommuTestCmd.MOCK_FLAGS_DEVICE_NO_DIRTY;
        final int hwpt = hwptAlloc(idevId, ioasId, Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        final int stddev = mockDomain(hwpt)[0];
        err(Errno.EINVAL, mockDomainRaw(hwpt, devFlags)[0]);
        destroy(stddev);
        destroy(hwpt);
        // IOMMU device does not support dirty tracking
        final int otherIoas = ioasAlloc();
        final int[] ids = mockDomainFlags(otherIoas, devFlags);
        err(Errno.EOPNOTSUPP, hwptAllocRaw(ids[2], otherIoas, Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
        destroy(ids[0]);
    }

    @Test
    void set_dirty_tracking() {
        final int hwpt = hwptAlloc(idevId, ioasId, Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        final int stddev = mockDomain(hwpt)[0];
        setDirtyTracking(hwpt, true);
        setDirtyTracking(hwpt, false);
        destroy(stddev);
        destroy(hwpt);
    }

    @Test
    void device_dirty_capability() {
        final int hwpt = hwptAlloc(idevId, ioasId, 0);
        final int stddev = mockDomain(hwpt)[0];
        final long[] info = getHwInfoRaw(idevId, 0, 0);
        ok(info[0]);
        assertEquals(1, info[3] & 1, "IOMMU_HW_CAP_DIRTY_TRACKING");
        destroy(stddev);
        destroy(hwpt);
    }

    private void dirtyBitmaps(final int flags) {
        final long ptePageSize = variant().hugepages() ? MOCK_HUGE_PAGE_SIZE : MOCK_PAGE_SIZE;
        final int otherIoas = ioasAlloc();
        mapFixedId(otherIoas, dirtyBuffer, variant().bufferSize(), MOCK_APERTURE_START);
        final int hwpt = hwptAlloc(idevId, otherIoas, Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        setDirtyTracking(hwpt, true);
        testMockDirtyBitmaps(hwpt, variant().bufferSize(), MOCK_APERTURE_START, pageSize, ptePageSize, bitmap, bitmapSize, flags);
        // PAGE_SIZE unaligned bitmap
        testMockDirtyBitmaps(hwpt, variant().bufferSize(), MOCK_APERTURE_START, pageSize, ptePageSize, bitmap + MOCK_PAGE_SIZE,
                bitmapSize, flags);
        // u64 unaligned bitmap
        testMockDirtyBitmaps(hwpt, variant().bufferSize(), MOCK_APERTURE_START, pageSize, ptePageSize, bitmap + 0xff1,
                bitmapSize, flags);
        destroy(hwpt);
    }

    @Test
    void get_dirty_bitmap() {
        dirtyBitmaps(0);
    }

    @Test
    void get_dirty_bitmap_no_clear() {
        dirtyBitmaps(Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
    }
}
