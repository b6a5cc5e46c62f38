package org.iopersist.vmm;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;

/**
 * A VMM's handle on one open {@code /dev/iommu}: the iommufd calls a VMM makes, as methods that
 * return what the kernel answered or throw {@link ErrnoException}. Structs are built in this
 * process's memory, so every pointer the kernel sees is a real user address.
 */
public final class Iommufd implements AutoCloseable {
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** An IOVA range {@code [start, last]}. */
    public record IovaRange(long start, long last) {
    }

    private final KernelClient client;
    private final int fd;

    private Iommufd(final KernelClient client, final int fd) {
        this.client = client;
        this.fd = fd;
    }

    public static Iommufd open(final KernelClient client) {
        return new Iommufd(client, client.open("/dev/iommu", Syscall.O_RDWR));
    }

    /** Wraps an iommufd this process already holds (one reopened from sysfs after a live update). */
    public static Iommufd of(final KernelClient client, final int fd) {
        return new Iommufd(client, fd);
    }

    public int fd() {
        return fd;
    }

    private static MemorySegment struct(final StructLayout l) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((l.byteSize() + 7) / 8)]).asSlice(0, l.byteSize());
        s.set(U32, 0, (int) l.byteSize());
        return s;
    }

    private static long off(final StructLayout l, final String field) {
        return org.iopersist.uapi.Iommufd.offsetof(l, field);
    }

    private MemorySegment call(final int cmd, final StructLayout l, final MemorySegment s, final String what) {
        final long ret = client.ioctl(fd, cmd, s);
        if (ret < 0) {
            throw new ErrnoException((int) -ret, what);
        }
        return s;
    }

    public int ioasAlloc() {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_IOAS_ALLOC_LAYOUT;
        return call(org.iopersist.uapi.Iommufd.IOMMU_IOAS_ALLOC, l, struct(l), "IOMMU_IOAS_ALLOC").get(U32, off(l, "out_ioas_id"));
    }

    public void destroy(final int id) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_DESTROY_LAYOUT;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "id"), id);
        call(org.iopersist.uapi.Iommufd.IOMMU_DESTROY, l, s, "IOMMU_DESTROY " + id);
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
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_LAYOUT;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "flags"), org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_READABLE
                | org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_WRITEABLE | (fixed ? org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA : 0));
        s.set(U32, off(l, "ioas_id"), ioas);
        s.set(U64, off(l, "user_va"), va);
        s.set(U64, off(l, "length"), length);
        s.set(U64, off(l, "iova"), iova);
        return call(org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP, l, s, "IOMMU_IOAS_MAP").get(U64, off(l, "iova"));
    }

    /** IOMMU_IOAS_MAP_FILE of {@code length} bytes of file {@code fileFd} from {@code start}, at a fixed IOVA. */
    public long mapFileFixed(final int ioas, final int fileFd, final long start, final long length, final long iova) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_FILE_LAYOUT;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "flags"), org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_READABLE
                | org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_WRITEABLE | org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA);
        s.set(U32, off(l, "ioas_id"), ioas);
        s.set(U32, off(l, "fd"), fileFd);
        s.set(U64, off(l, "start"), start);
        s.set(U64, off(l, "length"), length);
        s.set(U64, off(l, "iova"), iova);
        return call(org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_FILE, l, s, "IOMMU_IOAS_MAP_FILE").get(U64, off(l, "iova"));
    }

    /** IOMMU_IOAS_UNMAP; returns the bytes unmapped. */
    public long unmap(final int ioas, final long iova, final long length) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_IOAS_UNMAP_LAYOUT;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "ioas_id"), ioas);
        s.set(U64, off(l, "iova"), iova);
        s.set(U64, off(l, "length"), length);
        return call(org.iopersist.uapi.Iommufd.IOMMU_IOAS_UNMAP, l, s, "IOMMU_IOAS_UNMAP").get(U64, off(l, "length"));
    }

    /** IOMMU_IOAS_COPY of {@code length} bytes at {@code srcIova} of {@code srcIoas} to {@code dstIova} of {@code dstIoas}. */
    public long copyFixed(final int dstIoas, final long dstIova, final int srcIoas, final long srcIova, final long length) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_IOAS_COPY_LAYOUT;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "flags"), org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_READABLE
                | org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_WRITEABLE | org.iopersist.uapi.Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA);
        s.set(U32, off(l, "dst_ioas_id"), dstIoas);
        s.set(U32, off(l, "src_ioas_id"), srcIoas);
        s.set(U64, off(l, "length"), length);
        s.set(U64, off(l, "dst_iova"), dstIova);
        s.set(U64, off(l, "src_iova"), srcIova);
        return call(org.iopersist.uapi.Iommufd.IOMMU_IOAS_COPY, l, s, "IOMMU_IOAS_COPY").get(U64, off(l, "dst_iova"));
    }

    /** IOMMU_IOAS_IOVA_RANGES: the usable ranges (up to 64). */
    public List<IovaRange> iovaRanges(final int ioas) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_IOAS_IOVA_RANGES_LAYOUT;
        final long array = client.scratch() + 16384 + 8192;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "ioas_id"), ioas);
        s.set(U32, off(l, "num_iovas"), 64);
        s.set(U64, off(l, "allowed_iovas"), array);
        call(org.iopersist.uapi.Iommufd.IOMMU_IOAS_IOVA_RANGES, l, s, "IOMMU_IOAS_IOVA_RANGES");
        final List<IovaRange> out = new ArrayList<>();
        for (int i = 0; i < s.get(U32, off(l, "num_iovas")); i++) {
            out.add(new IovaRange(client.memory().readLong(array + 16L * i), client.memory().readLong(array + 16L * i + 8)));
        }
        return out;
    }

    /** IOMMU_IOAS_ALLOW_IOVAS: only {@code ranges} may be mapped (none: no restriction). */
    public void allowIovas(final int ioas, final List<IovaRange> ranges) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_IOAS_ALLOW_IOVAS_LAYOUT;
        final long array = client.scratch() + 16384 + 8192;
        for (int i = 0; i < ranges.size(); i++) {
            client.memory().writeLong(array + 16L * i, ranges.get(i).start());
            client.memory().writeLong(array + 16L * i + 8, ranges.get(i).last());
        }
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "ioas_id"), ioas);
        s.set(U32, off(l, "num_iovas"), ranges.size());
        s.set(U64, off(l, "allowed_iovas"), array);
        call(org.iopersist.uapi.Iommufd.IOMMU_IOAS_ALLOW_IOVAS, l, s, "IOMMU_IOAS_ALLOW_IOVAS");
    }

    /** IOMMU_OPTION_HUGE_PAGES SET on {@code ioas}. */
    public void setHugePages(final int ioas, final boolean on) {
        option(org.iopersist.uapi.Iommufd.IOMMU_OPTION_HUGE_PAGES, org.iopersist.uapi.Iommufd.IOMMU_OPTION_OP_SET, ioas, on ? 1 : 0);
    }

    /** IOMMU_OPTION_PERSISTENT SET: makes this (empty) context persistent; returns its persistent id. */
    public long makePersistent() {
        return option(org.iopersist.uapi.Iommufd.IOMMU_OPTION_PERSISTENT, org.iopersist.uapi.Iommufd.IOMMU_OPTION_OP_SET, 0, 0);
    }

    /** The persistent id, 0 if none. */
    public long persistentId() {
        return option(org.iopersist.uapi.Iommufd.IOMMU_OPTION_PERSISTENT, org.iopersist.uapi.Iommufd.IOMMU_OPTION_OP_GET, 0, 0);
    }

    private long option(final int option, final int op, final int objectId, final long val) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_OPTION_LAYOUT;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "option_id"), option);
        s.set(U16, off(l, "op"), (short) op);
        s.set(U32, off(l, "object_id"), objectId);
        s.set(U64, off(l, "val64"), val);
        return call(org.iopersist.uapi.Iommufd.IOMMU_OPTION, l, s, "IOMMU_OPTION").get(U64, off(l, "val64"));
    }

    /** IOMMU_HWPT_ALLOC of a paging HWPT over {@code ioas} for device {@code devId}. */
    public int hwptAlloc(final int devId, final int ioas) {
        final StructLayout l = org.iopersist.uapi.Iommufd.IOMMU_HWPT_ALLOC_LAYOUT;
        final MemorySegment s = struct(l);
        s.set(U32, off(l, "dev_id"), devId);
        s.set(U32, off(l, "pt_id"), ioas);
        return call(org.iopersist.uapi.Iommufd.IOMMU_HWPT_ALLOC, l, s, "IOMMU_HWPT_ALLOC").get(U32, off(l, "out_hwpt_id"));
    }

    @Override
    public void close() {
        client.close(fd);
    }
}
