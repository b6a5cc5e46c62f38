package org.iopersist.uapi;

import static org.iopersist.uapi.CType.ALIGNED_U64;
import static org.iopersist.uapi.CType.U32;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * {@code struct iommu_test_cmd}, the argument of {@code IOMMU_TEST_CMD}, and the constants of
 * {@code drivers/iommu/iommufd/iommufd_test.h}: the kernel's test interface behind the boot parameter
 * {@code iommufd.selftest=1} (CONFIG_IOMMUFD_TEST in Linux), which the iommufd selftest drives. A
 * union of per-op members follows the header; each accessor is named after its member
 * ({@code mockDomainOutHwptId} for {@code mock_domain.out_hwpt_id}).
 *
 * <pre>
 *   0  u32      size
 *   4  u32      op          IOMMU_TEST_OP_*
 *   8  u32      id          the object the op works on
 *  12  u32      __reserved
 *  16  union    48 bytes, the op's member (largest: dirty)
 *  64  u32      last
 *  68  (4 bytes of padding: the union is 8-aligned)
 * </pre>
 */
public final class IommuTestCmd {
    /** IOMMU_TEST_CMD: {@code _IO(';', IOMMUFD_CMD_BASE + 32)}. */
    public static final int IOMMU_TEST_CMD = Iommufd.io(Iommufd.IOMMUFD_TYPE, Iommufd.CMD_BASE + 32);

    // enum of ops (the header's order)
    public static final int IOMMU_TEST_OP_ADD_RESERVED = 1;
    public static final int IOMMU_TEST_OP_MOCK_DOMAIN = 2;
    public static final int IOMMU_TEST_OP_MD_CHECK_MAP = 3;
    public static final int IOMMU_TEST_OP_MD_CHECK_REFS = 4;
    public static final int IOMMU_TEST_OP_CREATE_ACCESS = 5;
    public static final int IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6;
    public static final int IOMMU_TEST_OP_ACCESS_PAGES = 7;
    public static final int IOMMU_TEST_OP_ACCESS_RW = 8;
    public static final int IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9;
    public static final int IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
    public static final int IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11;
    public static final int IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
    public static final int IOMMU_TEST_OP_DIRTY = 13;
    public static final int IOMMU_TEST_OP_MD_CHECK_IOTLB = 14;
    public static final int IOMMU_TEST_OP_TRIGGER_IOPF = 15;
    public static final int IOMMU_TEST_OP_DEV_CHECK_CACHE = 16;

    public static final long MOCK_APERTURE_START = 1L << 24;
    public static final long MOCK_APERTURE_LAST = (1L << 31) - 1;

    public static final int MOCK_FLAGS_ACCESS_WRITE = 1;
    public static final int MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
    public static final int MOCK_ACCESS_RW_WRITE = 1;
    public static final int MOCK_ACCESS_RW_SLOW_PATH = 1 << 2;
    public static final int MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1;
    public static final int MOCK_FLAGS_DEVICE_NO_DIRTY = 1;
    public static final int MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1;
    public static final int MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3;
    public static final int MOCK_NESTED_DOMAIN_IOTLB_NUM = 4;

    /** IOMMU_GET_HW_INFO's out_data_type for a mock device, and struct iommu_test_hw_info's test_reg. */
    public static final int IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
    public static final int IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
    public static final int IOMMU_HWPT_DATA_SELFTEST = 0xdead;
    public static final int IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;

