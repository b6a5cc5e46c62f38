package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.Iommufd;
import org.junit.jupiter.api.Test;

/**
 * The selftest's access cases. The selftest drives accesses through IOMMU_TEST_CMD; here the test
 * is the in-kernel driver and calls the access API on the context behind the client's fd.
 */
class IommufdSelftestAccessTest extends IommufdDomainFixture {
    /** A driver that records unmap callbacks and unpins what it is asked to. */
    final class Driver implements Access.Ops {
        final List<long[]> pinned = new ArrayList<>();
        final List<long[]> unmapCalls = new ArrayList<>();
        Access access;

        @Override
        public boolean needsPinPages() {
            return true;
        }

        @Override
        public void unmap(final long iova, final long length) {
            unmapCalls.add(new long[] {iova, length});
            for (long[] p : new ArrayList<>(pinned)) {
                if (p[0] < iova + length && iova < p[0] + p[1]) {
                    Access.unpinPages(access, p[0], p[1]);
                    pinned.remove(p);
                }
            }
        }

        long[] pin(final long iova, final long length) {
            final long[] frames = Access.pinPages(access, iova, length, true);
            pinned.add(new long[] {iova, length});
            return frames;
        }
    }

    final List<Access> created = new ArrayList<>();

    @org.junit.jupiter.api.AfterEach
    void destroyAccesses() {
        for (Access a : created) {
            if (a.users() > 0) {
                Access.destroy(a);
            }
        }
    }

    IommufdCtx ctx() {
        return ((IommufdFile) server.process(c.pid()).fds().get(fd)).ctx();
    }

    Driver newAccess(final int ioas) {
        final Driver d = new Driver();
        d.access = Access.create(ctx(), d);
        created.add(d.access);
        Access.attach(d.access, ioas);
        return d;
    }

