package org.iopersist.vmm;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuHwptAlloc;
import org.iopersist.uapi.IommuHwptLiveupdateMarkPreserve;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasMapFile;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.IommuIovaRange;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;

/**
 * A VMM's handle on one open {@code /dev/iommu}: the iommufd calls a VMM makes, as methods that
 * return what the kernel answered or throw {@link ErrnoException}. Structs are built in this
 * process's memory, so every pointer the kernel sees is a real user address.
 */
public final class IommufdHandle implements AutoCloseable {
    /** An IOVA range {@code [start, last]} as {@code struct iommu_iova_range} carries it: usable, or to allow. */
    public record AllowedRange(long start, long last) {
    }

    private final KernelClient client;
    private final int fd;

    private IommufdHandle(final KernelClient client, final int fd) {
        this.client = client;
        this.fd = fd;
    }

    public static IommufdHandle open(final KernelClient client) {
        return new IommufdHandle(client, client.open(Iommufd.DEV_PATH, Syscall.O_RDWR));
    }

    /** Wraps an iommufd this process already holds (one reopened from sysfs after a live update). */
    public static IommufdHandle of(final KernelClient client, final int fd) {
        return new IommufdHandle(client, fd);
    }

    public int fd() {
        return fd;
    }

    /** A zeroed struct of {@code size} bytes with its {@code size} field set, as a caller fills one. */
    private static MemorySegment struct(final long size) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((size + 7) / 8)]).asSlice(0, size);
        Iommufd.size(s, (int) size);
        return s;
    }

    private MemorySegment call(final int cmd, final MemorySegment s, final String what) {
        final long ret = client.ioctl(fd, cmd, s);
        if (ret < 0) {
            throw new ErrnoException((int) -ret, what);
        }
        return s;
    }

    public int ioasAlloc() {
        return IommuIoasAlloc.outIoasId(call(Iommufd.IOMMU_IOAS_ALLOC, struct(IommuIoasAlloc.SIZE), "IOMMU_IOAS_ALLOC"));
    }

    public void destroy(final int id) {
        final MemorySegment s = struct(IommuDestroy.SIZE);
        IommuDestroy.id(s, id);
        call(Iommufd.IOMMU_DESTROY, s, "IOMMU_DESTROY " + id);
    }

    /** IOMMU_IOAS_MAP of {@code length} bytes at user {@code va}, read-write, at a fixed IOVA. */
    public long mapFixed(final int ioas, final long va, final long length, final long iova) {
        return map(ioas, va, length, iova, true);
    }

    /** IOMMU_IOAS_MAP at an IOVA the kernel chooses; returns it. */
    public long map(final int ioas, final long va, final long length) {
        return map(ioas, va, length, 0, false);
    }

    private long map(final int ioas, final long va, final long length, final long iova, final boolean fixed) {
        final MemorySegment s = struct(IommuIoasMap.SIZE);
        IommuIoasMap.flags(s, Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE
                | (fixed ? Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA : 0));
        IommuIoasMap.ioasId(s, ioas);
        IommuIoasMap.userVa(s, va);
        IommuIoasMap.length(s, length);
        IommuIoasMap.iova(s, iova);
        return IommuIoasMap.iova(call(Iommufd.IOMMU_IOAS_MAP, s, "IOMMU_IOAS_MAP"));
    }

    /** IOMMU_IOAS_MAP_FILE of {@code length} bytes of file {@code fileFd} from {@code start}, at a fixed IOVA. */
    public long mapFileFixed(final int ioas, final int fileFd, final long start, final long length, final long iova) {
        final MemorySegment s = struct(IommuIoasMapFile.SIZE);
        IommuIoasMapFile.flags(s, Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE
                | Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA);
        IommuIoasMapFile.ioasId(s, ioas);
        IommuIoasMapFile.fd(s, fileFd);
        IommuIoasMapFile.start(s, start);
        IommuIoasMapFile.length(s, length);
        IommuIoasMapFile.iova(s, iova);
        return IommuIoasMapFile.iova(call(Iommufd.IOMMU_IOAS_MAP_FILE, s, "IOMMU_IOAS_MAP_FILE"));
    }

    /** IOMMU_IOAS_UNMAP; returns the bytes unmapped. */
    public long unmap(final int ioas, final long iova, final long length) {
        final MemorySegment s = struct(IommuIoasUnmap.SIZE);
        IommuIoasUnmap.ioasId(s, ioas);
        IommuIoasUnmap.iova(s, iova);
        IommuIoasUnmap.length(s, length);
        return IommuIoasUnmap.length(call(Iommufd.IOMMU_IOAS_UNMAP, s, "IOMMU_IOAS_UNMAP"));
    }

    /** IOMMU_IOAS_COPY of {@code length} bytes at {@code srcIova} of {@code srcIoas} to {@code dstIova} of {@code dstIoas}. */
    public long copyFixed(final int dstIoas, final long dstIova, final int srcIoas, final long srcIova, final long length) {
        final MemorySegment s = struct(IommuIoasCopy.SIZE);
        IommuIoasCopy.flags(s, Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE
                | Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA);
        IommuIoasCopy.dstIoasId(s, dstIoas);
        IommuIoasCopy.srcIoasId(s, srcIoas);
        IommuIoasCopy.length(s, length);
        IommuIoasCopy.dstIova(s, dstIova);
        IommuIoasCopy.srcIova(s, srcIova);
        return IommuIoasCopy.dstIova(call(Iommufd.IOMMU_IOAS_COPY, s, "IOMMU_IOAS_COPY"));
    }

    /** IOMMU_IOAS_IOVA_RANGES: the usable ranges (up to 64). */
    public List<AllowedRange> iovaRanges(final int ioas) {
        final long array = client.scratch() + 16384 + 8192;
        final MemorySegment s = struct(IommuIoasIovaRanges.SIZE);
        IommuIoasIovaRanges.ioasId(s, ioas);
        IommuIoasIovaRanges.numIovas(s, 64);
        IommuIoasIovaRanges.allowedIovas(s, array);
        call(Iommufd.IOMMU_IOAS_IOVA_RANGES, s, "IOMMU_IOAS_IOVA_RANGES");
        final List<AllowedRange> out = new ArrayList<>();
        final MemorySegment elm = MemorySegment.ofArray(new long[2]);
        for (int i = 0; i < IommuIoasIovaRanges.numIovas(s); i++) {
            client.memory().read(array + IommuIovaRange.SIZE * i, elm, 0, IommuIovaRange.SIZE);
            out.add(new AllowedRange(IommuIovaRange.start(elm), IommuIovaRange.last(elm)));
        }
        return out;
    }

    /** IOMMU_IOAS_ALLOW_IOVAS: only {@code ranges} may be mapped (none: no restriction). */
    public void allowIovas(final int ioas, final List<AllowedRange> ranges) {
        final long array = client.scratch() + 16384 + 8192;
        final MemorySegment elm = MemorySegment.ofArray(new long[2]);
        for (int i = 0; i < ranges.size(); i++) {
            IommuIovaRange.start(elm, ranges.get(i).start());
            IommuIovaRange.last(elm, ranges.get(i).last());
            client.memory().write(array + IommuIovaRange.SIZE * i, elm, 0, IommuIovaRange.SIZE);
        }
        final MemorySegment s = struct(IommuIoasAllowIovas.SIZE);
        IommuIoasAllowIovas.ioasId(s, ioas);
        IommuIoasAllowIovas.numIovas(s, ranges.size());
        IommuIoasAllowIovas.allowedIovas(s, array);
        call(Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s, "IOMMU_IOAS_ALLOW_IOVAS");
    }

    /** IOMMU_OPTION_HUGE_PAGES SET on {@code ioas}. */
    public void setHugePages(final int ioas, final boolean on) {
        option(Iommufd.IOMMU_OPTION_HUGE_PAGES, Iommufd.IOMMU_OPTION_OP_SET, ioas, on ? 1 : 0);
    }

    /** IOMMU_OPTION_PERSISTENT SET: makes this (empty) context persistent; returns its persistent id. */
    public long makePersistent() {
        return option(Iommufd.IOMMU_OPTION_PERSISTENT, Iommufd.IOMMU_OPTION_OP_SET, 0, 0);
    }

    /** The persistent id, 0 if none. */
    public long persistentId() {
        return option(Iommufd.IOMMU_OPTION_PERSISTENT, Iommufd.IOMMU_OPTION_OP_GET, 0, 0);
    }

    private long option(final int option, final int op, final int objectId, final long val) {
        final MemorySegment s = struct(IommuOption.SIZE);
        IommuOption.optionId(s, option);
        IommuOption.op(s, op);
        IommuOption.objectId(s, objectId);
        IommuOption.val64(s, val);
        return IommuOption.val64(call(Iommufd.IOMMU_OPTION, s, "IOMMU_OPTION"));
    }

    /** IOMMU_HWPT_ALLOC of a paging HWPT over {@code ioas} for device {@code devId}. */
    public int hwptAlloc(final int devId, final int ioas) {
        final MemorySegment s = struct(IommuHwptAlloc.SIZE);
        IommuHwptAlloc.devId(s, devId);
        IommuHwptAlloc.ptId(s, ioas);
        return IommuHwptAlloc.outHwptId(call(Iommufd.IOMMU_HWPT_ALLOC, s, "IOMMU_HWPT_ALLOC"));
    }

    /** IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE: {@code hwpt} is preserved under {@code token} when this iommufd is. */
    public void markPreserve(final int hwpt, final long token) {
        final MemorySegment s = struct(IommuHwptLiveupdateMarkPreserve.SIZE);
        IommuHwptLiveupdateMarkPreserve.hwptId(s, hwpt);
        IommuHwptLiveupdateMarkPreserve.hwptToken(s, token);
        call(Iommufd.IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, s, String.format("IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE hwpt %d token 0x%x",
                hwpt, token));
    }

    @Override
    public void close() {
        client.close(fd);
    }
}