    public static final long SIZE_OFFSET = 0;
    public static final long OP_OFFSET = 4;
    public static final long ID_OFFSET = 8;
    public static final long RESERVED_OFFSET = 12;
    public static final long ADD_RESERVED_START_OFFSET = 16;
    public static final long ADD_RESERVED_LENGTH_OFFSET = 24;
    public static final long MOCK_DOMAIN_OUT_STDEV_ID_OFFSET = 16;
    public static final long MOCK_DOMAIN_OUT_HWPT_ID_OFFSET = 20;
    public static final long MOCK_DOMAIN_OUT_IDEV_ID_OFFSET = 24;
    public static final long MOCK_DOMAIN_FLAGS_DEV_FLAGS_OFFSET = 28;
    public static final long MOCK_DOMAIN_REPLACE_PT_ID_OFFSET = 16;
    public static final long CHECK_MAP_IOVA_OFFSET = 16;
    public static final long CHECK_MAP_LENGTH_OFFSET = 24;
    public static final long CHECK_MAP_UPTR_OFFSET = 32;
    public static final long CHECK_REFS_LENGTH_OFFSET = 16;
    public static final long CHECK_REFS_UPTR_OFFSET = 24;
    public static final long CHECK_REFS_REFS_OFFSET = 32;
    public static final long CREATE_ACCESS_OUT_ACCESS_FD_OFFSET = 16;
    public static final long CREATE_ACCESS_FLAGS_OFFSET = 20;
    public static final long DESTROY_ACCESS_PAGES_ACCESS_PAGES_ID_OFFSET = 16;
    public static final long ACCESS_PAGES_FLAGS_OFFSET = 16;
    public static final long ACCESS_PAGES_OUT_ACCESS_PAGES_ID_OFFSET = 20;
    public static final long ACCESS_PAGES_IOVA_OFFSET = 24;
    public static final long ACCESS_PAGES_LENGTH_OFFSET = 32;
    public static final long ACCESS_PAGES_UPTR_OFFSET = 40;
    public static final long ACCESS_RW_IOVA_OFFSET = 16;
    public static final long ACCESS_RW_LENGTH_OFFSET = 24;
    public static final long ACCESS_RW_UPTR_OFFSET = 32;
    public static final long ACCESS_RW_FLAGS_OFFSET = 40;
    public static final long MEMORY_LIMIT_LIMIT_OFFSET = 16;
    public static final long ACCESS_REPLACE_IOAS_IOAS_ID_OFFSET = 16;
    public static final long DIRTY_FLAGS_OFFSET = 16;
    public static final long DIRTY_IOVA_OFFSET = 24;
    public static final long DIRTY_LENGTH_OFFSET = 32;
    public static final long DIRTY_PAGE_SIZE_OFFSET = 40;
    public static final long DIRTY_UPTR_OFFSET = 48;
    public static final long DIRTY_OUT_NR_DIRTY_OFFSET = 56;
    public static final long CHECK_IOTLB_ID_OFFSET = 16;
    public static final long CHECK_IOTLB_IOTLB_OFFSET = 20;
    public static final long LAST_OFFSET = 64;
    /** {@code sizeof(struct iommu_test_cmd)}. */
    public static final long SIZE = 72;
    /** {@code offsetofend(struct iommu_test_cmd, last)}: the smallest size IOMMU_TEST_CMD accepts. */
    public static final long MIN_SIZE = LAST_OFFSET + 4;

    /** The C layout with its union, for the size test and the docs; accessors use the constant offsets above. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("op"), U32.withName("id"), U32.withName("__reserved"),
            MemoryLayout.unionLayout(
                    MemoryLayout.structLayout(ALIGNED_U64.withName("start"), ALIGNED_U64.withName("length")).withName("add_reserved"),
                    MemoryLayout.structLayout(U32.withName("out_stdev_id"), U32.withName("out_hwpt_id"),
                            U32.withName("out_idev_id")).withName("mock_domain"),
                    MemoryLayout.structLayout(U32.withName("out_stdev_id"), U32.withName("out_hwpt_id"),
                            U32.withName("out_idev_id"), U32.withName("dev_flags")).withName("mock_domain_flags"),
                    MemoryLayout.structLayout(U32.withName("pt_id")).withName("mock_domain_replace"),
                    MemoryLayout.structLayout(ALIGNED_U64.withName("iova"), ALIGNED_U64.withName("length"),
                            ALIGNED_U64.withName("uptr")).withName("check_map"),
                    MemoryLayout.structLayout(ALIGNED_U64.withName("length"), ALIGNED_U64.withName("uptr"), U32.withName("refs"),
                            MemoryLayout.paddingLayout(4)).withName("check_refs"),
                    MemoryLayout.structLayout(U32.withName("out_access_fd"), U32.withName("flags")).withName("create_access"),
                    MemoryLayout.structLayout(U32.withName("access_pages_id")).withName("destroy_access_pages"),
                    MemoryLayout.structLayout(U32.withName("flags"), U32.withName("out_access_pages_id"), ALIGNED_U64.withName("iova"),
                            ALIGNED_U64.withName("length"), ALIGNED_U64.withName("uptr")).withName("access_pages"),
                    MemoryLayout.structLayout(ALIGNED_U64.withName("iova"), ALIGNED_U64.withName("length"), ALIGNED_U64.withName("uptr"),
                            U32.withName("flags"), MemoryLayout.paddingLayout(4)).withName("access_rw"),
                    MemoryLayout.structLayout(U32.withName("limit")).withName("memory_limit"),
                    MemoryLayout.structLayout(U32.withName("ioas_id")).withName("access_replace_ioas"),
                    MemoryLayout.structLayout(U32.withName("flags"), MemoryLayout.paddingLayout(4), ALIGNED_U64.withName("iova"),
                            ALIGNED_U64.withName("length"), ALIGNED_U64.withName("page_size"), ALIGNED_U64.withName("uptr"),
                            ALIGNED_U64.withName("out_nr_dirty")).withName("dirty"),
                    MemoryLayout.structLayout(U32.withName("id"), U32.withName("iotlb")).withName("check_iotlb")).withName("u"),
            U32.withName("last"), MemoryLayout.paddingLayout(4)).withName("iommu_test_cmd");

    private IommuTestCmd() {
    }

    /** {@code op}: IOMMU_TEST_OP_*. */
    public static int op(final MemorySegment s) {
        return CType.u32(s, OP_OFFSET);
    }

