package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.syscall.LiveUpdateControl;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.kernel.syscall.Syscalls;
import org.iopersist.kernel.syscall.TestFrames;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.fs.Vfs;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuIoasAlloc;
import org.iopersist.uapi.IommuIoasAllowIovas;
import org.iopersist.uapi.IommuIoasIovaRanges;
import org.iopersist.uapi.IommuOption;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Cases of {@code tools/testing/selftests/iommu/iommufd.c} that need no mapping: the framing rules
 * every ioctl shares, DESTROY, IOAS_ALLOC, IOVA_RANGES, ALLOW_IOVAS and OPTION, over the real syscall
 * ABI. Named after the selftest's TEST_F cases, with the same errno.
 */
class IommufdSelftestPart1Test extends IommufdAbiFixture {
    @Test
    void simple_close() {
        c.close(fd);
        fd = c.open("/dev/iommu", Syscall.O_RDWR);
        assertTrue(fd >= 0);
    }

    @Test
    void cmd_length() {
        // TEST_LENGTH: below the minimum is EINVAL; longer with a non-zero tail is E2BIG; longer with a
        // zero tail works.
        final int ioas = ioasAlloc();
        final int[][] cases = {
            {Iommufd.IOMMU_DESTROY, 8}, {Iommufd.IOMMU_IOAS_ALLOC, 12}, {Iommufd.IOMMU_IOAS_ALLOW_IOVAS, 24},
            {Iommufd.IOMMU_IOAS_IOVA_RANGES, 32}, {Iommufd.IOMMU_OPTION, 24},
        };
        for (int[] cs : cases) {
            final int cmd = cs[0];
            final int min = cs[1];
            final byte[] shortStruct = new byte[64];
            java.nio.ByteBuffer.wrap(shortStruct).order(ByteOrder.LITTLE_ENDIAN).putInt(0, min - 1);
            assertEquals(Errno.EINVAL, err(ioctlSized(cmd, shortStruct)), "short " + Integer.toHexString(cmd));
            final byte[] longStruct = new byte[min + 8];
            java.nio.ByteBuffer.wrap(longStruct).order(ByteOrder.LITTLE_ENDIAN).putInt(0, min + 8);
            longStruct[min + 4] = 0xaa - 256;
            assertEquals(Errno.E2BIG, err(ioctlSized(cmd, longStruct)), "long " + Integer.toHexString(cmd));
        }
        // A zero tail is fine: IOAS_ALLOC with 8 extra zero bytes allocates.
        final byte[] zeroTail = new byte[20];
        java.nio.ByteBuffer.wrap(zeroTail).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 20);
        assertEquals(0, ioctlSized(Iommufd.IOMMU_IOAS_ALLOC, zeroTail));
        assertTrue(ioas > 0);
    }

    @Test
    void cmd_fail() {
        // The selftest's cmd_fail: a NULL argument is EFAULT, an unknown ioctl ENOTTY, object 0 ENOENT.
        assertEquals(Errno.EFAULT, err(c.syscall(Syscall.IOCTL, fd, Iommufd.IOMMU_DESTROY, 0)));
        assertEquals(Errno.ENOTTY, err(c.syscall(Syscall.IOCTL, fd, Iommufd.io(';', 0x7f), c.scratch())));
        final MemorySegment d = struct(IommuDestroy.LAYOUT);
        set32(d, IommuDestroy.LAYOUT, "id", 0);
        assertEquals(Errno.ENOENT, err(c.ioctl(fd, Iommufd.IOMMU_DESTROY, d)));
        final MemorySegment a = struct(IommuIoasAlloc.LAYOUT);
        set32(a, IommuIoasAlloc.LAYOUT, "flags", 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOC, a)));
    }

    @Test
    void cmd_ex_fail() {
        // DESTROY of object 0 framed three ways: a longer struct with a zero tail is read normally
        // (ENOENT), a non-zero tail is E2BIG, a short one EINVAL; the size check comes first.
        final byte[] longZero = new byte[16];
        java.nio.ByteBuffer.wrap(longZero).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 16);
        assertEquals(Errno.ENOENT, err(ioctlSized(Iommufd.IOMMU_DESTROY, longZero)));
        final byte[] longTail = longZero.clone();
        longTail[12] = 1;
        assertEquals(Errno.E2BIG, err(ioctlSized(Iommufd.IOMMU_DESTROY, longTail)));
        final byte[] shortStruct = new byte[8];
        java.nio.ByteBuffer.wrap(shortStruct).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 4);
        assertEquals(Errno.EINVAL, err(ioctlSized(Iommufd.IOMMU_DESTROY, shortStruct)));
    }

    @Test
    void ioas_auto_destroy() throws Exception {
        // Closing the fd with a live IOAS and area frees both; the next context starts empty.
        final int ioas = ioasAlloc();
        final long buf = c.mmapAnonymous(4 * 4096);
        c.memory().writeLong(buf, 1);
        assertEquals(0x10000, map(ioas, buf, 4 * 4096, 0x10000, true));
        c.close(fd);
        fd = c.open("/dev/iommu", Syscall.O_RDWR);
        final MemorySegment d = struct(IommuDestroy.LAYOUT);
        set32(d, IommuDestroy.LAYOUT, "id", ioas);
        assertEquals(Errno.ENOENT, err(c.ioctl(fd, Iommufd.IOMMU_DESTROY, d)));
    }

    @Test
    void ioas_destroy_and_id_reuse() {
        final int a = ioasAlloc();
        final int b = ioasAlloc();
        assertEquals(1, a, "ids start at 1");
        assertEquals(2, b);
        final MemorySegment d = struct(IommuDestroy.LAYOUT);
        set32(d, IommuDestroy.LAYOUT, "id", a);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_DESTROY, d));
        assertEquals(Errno.ENOENT, err(c.ioctl(fd, Iommufd.IOMMU_DESTROY, d)));
        assertEquals(1, ioasAlloc(), "the lowest free id is reused");
    }

    @Test
    void global_options() {
        final StructLayout l = IommuOption.LAYOUT;
        final MemorySegment o = struct(l);
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_RLIMIT_MODE);
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_GET);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertEquals(0, get64(o, l, "val64"));
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_SET);
        set64(o, l, "val64", 1);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        set64(o, l, "val64", 2);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)));
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_GET);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertEquals(1, get64(o, l, "val64"));
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) 7);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)), "unknown op");
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_GET);
        set32(o, l, "object_id", 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)), "RLIMIT_MODE has no object");
        set32(o, l, "object_id", 0);
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 10, (short) 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)), "__reserved");
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 10, (short) 0);
        set32(o, l, "option_id", 77);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)), "unknown option");
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_PERSISTENT);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertEquals(0, get64(o, l, "val64"), "GET PERSISTENT: 0, not persistent");
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_SET);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertTrue(get64(o, l, "val64") > 0, "SET PERSISTENT on an empty context: its new persistent id");
        // SET with an object in the context is EBUSY.
        ioasAlloc();
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_RLIMIT_MODE);
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_SET);
        set64(o, l, "val64", 0);
        assertEquals(Errno.EBUSY, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)));
    }

    @Test
    void ioas_option_huge_pages() {
        final int ioas = ioasAlloc();
        final StructLayout l = IommuOption.LAYOUT;
        final MemorySegment o = struct(l);
        set32(o, l, "option_id", Iommufd.IOMMU_OPTION_HUGE_PAGES);
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_GET);
        set32(o, l, "object_id", ioas);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertEquals(1, get64(o, l, "val64"));
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_SET);
        set64(o, l, "val64", 0);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        set64(o, l, "val64", 3);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)));
        o.set(ValueLayout.JAVA_SHORT_UNALIGNED, 8, (short) Iommufd.IOMMU_OPTION_OP_GET);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_OPTION, o));
        assertEquals(0, get64(o, l, "val64"));
        assertEquals(4096, iovaRanges(ioas, 4)[0], "alignment is PAGE_SIZE without large pages");
        set32(o, l, "object_id", ioas + 100);
        assertEquals(Errno.ENOENT, err(c.ioctl(fd, Iommufd.IOMMU_OPTION, o)));
    }

    @Test
    void iova_ranges() {
        final int ioas = ioasAlloc();
        final long[] r = iovaRanges(ioas, 1);
        assertEquals(1, r[0], "alignment 1 with no domain");
        assertEquals(1, r[1]);
        assertEquals(0, r[2]);
        assertEquals(-1L, r[3], "[0, ULONG_MAX]");
        final long[] none = iovaRanges(ioas, 0);
        assertEquals(-Errno.EMSGSIZE.number, none[1], "an array too short answers EMSGSIZE");
        final StructLayout l = IommuIoasIovaRanges.LAYOUT;
        final MemorySegment s = struct(l);
        set32(s, l, "ioas_id", ioas);
        set32(s, l, "__reserved", 1);
        assertEquals(Errno.EOPNOTSUPP, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_IOVA_RANGES, s)));
        set32(s, l, "__reserved", 0);
        set32(s, l, "ioas_id", 99);
        assertEquals(Errno.ENOENT, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_IOVA_RANGES, s)));
        set32(s, l, "ioas_id", ioas);
        set32(s, l, "num_iovas", 1);
        set64(s, l, "allowed_iovas", 0x10);
        assertEquals(Errno.EFAULT, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_IOVA_RANGES, s)));
    }

    @Test
    void area_allowed_iova_validation() {
        final int ioas = ioasAlloc();
        final StructLayout l = IommuIoasAllowIovas.LAYOUT;
        final long arrayVa = c.mmapAnonymous(4096);
        c.memory().writeLong(arrayVa, 0x10000);
        c.memory().writeLong(arrayVa + 8, 0x1ffff);
        c.memory().writeLong(arrayVa + 16, 0x18000);
        c.memory().writeLong(arrayVa + 24, 0x2ffff);
        final MemorySegment s = struct(l);
        set32(s, l, "ioas_id", ioas);
        set32(s, l, "num_iovas", 2);
        set64(s, l, "allowed_iovas", arrayVa);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s)), "overlapping ranges");
        set32(s, l, "num_iovas", 1);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s));
        c.memory().writeLong(arrayVa + 8, 0x10000);
        assertEquals(Errno.EINVAL, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s)), "start >= last");
        set64(s, l, "allowed_iovas", 0x10);
        assertEquals(Errno.EFAULT, err(c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s)));
        set32(s, l, "num_iovas", 0);
        assertEquals(0, c.ioctl(fd, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, s), "an empty list clears");
    }

    @Test
    void closeDestroysEverything() throws Exception {
        ioasAlloc();
        ioasAlloc();
        c.close(fd);
        fd = c.open("/dev/iommu", Syscall.O_RDWR);
        assertEquals(1, ioasAlloc(), "a new context starts from id 1");
    }
}
