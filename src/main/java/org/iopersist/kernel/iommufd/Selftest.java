package org.iopersist.kernel.iommufd;

import java.lang.foreign.MemorySegment;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Syscall;

/**
 * IOMMU_TEST_CMD ({@code iommufd_test} in {@code selftest.c}): the ops the iommufd selftest drives,
 * answered only by a kernel booted with {@code iommufd.selftest=1} (ENOTTY otherwise, as a kernel
 * built without CONFIG_IOMMUFD_TEST). Each op works through iommufd's own paths: a mock domain is
 * a mock device bound and attached as VFIO would, an access is iommufd's in-kernel access API.
 * An unknown op is EOPNOTSUPP.
 */
final class Selftest {
    /** The largest range ACCESS_PAGES and ACCESS_RW take (they refuse more with ENOMEM). */
    private static final long MAX_ACCESS = 16L << 20;
    private static final long PAGE = IoPagetable.PAGE_SIZE;
    /** Who owns an ADD_RESERVED range (Linux: NULL); it goes with the IOAS. */
    private enum ReservedOwner { SELFTEST }

    private Selftest() {
    }

    /** iommufd_test. */
    static long test(final Ucmd u) {
        final MockIommu mock = u.ctx.iommu().busDriver(MockIommu.class);
        if (mock == null) {
            throw new KernelException(Errno.ENOTTY, "IOMMU_TEST_CMD needs a kernel booted with iommufd.selftest=1");
        }
        final MemorySegment c = u.cmd;
        final int id = IommuTestCmd.id(c);
        return switch (IommuTestCmd.op(c)) {
            case IommuTestCmd.IOMMU_TEST_OP_ADD_RESERVED -> addReserved(u, id, IommuTestCmd.addReservedStart(c),
                    IommuTestCmd.addReservedLength(c));
            case IommuTestCmd.IOMMU_TEST_OP_MOCK_DOMAIN -> mockDomain(u, mock, id, 0);
            case IommuTestCmd.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS -> mockDomain(u, mock, id, IommuTestCmd.mockDomainFlagsDevFlags(c));
            case IommuTestCmd.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE -> mockDomainReplace(u, id, IommuTestCmd.mockDomainReplacePtId(c));
            case IommuTestCmd.IOMMU_TEST_OP_MD_CHECK_MAP -> checkMap(u, id, IommuTestCmd.checkMapIova(c), IommuTestCmd.checkMapLength(c),
                    IommuTestCmd.checkMapUptr(c));
            case IommuTestCmd.IOMMU_TEST_OP_MD_CHECK_REFS -> checkRefs(u, IommuTestCmd.checkRefsUptr(c), IommuTestCmd.checkRefsLength(c),
                    IommuTestCmd.checkRefsRefs(c));
            case IommuTestCmd.IOMMU_TEST_OP_MD_CHECK_IOTLB -> {
                // get_md_pagetable_nested: only a HWPT_NESTED has a mock IOTLB, and none exist here.
                u.ctx.objects.putObject(u.ctx.objects.getObject(id, ObjectType.HWPT_NESTED, IommufdObject.class));
                yield 0;
            }
            case IommuTestCmd.IOMMU_TEST_OP_CREATE_ACCESS -> createAccess(u, id, IommuTestCmd.createAccessFlags(c));
            case IommuTestCmd.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS -> {
                Access.replace(SelftestAccess.get(u.process, id).access(), IommuTestCmd.accessReplaceIoasIoasId(c));
                yield 0;
            }
            case IommuTestCmd.IOMMU_TEST_OP_ACCESS_PAGES -> accessPages(u, id, IommuTestCmd.accessPagesIova(c),
                    IommuTestCmd.accessPagesLength(c), IommuTestCmd.accessPagesUptr(c), IommuTestCmd.accessPagesFlags(c));
            case IommuTestCmd.IOMMU_TEST_OP_ACCESS_RW -> accessRw(u, id, IommuTestCmd.accessRwIova(c), IommuTestCmd.accessRwLength(c),
                    IommuTestCmd.accessRwUptr(c), IommuTestCmd.accessRwFlags(c));
            case IommuTestCmd.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES -> {
                SelftestAccess.get(u.process, id).destroyItem(IommuTestCmd.destroyAccessPagesAccessPagesId(c));
                yield 0;
            }
            case IommuTestCmd.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT -> {
                // Protects _batch_init: never below one batch element (an unsigned long and a u32).
                final long limit = Integer.toUnsignedLong(IommuTestCmd.memoryLimitLimit(c));
                if (limit < Long.BYTES + Integer.BYTES) {
                    throw new KernelException(Errno.EINVAL, "memory limit " + limit);
                }
                mock.memoryLimit((int) limit);
                yield 0;
            }
            case IommuTestCmd.IOMMU_TEST_OP_DIRTY -> dirty(u, id, IommuTestCmd.dirtyIova(c), IommuTestCmd.dirtyLength(c),
                    IommuTestCmd.dirtyPageSize(c), IommuTestCmd.dirtyUptr(c));
            default -> throw Ucmd.unsupported("IOMMU_TEST_CMD op " + IommuTestCmd.op(c));
        };
    }