    /** Sets {@code op}. */
    public static void op(final MemorySegment s, final int v) {
        CType.u32(s, OP_OFFSET, v);
    }

    /** {@code id}: the IOAS, HWPT, selftest object or access fd the op works on. */
    public static int id(final MemorySegment s) {
        return CType.u32(s, ID_OFFSET);
    }

    /** Sets {@code id}. */
    public static void id(final MemorySegment s, final int v) {
        CType.u32(s, ID_OFFSET, v);
    }

    /** {@code __reserved}. */
    public static int reserved(final MemorySegment s) {
        return CType.u32(s, RESERVED_OFFSET);
    }

    /** {@code add_reserved.start}. */
    public static long addReservedStart(final MemorySegment s) {
        return CType.u64(s, ADD_RESERVED_START_OFFSET);
    }

    /** Sets {@code add_reserved.start}. */
    public static void addReservedStart(final MemorySegment s, final long v) {
        CType.u64(s, ADD_RESERVED_START_OFFSET, v);
    }

    /** {@code add_reserved.length}. */
    public static long addReservedLength(final MemorySegment s) {
        return CType.u64(s, ADD_RESERVED_LENGTH_OFFSET);
    }

    /** Sets {@code add_reserved.length}. */
    public static void addReservedLength(final MemorySegment s, final long v) {
        CType.u64(s, ADD_RESERVED_LENGTH_OFFSET, v);
    }

    /** {@code mock_domain.out_stdev_id: the selftest object, destroying it unbinds and removes the device}. */
    public static int mockDomainOutStdevId(final MemorySegment s) {
        return CType.u32(s, MOCK_DOMAIN_OUT_STDEV_ID_OFFSET);
    }

    /** Sets {@code mock_domain.out_stdev_id}. */
    public static void mockDomainOutStdevId(final MemorySegment s, final int v) {
        CType.u32(s, MOCK_DOMAIN_OUT_STDEV_ID_OFFSET, v);
    }

    /** {@code mock_domain.out_hwpt_id: the HWPT the device was attached to}. */
    public static int mockDomainOutHwptId(final MemorySegment s) {
        return CType.u32(s, MOCK_DOMAIN_OUT_HWPT_ID_OFFSET);
    }

    /** Sets {@code mock_domain.out_hwpt_id}. */
    public static void mockDomainOutHwptId(final MemorySegment s, final int v) {
        CType.u32(s, MOCK_DOMAIN_OUT_HWPT_ID_OFFSET, v);
    }

    /** {@code mock_domain.out_idev_id: the device object iommufd_device_bind made}. */
    public static int mockDomainOutIdevId(final MemorySegment s) {
        return CType.u32(s, MOCK_DOMAIN_OUT_IDEV_ID_OFFSET);
    }

    /** Sets {@code mock_domain.out_idev_id}. */
    public static void mockDomainOutIdevId(final MemorySegment s, final int v) {
        CType.u32(s, MOCK_DOMAIN_OUT_IDEV_ID_OFFSET, v);
    }

