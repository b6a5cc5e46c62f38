package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.LongRange;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
import org.junit.jupiter.api.Test;

/** The IOVA bookkeeping of an IOAS: reserved, allowed and area sets, and iopt_alloc_iova's policy. */
class IoPagetableTest {
    /** A fresh table, its iova_rwsem held by this thread as every caller of these helpers holds it. */
    private static IoPagetable locked() {
        final IoPagetable t = new IoPagetable();
        t.iovaLock.writeLock().lock();
        return t;
    }

    /** An area with no pages behind it: the interval set looks only at its range. */
    private static IoptArea area(final long start, final long last) {
        return new IoptArea(start, last, IoasDomain.IOMMU_READ, null, 0);
    }

    private static Errno errno(final Runnable r) {
        return assertThrows(KernelException.class, r::run).errno();
    }

    @Test
    void freshSpaceIsOneRangeAndAllocationSkipsPageZero() {
        final IoPagetable t = locked();
        assertEquals(List.of(new IovaInterval(0, -1L)), t.usableRanges());
        assertEquals(4096, t.allocIova(0, 4096));
        assertEquals(0x10000, t.allocIova(0, 0x10000), "aligned to the rounded-up length");
        assertEquals(0x200000, t.allocIova(0, 0x300000), "capped at 2 MiB");
    }

    @Test
    void autoIovaKeepsThePageOffsetAndTheAddressAlignment() {
        final IoPagetable t = locked();
        final long iova = t.allocIova(0x7f00_0000_1234L, 0x2000);
        assertEquals(0x234, iova & 0xfff, "same offset in the page as the user address");
        assertEquals(0x1000L + 0x234, iova);
        // A 64 KiB buffer at a 64 KiB-aligned address gets a 64 KiB-aligned IOVA.
        t.insertArea(area(0x1000, 0x2fff));
        final long big = t.allocIova(0x7f00_0001_0000L, 0x10000);
        assertEquals(0, big % 0x10000);
    }

    @Test
    void firstFitAroundAreasAndReservations() {
        final IoPagetable t = locked();
        t.insertArea(area(0x1000, 0x1fff));
        t.reserve(0x2000, 0x4fff, "owner");
        assertEquals(0x5000, t.allocIova(0, 0x1000));
        t.insertArea(area(0x5000, 0x5fff));
        assertEquals(0x8000, t.allocIova(0, 0x4000), "first 16 KiB-aligned hole");
        assertEquals(Errno.EADDRINUSE, errno(() -> t.reserve(0x1800, 0x1800, "x")), "area there");
        t.unreserve("owner");
        assertEquals(0x2000, t.allocIova(0, 0x1000));
    }

    @Test
    void allowedRangesConfineAllocationAndConflictWithReservations() {
        final IoPagetable t = locked();
        t.setAllowed(List.of(new IovaInterval(0x100000, 0x1fffff)));
        assertEquals(0x100000, t.allocIova(0, 0x1000));
        assertEquals(Errno.ENOSPC, errno(() -> t.allocIova(0, 0x200000)));
        assertEquals(Errno.EADDRINUSE, errno(() -> t.reserve(0x180000, 0x180fff, "dev")));
        assertEquals(Errno.EINVAL, errno(() -> t.setAllowed(List.of(new IovaInterval(0, 0x2000), new IovaInterval(0x1000, 0x3000)))));
        t.setAllowed(List.of());
        t.reserve(0x180000, 0x180fff, "dev");
        assertEquals(Errno.EADDRINUSE, errno(() -> t.setAllowed(List.of(new IovaInterval(0x100000, 0x1fffff)))));
        assertEquals(List.of(), t.allowedRanges(), "a failed replace keeps the old list");
    }

    @Test
    void usableRangesAreTheHolesOfTheReservedSet() {
        final IoPagetable t = locked();
        t.reserve(0xfee00000L, 0xfeefffffL, "msi");
        t.reserve(1L << 48, -1L, "aperture");
        t.reserve(0, 0, "zero");
        assertEquals(List.of(new IovaInterval(1, 0xfedfffffL), new IovaInterval(0xfef00000L, (1L << 48) - 1)), t.usableRanges());
    }

    @Test
    void fixedPlacementErrnos() {
        final IoPagetable t = locked();
        t.setIovaAlignment(4096);
        t.insertArea(area(0x10000, 0x1ffff));
        t.reserve(0x40000, 0x40fff, "r");
        assertEquals(Errno.EINVAL, errno(() -> t.checkFixed(0x1001, 0x1000)));
        assertEquals(Errno.EEXIST, errno(() -> t.checkFixed(0x1f000, 0x2000)));
        assertEquals(Errno.EINVAL, errno(() -> t.checkFixed(0x3f000, 0x2000)));
        assertEquals(Errno.EOVERFLOW, errno(() -> t.checkFixed(-4096L, 0x2000)));
        t.checkFixed(0, 0x1000);
        assertEquals(Errno.EINVAL, errno(() -> t.allocIova(0x1800, 0x800)), "natural alignment below the IOAS's");
        assertEquals(Errno.EOVERFLOW, errno(() -> t.allocIova(0, 0)));
        assertEquals(Errno.EOVERFLOW, errno(() -> t.allocIova(0, Long.MAX_VALUE)));
    }

    @Property(tries = 200)
    void allocatedIovasNeverOverlapAndRespectThePolicy(@ForAll @IntRange(min = 1, max = 40) final int count,
                                                       @ForAll @LongRange(min = 1, max = 1 << 22) final long seed) {
        final IoPagetable t = locked();
        final java.util.Random rnd = new java.util.Random(seed);
        t.reserve(0xfee00000L, 0xfeefffffL, "msi");
        for (int i = 0; i < count; i++) {
            final long length = (1 + rnd.nextInt(600)) * 4096L;
            // Page-aligned user addresses: Linux ORs the page offset into an aligned hole start, which
            // only keeps the offset when holes are page aligned (as they are once a domain is attached).
            final long addr = rnd.nextInt(1 << 20) * 4096L;
            final long iova = t.allocIova(addr, length);
            final long last = iova + length - 1;
            assertTrue(iova != 0 && Long.compareUnsigned(last, -4096L) < 0);
            long align = Long.highestOneBit(length - 1) << 1;
            if (addr != 0) {
                align = Math.min(align, Long.lowestOneBit(addr));
            }
            align = Math.min(align, 2L << 20);
            assertEquals(0, iova % align, "iova 0x" + Long.toHexString(iova) + " aligned to 0x" + Long.toHexString(align));
            assertTrue(!t.areaIntersects(iova, last) && !t.reservedIntersects(iova, last));
            t.insertArea(area(iova, last));
        }
    }
}