    /** iommufd_test_add_reserved: iopt_reserve_iova on the IOAS (EADDRINUSE over an area or an allowed range). */
    private static long addReserved(final Ucmd u, final int ioasId, final long start, final long length) {
        final Ioas ioas = Ioas.get(u.ctx, ioasId);
        try {
            ioas.iopt.iovaLock.writeLock().lock();
            try {
                ioas.iopt.reserve(start, start + length - 1, ReservedOwner.SELFTEST);
            } finally {
                ioas.iopt.iovaLock.writeLock().unlock();
            }
            return 0;
        } finally {
            u.ctx.objects.putObject(ioas);
        }
    }

    /**
     * iommufd_test_mock_domain: a selftest object, a new mock device bound to the context
     * (iommufd_device_bind) and attached to {@code ptId} (iommufd_device_attach: an IOAS gets an auto
     * HWPT); answers the three ids. Mock domains are not preserved, so a persistent context refuses
     * them (EOPNOTSUPP).
     */
    private static long mockDomain(final Ucmd u, final MockIommu mock, final int ptId, final int devFlags) {
        if (u.ctx.persistent()) {
            throw Ucmd.unsupported("mock domains in a persistent iommufd (they are not handed over)");
        }
        final int sobjId = u.ctx.objects.reserve();
        IommuDevice dev = null;
        IommufdDevice idev = null;
        boolean attached = false;
        try {
            dev = mock.createDevice(devFlags);
            idev = IommufdDevice.bind(u.ctx, dev);
            final int hwptId = IommufdDevice.attach(idev, ptId);
            attached = true;
            IommuTestCmd.mockDomainOutHwptId(u.cmd, hwptId);
            IommuTestCmd.mockDomainOutStdevId(u.cmd, sobjId);
            IommuTestCmd.mockDomainOutIdevId(u.cmd, idev.id());
            u.respond();
        } catch (RuntimeException e) {
            if (idev != null) {
                if (attached) {
                    synchronized (u.ctx.attachLock) {
                        IommufdDevice.detachLocked(idev);
                    }
                }
                IommufdDevice.unbind(idev);
            }
            if (dev != null) {
                mock.destroyDevice(dev);
            }
            u.ctx.objects.abort(sobjId);
            throw e;
        }
        u.ctx.objects.finalizeObject(sobjId, new SelftestObject(mock, dev, idev));
        return 0;
    }

    /** iommufd_test_mock_domain_replace: iommufd_device_replace of the selftest object's device; answers the HWPT. */
    private static long mockDomainReplace(final Ucmd u, final int stdevId, final int ptId) {
        final SelftestObject sobj = u.ctx.objects.getObject(stdevId, ObjectType.SELFTEST, SelftestObject.class);
        try {
            IommuTestCmd.mockDomainReplacePtId(u.cmd, IommufdDevice.attach(sobj.idev, ptId));
            u.respond();
            return 0;
        } finally {
            u.ctx.objects.putObject(sobj);
        }
    }