    /** {@code mock_domain_flags.dev_flags: MOCK_FLAGS_DEVICE_*}. */
    public static int mockDomainFlagsDevFlags(final MemorySegment s) {
        return CType.u32(s, MOCK_DOMAIN_FLAGS_DEV_FLAGS_OFFSET);
    }

    /** Sets {@code mock_domain_flags.dev_flags}. */
    public static void mockDomainFlagsDevFlags(final MemorySegment s, final int v) {
        CType.u32(s, MOCK_DOMAIN_FLAGS_DEV_FLAGS_OFFSET, v);
    }

    /** {@code mock_domain_replace.pt_id: in: the IOAS or HWPT; out: the HWPT}. */
    public static int mockDomainReplacePtId(final MemorySegment s) {
        return CType.u32(s, MOCK_DOMAIN_REPLACE_PT_ID_OFFSET);
    }

    /** Sets {@code mock_domain_replace.pt_id}. */
    public static void mockDomainReplacePtId(final MemorySegment s, final int v) {
        CType.u32(s, MOCK_DOMAIN_REPLACE_PT_ID_OFFSET, v);
    }

    /** {@code check_map.iova}. */
    public static long checkMapIova(final MemorySegment s) {
        return CType.u64(s, CHECK_MAP_IOVA_OFFSET);
    }

    /** Sets {@code check_map.iova}. */
    public static void checkMapIova(final MemorySegment s, final long v) {
        CType.u64(s, CHECK_MAP_IOVA_OFFSET, v);
    }

    /** {@code check_map.length}. */
    public static long checkMapLength(final MemorySegment s) {
        return CType.u64(s, CHECK_MAP_LENGTH_OFFSET);
    }

    /** Sets {@code check_map.length}. */
    public static void checkMapLength(final MemorySegment s, final long v) {
        CType.u64(s, CHECK_MAP_LENGTH_OFFSET, v);
    }

    /** {@code check_map.uptr}. */
    public static long checkMapUptr(final MemorySegment s) {
        return CType.u64(s, CHECK_MAP_UPTR_OFFSET);
    }

    /** Sets {@code check_map.uptr}. */
    public static void checkMapUptr(final MemorySegment s, final long v) {
        CType.u64(s, CHECK_MAP_UPTR_OFFSET, v);
    }

    /** {@code check_refs.length}. */
    public static long checkRefsLength(final MemorySegment s) {
        return CType.u64(s, CHECK_REFS_LENGTH_OFFSET);
    }

    /** Sets {@code check_refs.length}. */
    public static void checkRefsLength(final MemorySegment s, final long v) {
        CType.u64(s, CHECK_REFS_LENGTH_OFFSET, v);
    }

    /** {@code check_refs.uptr}. */
    public static long checkRefsUptr(final MemorySegment s) {
        return CType.u64(s, CHECK_REFS_UPTR_OFFSET);
    }

    /** Sets {@code check_refs.uptr}. */
    public static void checkRefsUptr(final MemorySegment s, final long v) {
        CType.u64(s, CHECK_REFS_UPTR_OFFSET, v);
    }

    /** {@code check_refs.refs: pins expected on every page}. */
    public static int checkRefsRefs(final MemorySegment s) {
        return CType.u32(s, CHECK_REFS_REFS_OFFSET);
    }

    /** Sets {@code check_refs.refs}. */
    public static void checkRefsRefs(final MemorySegment s, final int v) {
        CType.u32(s, CHECK_REFS_REFS_OFFSET, v);
    }

    /** {@code create_access.out_access_fd}. */
    public static int createAccessOutAccessFd(final MemorySegment s) {
        return CType.u32(s, CREATE_ACCESS_OUT_ACCESS_FD_OFFSET);
    }

    /** Sets {@code create_access.out_access_fd}. */
    public static void createAccessOutAccessFd(final MemorySegment s, final int v) {
        CType.u32(s, CREATE_ACCESS_OUT_ACCESS_FD_OFFSET, v);
    }

    /** {@code create_access.flags: MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES}. */
    public static int createAccessFlags(final MemorySegment s) {
        return CType.u32(s, CREATE_ACCESS_FLAGS_OFFSET);
    }

    /** Sets {@code create_access.flags}. */
    public static void createAccessFlags(final MemorySegment s, final int v) {
        CType.u32(s, CREATE_ACCESS_FLAGS_OFFSET, v);
    }

