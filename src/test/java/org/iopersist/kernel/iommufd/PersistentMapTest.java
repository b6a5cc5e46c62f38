package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.iopersist.kernel.guestmemfs.Guestmemfs;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasMapFile;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/** A persistent context maps only guestmemfs memory, and every area pins exactly what it maps. */
class PersistentMapTest extends IommufdDomainFixture {
    private static final long MIB = 1L << 20;
    private Guestmemfs fs;

    @Override
    String cmdline() {
        return "guestmemfs=32M";
    }

    @Override
    @org.junit.jupiter.api.BeforeEach
    void setUpDomain() {
        fs = rig.kernel.guestmemfs();
        final var l = IommuOption.LAYOUT;
        final var o = struct(l);
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_PERSISTENT);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertTrue(get64(o, l, "val64") > 0);
        ioasId = ioasAlloc();
        devFd = openDevice(0);
        deviceId = bind(devFd, fd);
        hwptId = (int) attachPt(devFd, ioasId);
    }

    int guestFile(final String name, final long size) {
        final int f = c.open("/guestmemfs/" + name, Syscall.O_RDWR | Syscall.O_CREAT);
        c.ftruncate(f, size);
        return f;
    }

    long mapFile(final int ioas, final int file, final long start, final long length, final long iova) {
        final var l = IommuIoasMapFile.LAYOUT;
        final var s = struct(l);
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA | Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE);
        set32(s, l, "ioas_id", ioas);
        set32(s, l, "fd", file);
        set64(s, l, "start", start);
        set64(s, l, "length", length);
        set64(s, l, "iova", iova);
        final long ret = c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP_FILE, s);
        return ret < 0 ? ret : get64(s, l, "iova");
    }

    @Test
    void anonymousMemoryAndMemfdsAreRefused() {
        final long anon = buffer(4);
        assertEquals(Errno.EINVAL, err(map(ioasId, anon, 4 * PAGE, 0x10_0000, true)));
        final int memfd = c.memfdCreate("ram");
        c.ftruncate(memfd, 4 * PAGE);
        assertEquals(Errno.EINVAL, err(mapFile(ioasId, memfd, 0, 4 * PAGE, 0x10_0000)));
    }

    @Test
    void aGuestmemfsMappingIsAcceptedAndReachedByTheDevice() {
        final int f = guestFile("ram", 4 * MIB);
        final long va = c.mmap(0, 4 * MIB, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, f, 0);
        assertEquals(0, map(ioasId, va, 4 * MIB, 0, true), "guest RAM at guest-physical 0");
        assertDeviceReaches(0, 3 * MIB + 5 * PAGE, va + 3 * MIB + 5 * PAGE);
        assertEquals(1, fs.pinsAt("ram", 0));
        assertEquals(1, fs.pinsAt("ram", 2 * MIB));
        assertEquals(Errno.EBUSY.number, org.junit.jupiter.api.Assertions.assertThrows(org.iopersist.uapi.ErrnoException.class,
                () -> c.unlink("/guestmemfs/ram")).errno(), "pinned by the area");
        assertEquals(4 * MIB, unmap(ioasId, 0, 4 * MIB));
        assertEquals(0, fs.pinsAt("ram", 0), "unmap released exactly the area's pins");
        c.munmap(va, 4 * MIB);
        c.close(f);
        c.unlink("/guestmemfs/ram");
    }

    @Test
    void aRangeOnlyPartlyBackedByGuestmemfsIsRefused() {
        final int f = guestFile("ram", 2 * MIB);
        // Anonymous memory right after the file mapping: carve the file mapping out of an anonymous one.
        final long region = c.mmapAnonymous(2 * MIB + 4 * PAGE);
        c.munmap(region, 2 * MIB);
        final long va = c.mmap(region, 2 * MIB, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED | Syscall.MAP_FIXED, f, 0);
        assertEquals(region, va);
        assertEquals(Errno.EINVAL, err(map(ioasId, va + MIB, MIB + 4 * PAGE, 0, true)));
        assertEquals(0, fs.pinsAt("ram", 0), "nothing pinned by the refused map");
    }

    @Test
    void pinsAreCountedAcrossAreasAndFiles() {
        final int f1 = guestFile("a", 4 * MIB);
        final int f2 = guestFile("b", 2 * MIB);
        // Two areas over one block of file a, one area over file b, by fd.
        assertEquals(0, mapFile(ioasId, f1, 0, MIB, 0));
        assertEquals(MIB, mapFile(ioasId, f1, MIB, MIB, MIB));
        assertEquals(4 * MIB, mapFile(ioasId, f2, 0, 2 * MIB, 4 * MIB));
        assertEquals(2, fs.pinsAt("a", 0), "two areas, one block");
        assertEquals(0, fs.pinsAt("a", 2 * MIB));
        assertEquals(1, fs.pinsAt("b", 0));
        // IOAS_COPY makes a third area over the same pages: a third pin.
        assertEquals(8 * MIB, copy(ioasId, 8 * MIB, ioasId, 0, MIB, true));
        assertEquals(3, fs.pinsAt("a", 0));
        assertEquals(MIB, unmap(ioasId, 0, MIB));
        assertEquals(2, fs.pinsAt("a", 0), "one area's pin went");
        assertEquals(Errno.EBUSY.number, org.junit.jupiter.api.Assertions.assertThrows(org.iopersist.uapi.ErrnoException.class,
                () -> c.ftruncate(f1, 0)).errno());
        assertEquals(2 * MIB, unmap(ioasId, 4 * MIB, 2 * MIB));
        assertEquals(0, fs.pinsAt("b", 0));
        c.close(f2);
        c.unlink("/guestmemfs/b");
        assertEquals(0, unmap(ioasId, 0, -1L) >= 0 ? 0 : -1);
        assertEquals(0, fs.pinsAt("a", 0), "unmap-all released the rest");
        assertDeviceFaults(0, 0);
    }
}
