package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasCopy;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;

/** A booted kernel serving syscalls and one connected process holding an iommufd, as the selftest's FIXTURE(iommufd). */
abstract class IommufdAbiFixture {
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final long PAGE = 4096;

    @TempDir
    Path tmp;
    KernelRig rig;
    FrameRefs refs;
    SyscallServer server;
    KernelClient c;
    int fd;

    @BeforeEach
    void setUpFixture() throws Exception {
        final Path memoryFile = boot();
        c = KernelClient.connect(server.path(), memoryFile);
        fd = c.open("/dev/iommu", Syscall.O_RDWR);
    }

    /**
     * Boots a kernel on a small machine (no device attached yet) from {@link #cmdline()}, and serves
     * it on a socket: contexts come from its {@code /dev/iommu}, as for any process. Returns the
     * machine's memory file.
     */
    Path boot() throws Exception {
        rig = KernelRig.boot(tmp.resolve("m"), MachineConfig.small().withMemorySize(256L << 20), cmdline());
        refs = rig.kernel.frameRefs();
        server = rig.kernel.serve(tmp.resolve("k.sock"));
        return tmp.resolve("m").resolve("memory");
    }

    /** The kernel command line of the fixture's boot. */
    String cmdline() {
        return "";
    }

    void shutdown() {
        rig.close();
    }

    /**
     * Every process exits (the fixture's and any other the test connected: closing the server ends
     * them, each after its releases), then the invariant check (issue 16): the kernel's books are
     * back where the boot left them, then the machine goes.
     */
    @AfterEach
    void tearDownFixture() {
        try {
            c.close();
            server.close();
            rig.assertBooksBalanced("after " + getClass().getSimpleName());
        } finally {
            shutdown();
        }
    }

    static MemorySegment struct(final StructLayout layout) {
        final MemorySegment s = MemorySegment.ofArray(new long[(int) ((layout.byteSize() + 7) / 8)]).asSlice(0, layout.byteSize());
        s.set(U32, 0, (int) layout.byteSize());
        return s;
    }

    static void set32(final MemorySegment s, final StructLayout l, final String f, final int v) {
        s.set(U32, Iommufd.offsetof(l, f), v);
    }

    static void set64(final MemorySegment s, final StructLayout l, final String f, final long v) {
        s.set(U64, Iommufd.offsetof(l, f), v);
    }

    static int get32(final MemorySegment s, final StructLayout l, final String f) {
        return s.get(U32, Iommufd.offsetof(l, f));
    }

    static long get64(final MemorySegment s, final StructLayout l, final String f) {
        return s.get(U64, Iommufd.offsetof(l, f));
    }

    static Errno err(final long ret) {
        assertTrue(ret < 0, "expected an errno, got " + ret);
        return Errno.of((int) -ret);
    }

    int ioasAlloc() {
        final MemorySegment s = struct(IommuIoasAlloc.LAYOUT);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOC, s));
        return get32(s, IommuIoasAlloc.LAYOUT, "out_ioas_id");
    }

    /** Returns {alignment, count, start0, last0, start1, last1, ...}; the array lives in user memory. */
    long[] iovaRanges(final int ioas, final int capacity) {
        final StructLayout l = IommuIoasIovaRanges.LAYOUT;
        final long arrayVa = c.mmapAnonymous(4096);
        final MemorySegment s = struct(l);
        set32(s, l, "ioas_id", ioas);
        set32(s, l, "num_iovas", capacity);
        set64(s, l, "allowed_iovas", arrayVa);
        final long ret = c.ioctl(fd, Iommufd.IOMMU_IOAS_IOVA_RANGES, s);
        final int n = get32(s, l, "num_iovas");
        final long[] out = new long[2 + 2 * Math.min(n, capacity)];
        out[0] = get64(s, l, "out_iova_alignment");
        out[1] = ret < 0 ? ret : n;
        for (int i = 0; i < Math.min(n, capacity); i++) {
            out[2 + 2 * i] = c.memory().readLong(arrayVa + 16L * i);
            out[3 + 2 * i] = c.memory().readLong(arrayVa + 16L * i + 8);
        }
        return out;
    }

    /** Raw ioctl with the struct bytes given (their size field says how long the struct is). */
    long ioctlSized(final int cmd, final byte[] bytes) {
        final long va = c.scratch() + 8192;
        c.memory().writeBytes(va, bytes);
        return c.syscall(Syscall.IOCTL, fd, cmd, va);
    }

    /** IOAS_MAP; returns the IOVA, or the negative errno. */
    long map(final int ioas, final long va, final long length, final long fixedIova, final boolean fixed) {
        final StructLayout l = IommuIoasMap.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE
                | (fixed ? Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA : 0));
        set32(s, l, "ioas_id", ioas);
        set64(s, l, "user_va", va);
        set64(s, l, "length", length);
        set64(s, l, "iova", fixedIova);
        final long ret = c.ioctl(fd, Iommufd.IOMMU_IOAS_MAP, s);
        return ret < 0 ? ret : get64(s, l, "iova");
    }

    /** IOAS_UNMAP; returns the unmapped length, or the negative errno. */
    long unmap(final int ioas, final long iova, final long length) {
        final StructLayout l = IommuIoasUnmap.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "ioas_id", ioas);
        set64(s, l, "iova", iova);
        set64(s, l, "length", length);
        final long ret = c.ioctl(fd, Iommufd.IOMMU_IOAS_UNMAP, s);
        return ret < 0 ? ret : get64(s, l, "length");
    }

    /** IOAS_COPY; returns the destination IOVA or the negative errno. */
    long copy(final int dst, final long dstIova, final int src, final long srcIova, final long length, final boolean fixed) {
        final StructLayout l = IommuIoasCopy.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "flags", Iommufd.IOMMU_IOAS_MAP_READABLE | Iommufd.IOMMU_IOAS_MAP_WRITEABLE
                | (fixed ? Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA : 0));
        set32(s, l, "dst_ioas_id", dst);
        set32(s, l, "src_ioas_id", src);
        set64(s, l, "length", length);
        set64(s, l, "dst_iova", dstIova);
        set64(s, l, "src_iova", srcIova);
        final long ret = c.ioctl(fd, Iommufd.IOMMU_IOAS_COPY, s);
        return ret < 0 ? ret : get64(s, l, "dst_iova");
    }
}