    /** {@code destroy_access_pages.access_pages_id}. */
    public static int destroyAccessPagesAccessPagesId(final MemorySegment s) {
        return CType.u32(s, DESTROY_ACCESS_PAGES_ACCESS_PAGES_ID_OFFSET);
    }

    /** Sets {@code destroy_access_pages.access_pages_id}. */
    public static void destroyAccessPagesAccessPagesId(final MemorySegment s, final int v) {
        CType.u32(s, DESTROY_ACCESS_PAGES_ACCESS_PAGES_ID_OFFSET, v);
    }

    /** {@code access_pages.flags: MOCK_FLAGS_ACCESS_WRITE}. */
    public static int accessPagesFlags(final MemorySegment s) {
        return CType.u32(s, ACCESS_PAGES_FLAGS_OFFSET);
    }

    /** Sets {@code access_pages.flags}. */
    public static void accessPagesFlags(final MemorySegment s, final int v) {
        CType.u32(s, ACCESS_PAGES_FLAGS_OFFSET, v);
    }

    /** {@code access_pages.out_access_pages_id}. */
    public static int accessPagesOutAccessPagesId(final MemorySegment s) {
        return CType.u32(s, ACCESS_PAGES_OUT_ACCESS_PAGES_ID_OFFSET);
    }

    /** Sets {@code access_pages.out_access_pages_id}. */
    public static void accessPagesOutAccessPagesId(final MemorySegment s, final int v) {
        CType.u32(s, ACCESS_PAGES_OUT_ACCESS_PAGES_ID_OFFSET, v);
    }

    /** {@code access_pages.iova}. */
    public static long accessPagesIova(final MemorySegment s) {
        return CType.u64(s, ACCESS_PAGES_IOVA_OFFSET);
    }

    /** Sets {@code access_pages.iova}. */
    public static void accessPagesIova(final MemorySegment s, final long v) {
        CType.u64(s, ACCESS_PAGES_IOVA_OFFSET, v);
    }

    /** {@code access_pages.length}. */
    public static long accessPagesLength(final MemorySegment s) {
        return CType.u64(s, ACCESS_PAGES_LENGTH_OFFSET);
    }

    /** Sets {@code access_pages.length}. */
    public static void accessPagesLength(final MemorySegment s, final long v) {
        CType.u64(s, ACCESS_PAGES_LENGTH_OFFSET, v);
    }

    /** {@code access_pages.uptr: where the same pages are mapped in the caller, or 0}. */
    public static long accessPagesUptr(final MemorySegment s) {
        return CType.u64(s, ACCESS_PAGES_UPTR_OFFSET);
    }

    /** Sets {@code access_pages.uptr}. */
    public static void accessPagesUptr(final MemorySegment s, final long v) {
        CType.u64(s, ACCESS_PAGES_UPTR_OFFSET, v);
    }

    /** {@code access_rw.iova}. */
    public static long accessRwIova(final MemorySegment s) {
        return CType.u64(s, ACCESS_RW_IOVA_OFFSET);
    }

    /** Sets {@code access_rw.iova}. */
    public static void accessRwIova(final MemorySegment s, final long v) {
        CType.u64(s, ACCESS_RW_IOVA_OFFSET, v);
    }

    /** {@code access_rw.length}. */
    public static long accessRwLength(final MemorySegment s) {
        return CType.u64(s, ACCESS_RW_LENGTH_OFFSET);
    }

    /** Sets {@code access_rw.length}. */
    public static void accessRwLength(final MemorySegment s, final long v) {
        CType.u64(s, ACCESS_RW_LENGTH_OFFSET, v);
    }

    /** {@code access_rw.uptr}. */
    public static long accessRwUptr(final MemorySegment s) {
        return CType.u64(s, ACCESS_RW_UPTR_OFFSET);
    }

    /** Sets {@code access_rw.uptr}. */
    public static void accessRwUptr(final MemorySegment s, final long v) {
        CType.u64(s, ACCESS_RW_UPTR_OFFSET, v);
    }

    /** {@code access_rw.flags: MOCK_ACCESS_RW_WRITE, MOCK_ACCESS_RW_SLOW_PATH}. */
    public static int accessRwFlags(final MemorySegment s) {
        return CType.u32(s, ACCESS_RW_FLAGS_OFFSET);
    }

