package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.MemorySegment;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuHwInfo;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.IommuVfioIoas;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioIommuType1DmaMap;
import org.iopersist.uapi.VfioIommuType1DmaUnmap;
import org.junit.jupiter.api.Test;

/** FIXTURE(iommufd) of {@code tools/testing/selftests/iommu/iommufd.c}: a bare iommufd. */
class IommufdTest extends SelftestFixture {
    @Test
    void simple_close() {
    }

    @Test
    void cmd_fail() {
        err(Errno.ENOENT, destroyRaw(0)); // object id is invalid
        err(Errno.EFAULT, c.syscall(Syscall.IOCTL, fd, Iommufd.IOMMU_DESTROY, 0)); // bad pointer
        final MemorySegment cmd = struct(IommuDestroy.SIZE);
        err(Errno.ENOTTY, ioctl(Iommufd.io(Iommufd.IOMMUFD_TYPE, Iommufd.CMD_BASE - 1), cmd)); // unknown ioctl
    }

    /**
     * TEST_LENGTH: a struct one byte short is EINVAL; one byte long with a non-zero byte E2BIG; at
     * its size and one byte long with a zero byte, the same answer. (The selftest's line for
     * IOMMU_HWPT_INVALIDATE is left out: nesting is not modelled, see the ledger.)
     */
    private void testLength(final int ioctl, final long size, final long minSize) {
        final long va = c.mmapAnonymous(PAGE_SIZE);
        final byte[] bytes = new byte[(int) size + 1];
        bytes[(int) size] = (byte) 0xff; // .extra = UINT8_MAX
        setSize(bytes, minSize - 1);
        c.memory().writeBytes(va, bytes);
        err(Errno.EINVAL, c.syscall(Syscall.IOCTL, fd, ioctl, va));
        setSize(bytes, size + 1);
        c.memory().writeBytes(va, bytes);
        err(Errno.E2BIG, c.syscall(Syscall.IOCTL, fd, ioctl, va));
        setSize(bytes, size);
        c.memory().writeBytes(va, bytes);
        final long rc = c.syscall(Syscall.IOCTL, fd, ioctl, va);
        setSize(bytes, size + 1);
        bytes[(int) size] = 0;
        c.memory().writeBytes(va, bytes);
        final long again = c.syscall(Syscall.IOCTL, fd, ioctl, va);
        if (rc != 0) {
            err(Errno.of((int) -rc), again);
        } else {
            ok(again);
        }
        c.munmap(va, PAGE_SIZE);
    }

    private static void setSize(final byte[] b, final long size) {
        b[0] = (byte) size;
        b[1] = (byte) (size >> 8);
        b[2] = 0;
        b[3] = 0;
    }

    @Test
    void cmd_length() {
        testLength(Iommufd.IOMMU_DESTROY, IommuDestroy.SIZE, IommuDestroy.MIN_SIZE);
        testLength(Iommufd.IOMMU_GET_HW_INFO, IommuHwInfo.SIZE, IommuHwInfo.MIN_SIZE);
        testLength(Iommufd.IOMMU_HWPT_ALLOC, IommuHwptAlloc.SIZE, IommuHwptAlloc.MIN_SIZE);
        testLength(Iommufd.IOMMU_IOAS_ALLOC, IommuIoasAlloc.SIZE, IommuIoasAlloc.MIN_SIZE);
        testLength(Iommufd.IOMMU_IOAS_IOVA_RANGES, IommuIoasIovaRanges.SIZE, IommuIoasIovaRanges.MIN_SIZE);
        testLength(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, IommuIoasAllowIovas.SIZE, IommuIoasAllowIovas.MIN_SIZE);
        testLength(Iommufd.IOMMU_IOAS_MAP, IommuIoasMap.SIZE, IommuIoasMap.MIN_SIZE);
        testLength(Iommufd.IOMMU_IOAS_COPY, IommuIoasCopy.SIZE, IommuIoasCopy.MIN_SIZE);
        testLength(Iommufd.IOMMU_IOAS_UNMAP, IommuIoasUnmap.SIZE, IommuIoasUnmap.MIN_SIZE);
        testLength(Iommufd.IOMMU_OPTION, IommuOption.SIZE, IommuOption.MIN_SIZE);
        testLength(Iommufd.IOMMU_VFIO_IOAS, IommuVfioIoas.SIZE, IommuVfioIoas.MIN_SIZE);
    }

    @Test
    void cmd_ex_fail() {
        final long va = c.mmapAnonymous(PAGE_SIZE);
        final byte[] cmd = new byte[16]; // struct iommu_destroy + __u64 future
        setSize(cmd, 16);
        c.memory().writeBytes(va, cmd);
        err(Errno.ENOENT, c.syscall(Syscall.IOCTL, fd, Iommufd.IOMMU_DESTROY, va)); // id invalid, command longer
        cmd[8] = 1; // future area is non-zero
        c.memory().writeBytes(va, cmd);
        err(Errno.E2BIG, c.syscall(Syscall.IOCTL, fd, Iommufd.IOMMU_DESTROY, va));
        setSize(cmd, 8); // original command "works"
        c.memory().writeBytes(va, cmd);
        err(Errno.ENOENT, c.syscall(Syscall.IOCTL, fd, Iommufd.IOMMU_DESTROY, va));
        setSize(cmd, 7); // short command fails
        c.memory().writeBytes(va, cmd);
        err(Errno.EINVAL, c.syscall(Syscall.IOCTL, fd, Iommufd.IOMMU_DESTROY, va));
    }