    /** get_md_pagetable: the HWPT_PAGING {@code id} (ENOENT) over a mock domain (EINVAL otherwise). Put by the caller. */
    private static HwptPaging mockHwpt(final Ucmd u, final int id) {
        final HwptPaging h = HwptPaging.get(u.ctx, id);
        if (!(h.domain.ops() instanceof MockDomain)) {
            u.ctx.objects.putObject(h);
            throw new KernelException(Errno.EINVAL, "HWPT " + id + " is not a mock domain");
        }
        return h;
    }

    /** The frame behind the user page at {@code pageVa} (get_user_pages_fast): EFAULT if nothing is mapped. */
    private static long userPage(final UserProcess p, final long pageVa) {
        final long phys = p.mm().translate(pageVa, Syscall.PROT_READ);
        if (phys < 0) {
            throw new KernelException(Errno.EFAULT, String.format("user page 0x%x is not mapped", pageVa));
        }
        return phys;
    }

    /**
     * iommufd_test_md_check_pa: every 2 KiB of {@code [iova, iova + length)} in the mock domain maps
     * the same byte as {@code uptr} does in the caller (EINVAL otherwise, and for a range not 2 KiB
     * aligned).
     */
    private static long checkMap(final Ucmd u, final int hwptId, final long iova, final long length, final long uptr) {
        final long io = MockDomain.MOCK_IO_PAGE_SIZE;
        if ((iova | length | uptr) % io != 0 || Long.compareUnsigned(uptr + length, uptr) < 0) {
            throw new KernelException(Errno.EINVAL, "MD_CHECK_MAP range not 2 KiB aligned");
        }
        final HwptPaging h = mockHwpt(u, hwptId);
        try {
            final MockDomain mock = (MockDomain) h.domain.ops();
            for (long done = 0; done < length; done += io) {
                final long va = uptr + done;
                final long want = userPage(u.process, va & -PAGE) + (va & (PAGE - 1));
                final long got = mock.physAt(iova + done);
                if (got < 0 || got != want) {
                    throw new KernelException(Errno.EINVAL, String.format("IOVA 0x%x maps 0x%x, user 0x%x is at 0x%x",
                            iova + done, got, va, want));
                }
            }
            return 0;
        } finally {
            u.ctx.objects.putObject(h);
        }
    }

    /** iommufd_test_md_check_refs: every page of {@code [uptr, uptr + length)} carries {@code refs} pins (EIO otherwise). */
    private static long checkRefs(final Ucmd u, final long uptr, final long length, final int refs) {
        if ((length | uptr) % PAGE != 0 || Long.compareUnsigned(uptr + length, uptr) < 0) {
            throw new KernelException(Errno.EINVAL, "MD_CHECK_REFS range not page aligned");
        }
        for (long done = 0; done < length; done += PAGE) {
            final long phys = userPage(u.process, uptr + done);
            final int pins = u.ctx.refs().pins(phys);
            if (pins != refs) {
                throw new KernelException(Errno.EIO, String.format("page 0x%x has %d pins, %d expected", uptr + done, pins, refs));
            }
        }
        return 0;
    }

