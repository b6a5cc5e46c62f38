package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import org.iopersist.uapi.IommuVfioIoas;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.iopersist.uapi.VfioIommuType1DmaMap;
import org.iopersist.uapi.VfioIommuType1DmaUnmap;
import org.iopersist.vmm.KernelClient;

/** The VFIO type1 calls a VMM makes on an iommufd, as the selftest's helpers do, through the syscall socket. */
final class VfioType1 {
    private final KernelClient c;
    private final int fd;

    VfioType1(final KernelClient c, final int fd) {
        this.c = c;
        this.fd = fd;
    }

    /** An ioctl whose argument is a value (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU). */
    long value(final int cmd, final long arg) {
        return c.syscall(Syscall.IOCTL, fd, cmd, arg);
    }

    /** IOMMU_VFIO_IOAS; the IOAS id for GET, 0 for the others, or the negative errno. */
    long vfioIoas(final int op, final int ioasId) {
        final MemorySegment s = MemorySegment.ofArray(new byte[(int) IommuVfioIoas.SIZE]);
        Iommufd.size(s, (int) IommuVfioIoas.SIZE);
        IommuVfioIoas.op(s, op);
        IommuVfioIoas.ioasId(s, ioasId);
        final long ret = c.ioctl(fd, Iommufd.IOMMU_VFIO_IOAS, s);
        return ret < 0 ? ret : op == Iommufd.IOMMU_VFIO_IOAS_GET ? IommuVfioIoas.ioasId(s) : ret;
    }

    /** VFIO_IOMMU_MAP_DMA with {@code argsz} and {@code flags} as given. */
    long map(final int argsz, final int flags, final long vaddr, final long iova, final long size) {
        final MemorySegment s = MemorySegment.ofArray(new long[4]);
        Vfio.argsz(s, argsz);
        Vfio.flags(s, flags);
        VfioIommuType1DmaMap.vaddr(s, vaddr);
        VfioIommuType1DmaMap.iova(s, iova);
        VfioIommuType1DmaMap.size(s, size);
        return c.ioctl(fd, Vfio.VFIO_IOMMU_MAP_DMA, s);
    }

    long map(final long vaddr, final long iova, final long size) {
        return map((int) VfioIommuType1DmaMap.SIZE, Vfio.VFIO_DMA_MAP_FLAG_READ | Vfio.VFIO_DMA_MAP_FLAG_WRITE, vaddr, iova, size);
    }

    /** VFIO_IOMMU_UNMAP_DMA; returns {ret, size written back}. */
    long[] unmap(final int argsz, final int flags, final long iova, final long size) {
        final MemorySegment s = MemorySegment.ofArray(new long[3]);
        Vfio.argsz(s, argsz);
        Vfio.flags(s, flags);
        VfioIommuType1DmaUnmap.iova(s, iova);
        VfioIommuType1DmaUnmap.size(s, size);
        final long ret = c.ioctl(fd, Vfio.VFIO_IOMMU_UNMAP_DMA, s);
        return new long[] {ret, VfioIommuType1DmaUnmap.size(s)};
    }

    long[] unmap(final int flags, final long iova, final long size) {
        return unmap((int) VfioIommuType1DmaUnmap.SIZE, flags, iova, size);
    }

    /** VFIO_IOMMU_GET_INFO into {@code bufVa} (user memory the caller prepared, argsz already set); the return value. */
    long getInfo(final long bufVa) {
        return c.syscall(Syscall.IOCTL, fd, Vfio.VFIO_IOMMU_GET_INFO, bufVa);
    }
}
