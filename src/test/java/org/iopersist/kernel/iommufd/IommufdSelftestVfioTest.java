package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.junit.jupiter.api.Test;

/**
 * The VFIO compatibility cases of {@code tools/testing/selftests/iommu/iommufd.c} on FIXTURE(iommufd):
 * a fresh iommufd with no compatibility IOAS, over the syscall socket, with Linux's errno.
 */
class IommufdSelftestVfioTest extends IommufdAbiFixture {
    private static final long MOCK_APERTURE_START = 1L << 24;

    VfioType1 type1() {
        return new VfioType1(c, fd);
    }

    @Test
    void simple_ioctls() {
        assertEquals(Vfio.VFIO_API_VERSION, type1().value(Vfio.VFIO_GET_API_VERSION, 0));
        assertEquals(1, type1().value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_TYPE1v2_IOMMU));
        // The rest of iommufd_vfio_check_extension: type1 and unmap-all yes, nesting and VADDR no,
        // cache coherency needs a compatibility IOAS.
        assertEquals(1, type1().value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_TYPE1_IOMMU));
        assertEquals(1, type1().value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_UNMAP_ALL));
        assertEquals(0, type1().value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_TYPE1_NESTING_IOMMU));
        assertEquals(0, type1().value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_UPDATE_VADDR));
        assertEquals(0, type1().value(Vfio.VFIO_CHECK_EXTENSION, 77));
        assertEquals(Errno.ENODEV, err(type1().value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_DMA_CC_IOMMU)));
        // VFIO_IOMMU_DIRTY_PAGES and unknown numbers below iommufd's table: ENOTTY.
        assertEquals(Errno.ENOTTY, err(type1().value(Vfio.VFIO_IOMMU_DIRTY_PAGES, c.scratch())));
        assertEquals(Errno.ENOTTY, err(type1().value(Vfio.VFIO_DEVICE_BIND_IOMMUFD, c.scratch())));
    }

    @Test
    void unmap_cmd() {
        assertEquals(Errno.EINVAL, err(type1().unmap(1, 0, MOCK_APERTURE_START, PAGE)[0]));
        assertEquals(Errno.EINVAL, err(type1().unmap(1 << 31, MOCK_APERTURE_START, PAGE)[0]));
        assertEquals(Errno.ENODEV, err(type1().unmap(0, MOCK_APERTURE_START, PAGE)[0]));
        // iommufd refuses the dirty bitmap and VADDR flags outright.
        assertEquals(Errno.EINVAL, err(type1().unmap(Vfio.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, MOCK_APERTURE_START, PAGE)[0]));
        assertEquals(Errno.EINVAL, err(type1().unmap(Vfio.VFIO_DMA_UNMAP_FLAG_VADDR, MOCK_APERTURE_START, PAGE)[0]));
        // minsz bytes that cannot be read: EFAULT before anything else.
        assertEquals(Errno.EFAULT, err(c.syscall(Syscall.IOCTL, fd, Vfio.VFIO_IOMMU_UNMAP_DMA, 0)));
    }

    @Test
    void map_cmd() {
        final long buffer = c.mmapAnonymous(16 * PAGE);
        assertEquals(Errno.EINVAL, err(type1().map(1, 0, buffer, MOCK_APERTURE_START, PAGE)));
        assertEquals(Errno.EINVAL, err(type1().map(32, 1 << 31, buffer, MOCK_APERTURE_START, PAGE)));
        assertEquals(Errno.EINVAL, err(type1().map(32, Vfio.VFIO_DMA_MAP_FLAG_VADDR, buffer, MOCK_APERTURE_START, PAGE)));
        assertEquals(Errno.ENODEV, err(type1().map(buffer, MOCK_APERTURE_START, PAGE)), "requires a domain to be attached");
        assertEquals(Errno.EFAULT, err(c.syscall(Syscall.IOCTL, fd, Vfio.VFIO_IOMMU_MAP_DMA, 0)));
    }

    @Test
    void info_cmd() {
        final long va = c.mmapAnonymous(PAGE);
        c.memory().writeLong(va, 1); // argsz = 1
        assertEquals(Errno.EINVAL, err(type1().getInfo(va)));
        c.memory().writeLong(va, 24);
        assertEquals(Errno.ENODEV, err(type1().getInfo(va)));
        assertEquals(Errno.EFAULT, err(type1().getInfo(0)));
    }

    @Test
    void set_iommu_cmd() {
        assertEquals(Errno.ENODEV, err(type1().value(Vfio.VFIO_SET_IOMMU, Vfio.VFIO_TYPE1v2_IOMMU)), "requires a domain");
        assertEquals(Errno.ENODEV, err(type1().value(Vfio.VFIO_SET_IOMMU, Vfio.VFIO_TYPE1_IOMMU)));
        assertEquals(Errno.EINVAL, err(type1().value(Vfio.VFIO_SET_IOMMU, Vfio.VFIO_DMA_CC_IOMMU)), "the type first");
    }

    @Test
    void vfio_ioas() {
        assertEquals(Errno.ENODEV, err(type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_GET, 0)), "no compat IOAS yet");
        assertEquals(Errno.ENOENT, err(type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_SET, 0)), "invalid id for SET");
        final int ioas = ioasAlloc();
        assertEquals(0, type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_SET, ioas));
        assertEquals(ioas, type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_GET, 0), "the same id comes back");
        assertEquals(0, type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_CLEAR, 0));
        assertEquals(Errno.ENODEV, err(type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_GET, 0)));
        assertEquals(Errno.EOPNOTSUPP, err(type1().vfioIoas(3, 0)), "unknown op");
        // Destroying the compatibility IOAS clears it, as iommufd_object_remove does.
        assertEquals(0, type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_SET, ioas));
        final var d = struct(org.iopersist.uapi.IommuDestroy.LAYOUT);
        set32(d, org.iopersist.uapi.IommuDestroy.LAYOUT, "id", ioas);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_DESTROY, d));
        assertEquals(Errno.ENODEV, err(type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_GET, 0)));
        // With a compat IOAS and no HWPT on it, every HWPT enforces cache coherency: 1.
        final int other = ioasAlloc();
        assertEquals(0, type1().vfioIoas(Iommufd.IOMMU_VFIO_IOAS_SET, other));
        assertEquals(1, type1().value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_DMA_CC_IOMMU));
        // __reserved is EOPNOTSUPP.
        final java.lang.foreign.MemorySegment s = java.lang.foreign.MemorySegment.ofArray(new byte[12]);
        Iommufd.size(s, 12);
        org.iopersist.uapi.IommuVfioIoas.reserved(s, 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_VFIO_IOAS, s)));
    }

    @Test
    void dispatchReadsTheSizeBeforeTheCommand() {
        // iommufd_fops_ioctl: a number inside the table reads the size first (EFAULT for NULL), a
        // number below it goes to the VFIO ioctls (ENOTTY).
        assertEquals(Errno.EFAULT, err(c.syscall(Syscall.IOCTL, fd, Iommufd.io(';', 0x9f), 0)));
        assertEquals(Errno.ENOTTY, err(c.syscall(Syscall.IOCTL, fd, Iommufd.io(';', 0x9f), c.scratch())));
        assertEquals(Errno.ENOTTY, err(c.syscall(Syscall.IOCTL, fd, Iommufd.io(';', 0xa1), 0)));
        assertEquals(Errno.ENOTTY, err(c.syscall(Syscall.IOCTL, fd, Iommufd.io(';', 0x7f), 0)));
    }

    @Test
    void vfioContainerNodeIsAnIommufdWithMmAccounting() {
        final int container = c.open(Vfio.CONTAINER_PATH, Syscall.O_RDWR);
        final VfioType1 t = new VfioType1(c, container);
        assertEquals(Vfio.VFIO_API_VERSION, t.value(Vfio.VFIO_GET_API_VERSION, 0));
        final var l = org.iopersist.uapi.IommuOption.LAYOUT;
        final var o = struct(l);
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_RLIMIT_MODE);
        o.set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_GET);
        assertEquals(0, c.ioctl(container, Iommufd.IOMMU_OPTION, o));
        assertEquals(1, get64(o, l, "val64"), "opened as /dev/vfio/vfio: IOPT_PAGES_ACCOUNT_MM");
        c.close(container);
    }
}