    @Test
    void global_options() {
        final MemorySegment cmd = struct(IommuOption.SIZE);
        IommuOption.optionId(cmd, Iommufd.IOMMU_OPTION_RLIMIT_MODE);
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_GET);
        IommuOption.val64(cmd, 1);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        assertEquals(0, IommuOption.val64(cmd));
        // This requires root
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_SET);
        IommuOption.val64(cmd, 1);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        IommuOption.val64(cmd, 2);
        err(Errno.EINVAL, ioctl(Iommufd.IOMMU_OPTION, cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_GET);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        assertEquals(1, IommuOption.val64(cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_SET);
        IommuOption.val64(cmd, 0);
        ok(ioctl(Iommufd.IOMMU_OPTION, cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_GET);
        IommuOption.optionId(cmd, Iommufd.IOMMU_OPTION_HUGE_PAGES);
        err(Errno.ENOENT, ioctl(Iommufd.IOMMU_OPTION, cmd));
        IommuOption.op(cmd, Iommufd.IOMMU_OPTION_OP_SET);
        err(Errno.ENOENT, ioctl(Iommufd.IOMMU_OPTION, cmd));
    }

    // ------------------------------------------------------------------ VFIO compatibility ioctls

    private long value(final int cmd, final long arg) {
        return c.syscall(Syscall.IOCTL, fd, cmd, arg);
    }

    @Test
    void simple_ioctls() {
        assertEquals(Vfio.VFIO_API_VERSION, value(Vfio.VFIO_GET_API_VERSION, 0));
        assertEquals(1, value(Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_TYPE1v2_IOMMU));
    }

    @Test
    void unmap_cmd() {
        final MemorySegment unmap = MemorySegment.ofArray(new long[3]);
        VfioIommuType1DmaUnmap.iova(unmap, MOCK_APERTURE_START);
        VfioIommuType1DmaUnmap.size(unmap, PAGE_SIZE);
        Vfio.argsz(unmap, 1);
        err(Errno.EINVAL, ioctl(Vfio.VFIO_IOMMU_UNMAP_DMA, unmap));
        Vfio.argsz(unmap, (int) VfioIommuType1DmaUnmap.SIZE);
        Vfio.flags(unmap, 1 << 31);
        err(Errno.EINVAL, ioctl(Vfio.VFIO_IOMMU_UNMAP_DMA, unmap));
        Vfio.flags(unmap, 0);
        err(Errno.ENODEV, ioctl(Vfio.VFIO_IOMMU_UNMAP_DMA, unmap));
    }

    @Test
    void map_cmd() {
        final MemorySegment map = MemorySegment.ofArray(new long[4]);
        VfioIommuType1DmaMap.iova(map, MOCK_APERTURE_START);
        VfioIommuType1DmaMap.size(map, PAGE_SIZE);
        VfioIommuType1DmaMap.vaddr(map, buffer);
        Vfio.argsz(map, 1);
        err(Errno.EINVAL, ioctl(Vfio.VFIO_IOMMU_MAP_DMA, map));
        Vfio.argsz(map, (int) VfioIommuType1DmaMap.SIZE);
        Vfio.flags(map, 1 << 31);
        err(Errno.EINVAL, ioctl(Vfio.VFIO_IOMMU_MAP_DMA, map));
        // Requires a domain to be attached
        Vfio.flags(map, Vfio.VFIO_DMA_MAP_FLAG_READ | Vfio.VFIO_DMA_MAP_FLAG_WRITE);
        err(Errno.ENODEV, ioctl(Vfio.VFIO_IOMMU_MAP_DMA, map));
    }

    @Test
    void info_cmd() {
        final MemorySegment info = MemorySegment.ofArray(new long[3]);
        Vfio.argsz(info, 1); // invalid argsz
        err(Errno.EINVAL, ioctl(Vfio.VFIO_IOMMU_GET_INFO, info));
        Vfio.argsz(info, 24);
        err(Errno.ENODEV, ioctl(Vfio.VFIO_IOMMU_GET_INFO, info));
    }

    @Test
    void set_iommu_cmd() {
        // Requires a domain to be attached
        err(Errno.ENODEV, value(Vfio.VFIO_SET_IOMMU, Vfio.VFIO_TYPE1v2_IOMMU));
        err(Errno.ENODEV, value(Vfio.VFIO_SET_IOMMU, Vfio.VFIO_TYPE1_IOMMU));
    }

    @Test
    void vfio_ioas() {
        final MemorySegment cmd = struct(IommuVfioIoas.SIZE);
        IommuVfioIoas.op(cmd, Iommufd.IOMMU_VFIO_IOAS_GET);
        err(Errno.ENODEV, ioctl(Iommufd.IOMMU_VFIO_IOAS, cmd)); // no compat ioas
        IommuVfioIoas.op(cmd, Iommufd.IOMMU_VFIO_IOAS_SET);
        err(Errno.ENOENT, ioctl(Iommufd.IOMMU_VFIO_IOAS, cmd)); // invalid id for set
        final int ioasId = ioasAlloc();
        IommuVfioIoas.ioasId(cmd, ioasId);
        ok(ioctl(Iommufd.IOMMU_VFIO_IOAS, cmd)); // valid id for set
        IommuVfioIoas.op(cmd, Iommufd.IOMMU_VFIO_IOAS_GET);
        ok(ioctl(Iommufd.IOMMU_VFIO_IOAS, cmd)); // same id comes back from get
        assertEquals(ioasId, IommuVfioIoas.ioasId(cmd));
        IommuVfioIoas.op(cmd, Iommufd.IOMMU_VFIO_IOAS_CLEAR);
        ok(ioctl(Iommufd.IOMMU_VFIO_IOAS, cmd)); // clear works
        IommuVfioIoas.op(cmd, Iommufd.IOMMU_VFIO_IOAS_GET);
        err(Errno.ENODEV, ioctl(Iommufd.IOMMU_VFIO_IOAS, cmd));
    }
}