    /**
     * iommufd_test_create_access: an access (pinning, with NEEDS_PIN_PAGES) attached to IOAS
     * {@code ioasId}, behind a new fd answered in out_access_fd.
     */
    private static long createAccess(final Ucmd u, final int ioasId, final int flags) {
        if ((flags & ~IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) != 0) {
            throw Ucmd.unsupported("CREATE_ACCESS flags 0x" + Integer.toHexString(flags));
        }
        u.ctx.fail.kzalloc("selftest_access"); // iommufd_test_alloc_access
        u.ctx.fail.kzalloc("the access's file"); // anon_inode_getfile's struct file
        if (u.process.fds().size() >= u.process.fds().nofileLimit()[0]) {
            // get_unused_fd_flags failing: the selftest answers ENOMEM, not its EMFILE
            throw new KernelException(Errno.ENOMEM, "no free fd");
        }
        final SelftestAccess staccess = new SelftestAccess((flags & IommuTestCmd.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) != 0);
        final Access access = Access.create(u.ctx, staccess);
        try {
            Access.attach(access, ioasId);
        } catch (RuntimeException e) {
            Access.destroy(access);
            throw e;
        }
        staccess.access(access);
        final int fd = u.process.fds().install(staccess);
        IommuTestCmd.createAccessOutAccessFd(u.cmd, fd);
        try {
            u.respond();
        } catch (RuntimeException e) {
            u.process.fds().remove(fd).put();
            throw e;
        }
        return 0;
    }

    /** iommufd_test_syz_conv_iova: with MOCK_FLAGS_ACCESS_SYZ the IOVA is {u32 nth area, u32 offset}. */
    private static long syzIova(final Access access, final long iova) {
        final Ioas ioas = access.attachedIoas();
        if (ioas == null) {
            return 0;
        }
        ioas.iopt.iovaLock.readLock().lock();
        try {
            long nth = iova & 0xFFFF_FFFFL;
            for (IoptArea a : ioas.iopt.areas().values()) {
                if (nth-- == 0) {
                    return a.start() + (iova >>> 32);
                }
            }
            return 0;
        } finally {
            ioas.iopt.iovaLock.readLock().unlock();
        }
    }

    /**
     * iommufd_test_access_pages: pins {@code [iova, iova + length)} through the access
     * (iommufd_access_pin_pages), checks each page is the one the caller has at {@code uptr}
     * (EBADE otherwise; no check for uptr 0), and records the pin as an item.
     */
    private static long accessPages(final Ucmd u, final int fd, final long iovaIn, final long length, final long uptr,
            final int flags) {
        if (Long.compareUnsigned(length, MAX_ACCESS) > 0) {
            throw new KernelException(Errno.ENOMEM, "ACCESS_PAGES of 0x" + Long.toHexString(length) + " bytes");
        }
        if ((flags & ~(IommuTestCmd.MOCK_FLAGS_ACCESS_WRITE | IommuTestCmd.MOCK_FLAGS_ACCESS_SYZ)) != 0) {
            throw Ucmd.unsupported("ACCESS_PAGES flags 0x" + Integer.toHexString(flags));
        }
        final SelftestAccess staccess = SelftestAccess.get(u.process, fd);
        if (!staccess.needsPinPages()) {
            throw Ucmd.unsupported("the access was created without NEEDS_PIN_PAGES");
        }
        final Access access = staccess.access();
        final long iova = (flags & IommuTestCmd.MOCK_FLAGS_ACCESS_SYZ) != 0 ? syzIova(access, iovaIn) : iovaIn;
        u.ctx.fail.kzalloc("the page list"); // kvcalloc
        synchronized (staccess) {
            final long[] frames = Access.pinPages(access, iova, length, (flags & IommuTestCmd.MOCK_FLAGS_ACCESS_WRITE) != 0);
            int itemId = -1;
            try {
                if (uptr != 0) {
                    final long base = uptr - (iova - (iova & -PAGE));
                    for (int i = 0; i < frames.length; i++) {
                        if (userPage(u.process, base + i * PAGE) != frames[i]) {
                            throw new KernelException(Errno.EBADE, String.format("the access pinned 0x%x, the user has 0x%x",
                                    frames[i], userPage(u.process, base + i * PAGE)));
                        }
                    }
                }
                u.ctx.fail.kzalloc("selftest_access_item");
                itemId = staccess.add(iova, length);
                IommuTestCmd.accessPagesOutAccessPagesId(u.cmd, itemId);
                u.respond();
                return 0;
            } catch (RuntimeException e) {
                if (itemId >= 0) {
                    staccess.forget(itemId);
                }
                Access.unpinPages(access, iova, length);
                throw e;
            }
        }
    }