    /** Sets {@code access_rw.flags}. */
    public static void accessRwFlags(final MemorySegment s, final int v) {
        CType.u32(s, ACCESS_RW_FLAGS_OFFSET, v);
    }

    /** {@code memory_limit.limit}. */
    public static int memoryLimitLimit(final MemorySegment s) {
        return CType.u32(s, MEMORY_LIMIT_LIMIT_OFFSET);
    }

    /** Sets {@code memory_limit.limit}. */
    public static void memoryLimitLimit(final MemorySegment s, final int v) {
        CType.u32(s, MEMORY_LIMIT_LIMIT_OFFSET, v);
    }

    /** {@code access_replace_ioas.ioas_id}. */
    public static int accessReplaceIoasIoasId(final MemorySegment s) {
        return CType.u32(s, ACCESS_REPLACE_IOAS_IOAS_ID_OFFSET);
    }

    /** Sets {@code access_replace_ioas.ioas_id}. */
    public static void accessReplaceIoasIoasId(final MemorySegment s, final int v) {
        CType.u32(s, ACCESS_REPLACE_IOAS_IOAS_ID_OFFSET, v);
    }

    /** {@code dirty.flags}. */
    public static int dirtyFlags(final MemorySegment s) {
        return CType.u32(s, DIRTY_FLAGS_OFFSET);
    }

    /** Sets {@code dirty.flags}. */
    public static void dirtyFlags(final MemorySegment s, final int v) {
        CType.u32(s, DIRTY_FLAGS_OFFSET, v);
    }

    /** {@code dirty.iova}. */
    public static long dirtyIova(final MemorySegment s) {
        return CType.u64(s, DIRTY_IOVA_OFFSET);
    }

    /** Sets {@code dirty.iova}. */
    public static void dirtyIova(final MemorySegment s, final long v) {
        CType.u64(s, DIRTY_IOVA_OFFSET, v);
    }

    /** {@code dirty.length}. */
    public static long dirtyLength(final MemorySegment s) {
        return CType.u64(s, DIRTY_LENGTH_OFFSET);
    }

    /** Sets {@code dirty.length}. */
    public static void dirtyLength(final MemorySegment s, final long v) {
        CType.u64(s, DIRTY_LENGTH_OFFSET, v);
    }

    /** {@code dirty.page_size}. */
    public static long dirtyPageSize(final MemorySegment s) {
        return CType.u64(s, DIRTY_PAGE_SIZE_OFFSET);
    }

    /** Sets {@code dirty.page_size}. */
    public static void dirtyPageSize(final MemorySegment s, final long v) {
        CType.u64(s, DIRTY_PAGE_SIZE_OFFSET, v);
    }

    /** {@code dirty.uptr: a bitmap, one bit per page_size}. */
    public static long dirtyUptr(final MemorySegment s) {
        return CType.u64(s, DIRTY_UPTR_OFFSET);
    }

    /** Sets {@code dirty.uptr}. */
    public static void dirtyUptr(final MemorySegment s, final long v) {
        CType.u64(s, DIRTY_UPTR_OFFSET, v);
    }

    /** {@code dirty.out_nr_dirty}. */
    public static long dirtyOutNrDirty(final MemorySegment s) {
        return CType.u64(s, DIRTY_OUT_NR_DIRTY_OFFSET);
    }

    /** Sets {@code dirty.out_nr_dirty}. */
    public static void dirtyOutNrDirty(final MemorySegment s, final long v) {
        CType.u64(s, DIRTY_OUT_NR_DIRTY_OFFSET, v);
    }

    /** {@code check_iotlb.id}. */
    public static int checkIotlbId(final MemorySegment s) {
        return CType.u32(s, CHECK_IOTLB_ID_OFFSET);
    }

    /** Sets {@code check_iotlb.id}. */
    public static void checkIotlbId(final MemorySegment s, final int v) {
        CType.u32(s, CHECK_IOTLB_ID_OFFSET, v);
    }

    /** {@code check_iotlb.iotlb}. */
    public static int checkIotlbIotlb(final MemorySegment s) {
        return CType.u32(s, CHECK_IOTLB_IOTLB_OFFSET);
    }

    /** Sets {@code check_iotlb.iotlb}. */
    public static void checkIotlbIotlb(final MemorySegment s, final int v) {
        CType.u32(s, CHECK_IOTLB_IOTLB_OFFSET, v);
    }
}