    @Test
    void access_pin() {
        final Driver d = newAccess(ioasId);
        final long buf = buffer(BUFFER_SIZE / PAGE);
        final long iova = map(ioasId, buf, BUFFER_SIZE, 0, false);
        for (int npages = 1; npages < 16; npages++) {
            final long[] frames = d.pin(iova, npages * PAGE);
            assertEquals(npages, frames.length);
            for (int i = 0; i < npages; i++) {
                assertEquals(c.memory().physOf(buf + i * PAGE), frames[i]);
            }
            // A second pin of the same range, and a domain coming and going while pinned.
            Access.pinPages(d.access, iova, npages * PAGE, false);
            final int dev1 = openDevice(1);
            final int dev1Id = bind(dev1, fd);
            final long hwpt = hwptAlloc(dev1Id, ioasId, 0);
            assertEquals(hwpt, attachPt(dev1, (int) hwpt));
            assertDeviceReaches(1, iova, buf);
            c.close(dev1);
            assertEquals(0, destroy((int) hwpt));
            Access.unpinPages(d.access, iova, npages * PAGE);
            Access.unpinPages(d.access, iova, npages * PAGE);
            d.pinned.clear();
        }
        assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> Access.unpinPages(d.access, iova, PAGE)).errno(),
                "unpin of what is not pinned");
        assertEquals(Errno.ENOENT, assertThrows(KernelException.class,
                () -> Access.pinPages(d.access, iova + BUFFER_SIZE, PAGE, false)).errno(), "a hole");
        assertEquals(Errno.EBUSY, err(destroy(ioasId)), "the access holds the IOAS");
        Access.destroy(d.access);
        assertEquals(0, detachPt(devFd));
        assertEquals(0, destroy(ioasId), "destroying the access released the IOAS");
    }

    @Test
    void access_pin_unmap() {
        final Driver d = newAccess(ioasId);
        final long buf = buffer(BUFFER_SIZE / PAGE);
        final long iova = map(ioasId, buf, BUFFER_SIZE, 0, false);
        d.pin(iova + PAGE, 2 * PAGE);
        // UNMAP asks the driver to let go, then succeeds.
        assertEquals(BUFFER_SIZE, unmap(ioasId, iova, BUFFER_SIZE));
        assertEquals(1, d.unmapCalls.size());
        assertEquals(iova, d.unmapCalls.get(0)[0]);
        assertEquals(BUFFER_SIZE, d.unmapCalls.get(0)[1]);
        assertEquals(Errno.EINVAL, assertThrows(KernelException.class,
                () -> Access.unpinPages(d.access, iova + PAGE, 2 * PAGE)).errno(), "the pin is gone");
        for (long i = 0; i < BUFFER_SIZE / PAGE; i++) {
            assertEquals(1, refs.count(c.memory().physOf(buf + i * PAGE)), "every page unpinned");
        }
    }

    @Test
    void access_pin_unmap_stubborn() {
        // A driver that never unpins: the unmap gives up with EDEADLK instead of hanging.
        final IommufdCtx ctx = ctx();
        final Access stubborn = Access.create(ctx, new Access.Ops() {
            @Override
            public boolean needsPinPages() {
                return true;
            }

            @Override
            public void unmap(final long iova, final long length) {
            }
        });
        created.add(stubborn);
        Access.attach(stubborn, ioasId);
        final long buf = buffer(1);
        final long iova = map(ioasId, buf, PAGE, 0, false);
        Access.pinPages(stubborn, iova, PAGE, false);
        assertEquals(Errno.EDEADLK, err(unmap(ioasId, iova, PAGE)));
        Access.unpinPages(stubborn, iova, PAGE);
        assertEquals(PAGE, unmap(ioasId, iova, PAGE));
    }

    @Test
    void access_rw() {
        final Driver d = newAccess(ioasId);
        final long buf = buffer(4);
        final long iova = map(ioasId, buf, 4 * PAGE, 0, false);
        for (long offset : new long[] {0, 1, PAGE - 3, PAGE, 2 * PAGE + 5}) {
            for (int len : new int[] {1, 7, 4096, 5000}) {
                if (offset + len > 4 * PAGE) {
                    continue;
                }
                final byte[] data = new byte[len];
                for (int i = 0; i < len; i++) {
                    data[i] = (byte) (offset + i * 31 + len);
                }
                Access.rw(d.access, iova + offset, MemorySegment.ofArray(data), true);
                c.memory().flush();
                assertArrayEquals(data, c.memory().readBytes(buf + offset, len), "write at +" + offset + " len " + len);
                final byte[] back = new byte[len];
                Access.rw(d.access, iova + offset, MemorySegment.ofArray(back), false);
                assertArrayEquals(data, back);
            }
        }
        assertEquals(Errno.ENOENT, assertThrows(KernelException.class,
                () -> Access.rw(d.access, iova + 4 * PAGE - 1, MemorySegment.ofArray(new byte[2]), false)).errno(),
                "runs off the end of the area");
        // A read-only area refuses writes.
        final long ro = buffer(1);
        final var l = IommuIoasMap.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_READABLE);
        set32(s, l, "ioas_id", ioasId);
        set64(s, l, "user_va", ro);
        set64(s, l, "length", PAGE);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s));
        final long roIova = get64(s, l, "iova");
        assertEquals(Errno.EPERM, assertThrows(KernelException.class,
                () -> Access.rw(d.access, roIova, MemorySegment.ofArray(new byte[8]), true)).errno());
        Access.rw(d.access, roIova, MemorySegment.ofArray(new byte[8]), false);
    }

    @Test
    void access_rw_unaligned() {
        // Odd lengths at odd offsets straddling two pages, through an access that does not pin.
        final Access a = Access.create(ctx(), new Access.Ops() {
            @Override
            public boolean needsPinPages() {
                return false;
            }

            @Override
            public void unmap(final long iova, final long length) {
            }
        });
        created.add(a);
        Access.attach(a, ioasId);
        final long buf = buffer(2);
        final long iova = map(ioasId, buf, 2 * PAGE, 0, false);
        final byte[] data = new byte[13];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (0xA0 + i);
        }
        Access.rw(a, iova + PAGE - 6, MemorySegment.ofArray(data), true);
        c.memory().flush();
        assertArrayEquals(data, c.memory().readBytes(buf + PAGE - 6, data.length));
    }

    @Test
    void access_domain_destory() {
        // (sic, the selftest's name) An access pins inside the area; the domain goes; the unpin still works.
        final Driver d = newAccess(ioasId);
        final long buf = buffer(BUFFER_SIZE / PAGE);
        final long iova = map(ioasId, buf, BUFFER_SIZE, 0, false);
        final long[] frames = d.pin(iova + PAGE, PAGE);
        assertEquals(c.memory().physOf(buf + PAGE), frames[0]);
        assertEquals(0, detachPt(devFd), "the auto HWPT and its domain go");
        assertEquals(2, refs.count(frames[0]), "the access's pin keeps the page");
        Access.unpinPages(d.access, iova + PAGE, PAGE);
        assertEquals(1, refs.count(frames[0]));
    }

    @Test
    void user_copy() {
        // Pages mapped in a domain-less IOAS are COPYed into the domain's IOAS and reach the device.
        // (The selftest also swaps the access between IOASes with a test command; not modelled.)
        final int plain = ioasAlloc();
        final Driver d = newAccess(plain);
        final long buf = buffer(BUFFER_SIZE / PAGE);
        final long src = map(plain, buf, BUFFER_SIZE, 0, false);
        d.pin(src, BUFFER_SIZE);
        final long dst = copy(ioasId, 0, plain, src, BUFFER_SIZE, false);
        assertTrue(dst > 0);
        assertDeviceReaches(0, dst + 3 * PAGE, buf + 3 * PAGE);
    }

    @Test
    void accessThatPinsRaisesTheAlignment() {
        final int bare = ioasAlloc();
        assertEquals(1, iovaRanges(bare, 1)[0], "no domain, no access: alignment 1");
        final Driver d = newAccess(bare);
        assertEquals(PAGE, iovaRanges(bare, 1)[0]);
        final long buf = buffer(1);
        assertEquals(Errno.EINVAL, err(map(bare, buf + 1, PAGE - 1, 0, false)), "sub-page auto map no longer fits");
        Access.detach(d.access);
        assertEquals(1, iovaRanges(bare, 1)[0]);
        assertTrue(map(bare, buf + 1, PAGE - 1, 0, false) > 0);
    }
}
