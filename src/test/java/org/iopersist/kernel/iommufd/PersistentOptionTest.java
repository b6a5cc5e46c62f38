package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/** IOMMU_OPTION_PERSISTENT on a booted kernel: SET on empty and non-empty contexts, GET, id reuse. */
class PersistentOptionTest extends IommufdDomainFixture {
    @Override
    void setUpDomain() {
        // No device or IOAS up front: SET needs an empty context.
    }

    long persistent(final int iommufd, final int op) {
        final StructLayout l = IommuOption.LAYOUT;
        final MemorySegment o = struct(l);
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_PERSISTENT);
        IommuOption.op(o, op);
        final long ret = c.ioctl(iommufd, Iommufd.IOMMU_OPTION, o);
        return ret < 0 ? ret : get64(o, l, "val64");
    }

    @Test
    void setOnAnEmptyContextGivesAKernelWideId() {
        assertEquals(0, persistent(fd, Iommufd.IOMMU_OPTION_OP_GET));
        final long id = persistent(fd, Iommufd.IOMMU_OPTION_OP_SET);
        assertTrue(id >= 1);
        assertEquals(id, persistent(fd, Iommufd.IOMMU_OPTION_OP_GET));
        assertEquals(id, persistent(fd, Iommufd.IOMMU_OPTION_OP_SET), "SET again answers the same id");
        final int other = c.open("/dev/iommu", Syscall.O_RDWR);
        final long id2 = persistent(other, Iommufd.IOMMU_OPTION_OP_SET);
        assertNotEquals(id, id2, "unique across the kernel, not per context");
        c.close(other);
        final int third = c.open("/dev/iommu", Syscall.O_RDWR);
        assertEquals(id2, persistent(third, Iommufd.IOMMU_OPTION_OP_SET), "a closed context's id is free again");
    }

    @Test
    void setOnAContextWithObjectsIsEbusy() {
        ioasAlloc();
        assertEquals(Errno.EBUSY, err(persistent(fd, Iommufd.IOMMU_OPTION_OP_SET)));
        assertEquals(0, persistent(fd, Iommufd.IOMMU_OPTION_OP_GET));
        final StructLayout l = IommuOption.LAYOUT;
        final MemorySegment o = struct(l);
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_PERSISTENT);
        set32(o, l, "object_id", 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)), "a context option has no object");
    }

    @Test
    void hwptsOfAPersistentContextArePersistentDomains() {
        assertTrue(persistent(fd, Iommufd.IOMMU_OPTION_OP_SET) > 0);
        ioasId = ioasAlloc();
        devFd = openDevice(0);
        deviceId = bind(devFd, fd);
        hwptId = (int) attachPt(devFd, ioasId);
        assertTrue(domainOf(0).persistent(), "the auto HWPT's domain");
        final long hwpt = hwptAlloc(deviceId, ioasId, 0);
        assertEquals(hwpt, attachPt(devFd, (int) hwpt));
        assertTrue(domainOf(0).persistent(), "an allocated HWPT's domain");
    }
}