    /**
     * iommufd_test_access_rw: iommufd_access_rw between the IOAS and the caller's {@code uptr},
     * copied in first for a write (EFAULT), out after a read.
     */
    private static long accessRw(final Ucmd u, final int fd, final long iovaIn, final long length, final long uptr, final int flags) {
        if (Long.compareUnsigned(length, MAX_ACCESS) > 0) {
            throw new KernelException(Errno.ENOMEM, "ACCESS_RW of 0x" + Long.toHexString(length) + " bytes");
        }
        if ((flags & ~(IommuTestCmd.MOCK_ACCESS_RW_WRITE | IommuTestCmd.MOCK_ACCESS_RW_SLOW_PATH
                | IommuTestCmd.MOCK_FLAGS_ACCESS_SYZ)) != 0) {
            throw Ucmd.unsupported("ACCESS_RW flags 0x" + Integer.toHexString(flags));
        }
        final SelftestAccess staccess = SelftestAccess.get(u.process, fd);
        u.ctx.fail.kzalloc("the bounce buffer"); // kvzalloc
        final MemorySegment tmp = MemorySegment.ofArray(new byte[(int) length]);
        final boolean write = (flags & IommuTestCmd.MOCK_ACCESS_RW_WRITE) != 0;
        if (write) {
            u.process.mm().copyFromUser(uptr, tmp, 0, length);
        }
        final long iova = (flags & IommuTestCmd.MOCK_FLAGS_ACCESS_SYZ) != 0 ? syzIova(staccess.access(), iovaIn) : iovaIn;
        // The slow path (pin, copy, unpin) and the fast one give the same bytes; they differ in
        // where fail_nth can make them fail.
        Access.rw(staccess.access(), iova, tmp, write, (flags & IommuTestCmd.MOCK_ACCESS_RW_SLOW_PATH) != 0);
        if (!write) {
            u.process.mm().copyToUser(uptr, tmp, 0, length);
        }
        return 0;
    }

    /**
     * iommufd_test_dirty: marks dirty, in the mock domain, each page_size whose bit is set in the
     * user's bitmap at {@code uptr} and that the domain maps; answers how many in out_nr_dirty.
     * EINVAL for a bad range or with dirty tracking off.
     */
    private static long dirty(final Ucmd u, final int hwptId, final long iova, final long length, final long pageSize,
            final long uptr) {
        if (pageSize == 0 || length == 0 || Long.remainderUnsigned(iova, pageSize) != 0
                || Long.remainderUnsigned(length, pageSize) != 0 || uptr == 0) {
            throw new KernelException(Errno.EINVAL, "IOMMU_TEST_OP_DIRTY range");
        }
        final HwptPaging h = mockHwpt(u, hwptId);
        try {
            final MockDomain mock = (MockDomain) h.domain.ops();
            if (!mock.dirtyTracking()) {
                throw new KernelException(Errno.EINVAL, "dirty tracking is off on HWPT " + hwptId);
            }
            final long max = Long.divideUnsigned(length, pageSize);
            if (max > Integer.MAX_VALUE) {
                throw new KernelException(Errno.ENOMEM, "a bitmap of " + max + " bits");
            }
            final byte[] bitmap = new byte[(int) ((max + 7) / 8)];
            u.process.mm().copyFromUser(uptr, MemorySegment.ofArray(bitmap), 0, bitmap.length);
            long count = 0;
            for (long i = 0; i < max; i++) {
                if ((bitmap[(int) (i >>> 3)] & (1 << (i & 7))) != 0
                        && mock.markDirty(Long.divideUnsigned(iova + i * pageSize, pageSize))) {
                    count++;
                }
            }
            IommuTestCmd.dirtyOutNrDirty(u.cmd, count);
            u.respond();
            return 0;
        } finally {
            u.ctx.objects.putObject(h);
        }
    }
}
