package org.iopersist.uapi;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The iommufd uAPI of {@code include/uapi/linux/iommufd.h}: ioctl numbers and struct layouts, byte
 * for byte. Every command is {@code _IO(';', 0x80 + n)} and every struct starts with {@code u32 size}.
 * Each command's minimum size is {@code offsetofend} of its last mandatory field, as the kernel's
 * dispatch table has it.
 */
public final class Iommufd {
    private Iommufd() {
    }

    public static final int IOMMUFD_TYPE = ';';
    public static final int CMD_BASE = 0x80;

    /** {@code _IO(type, nr)}: no direction, no size, as iommufd defines its commands. */
    public static int io(final int type, final int nr) {
        return (type << 8) | nr;
    }

    public static final int IOMMU_DESTROY = io(IOMMUFD_TYPE, 0x80);
    public static final int IOMMU_IOAS_ALLOC = io(IOMMUFD_TYPE, 0x81);
    public static final int IOMMU_IOAS_ALLOW_IOVAS = io(IOMMUFD_TYPE, 0x82);
    public static final int IOMMU_IOAS_COPY = io(IOMMUFD_TYPE, 0x83);
    public static final int IOMMU_IOAS_IOVA_RANGES = io(IOMMUFD_TYPE, 0x84);
    public static final int IOMMU_IOAS_MAP = io(IOMMUFD_TYPE, 0x85);
    public static final int IOMMU_IOAS_UNMAP = io(IOMMUFD_TYPE, 0x86);
    public static final int IOMMU_OPTION = io(IOMMUFD_TYPE, 0x87);
    public static final int IOMMU_VFIO_IOAS = io(IOMMUFD_TYPE, 0x88);
    public static final int IOMMU_HWPT_ALLOC = io(IOMMUFD_TYPE, 0x89);
    public static final int IOMMU_GET_HW_INFO = io(IOMMUFD_TYPE, 0x8a);
    public static final int IOMMU_HWPT_SET_DIRTY_TRACKING = io(IOMMUFD_TYPE, 0x8b);
    public static final int IOMMU_HWPT_GET_DIRTY_BITMAP = io(IOMMUFD_TYPE, 0x8c);
    public static final int IOMMU_HWPT_INVALIDATE = io(IOMMUFD_TYPE, 0x8d);
    public static final int IOMMU_FAULT_QUEUE_ALLOC = io(IOMMUFD_TYPE, 0x8e);
    public static final int IOMMU_IOAS_MAP_FILE = io(IOMMUFD_TYPE, 0x8f);
    public static final int IOMMU_IOAS_CHANGE_PROCESS = io(IOMMUFD_TYPE, 0x92);

    // IOAS_MAP / MAP_FILE / COPY flags
    public static final int IOMMU_IOAS_MAP_FIXED_IOVA = 1;
    public static final int IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
    public static final int IOMMU_IOAS_MAP_READABLE = 1 << 2;

    // IOMMU_OPTION
    public static final int IOMMU_OPTION_RLIMIT_MODE = 0;
    public static final int IOMMU_OPTION_HUGE_PAGES = 1;
    /** The RFC's persistence option: SET on an empty ctx marks it persistent and returns its id. */
    public static final int IOMMU_OPTION_PERSISTENT = 2;
    public static final int IOMMU_OPTION_OP_SET = 0;
    public static final int IOMMU_OPTION_OP_GET = 1;

    // HWPT_ALLOC flags and data types
    public static final int IOMMU_HWPT_ALLOC_NEST_PARENT = 1;
    public static final int IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
    public static final int IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
    public static final int IOMMU_HWPT_ALLOC_PASID = 1 << 3;
    public static final int IOMMU_HWPT_DATA_NONE = 0;
    public static final int IOMMU_HWPT_DATA_VTD_S1 = 1;

    // GET_HW_INFO
    public static final int IOMMU_HW_INFO_TYPE_NONE = 0;
    public static final int IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;

    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Unaligned little-endian u32, for reading fields out of copied structs. */
    public static final ValueLayout.OfInt U32_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt S32 = U32;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    public static final StructLayout IOMMU_DESTROY_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("id")).withName("iommu_destroy");

    public static final StructLayout IOMMU_IOAS_ALLOC_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("out_ioas_id")).withName("iommu_ioas_alloc");

    public static final StructLayout IOMMU_IOVA_RANGE_LAYOUT = MemoryLayout.structLayout(
            U64.withName("start"), U64.withName("last")).withName("iommu_iova_range");

    public static final StructLayout IOMMU_IOAS_IOVA_RANGES_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U32.withName("num_iovas"), U32.withName("__reserved"),
            U64.withName("allowed_iovas"), U64.withName("out_iova_alignment")).withName("iommu_ioas_iova_ranges");

    public static final StructLayout IOMMU_IOAS_ALLOW_IOVAS_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U32.withName("num_iovas"), U32.withName("__reserved"),
            U64.withName("allowed_iovas")).withName("iommu_ioas_allow_iovas");

    public static final StructLayout IOMMU_IOAS_MAP_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("ioas_id"), U32.withName("__reserved"),
            U64.withName("user_va"), U64.withName("length"), U64.withName("iova")).withName("iommu_ioas_map");

    public static final StructLayout IOMMU_IOAS_MAP_FILE_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("ioas_id"), S32.withName("fd"),
            U64.withName("start"), U64.withName("length"), U64.withName("iova")).withName("iommu_ioas_map_file");

    public static final StructLayout IOMMU_IOAS_COPY_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dst_ioas_id"), U32.withName("src_ioas_id"),
            U64.withName("length"), U64.withName("dst_iova"), U64.withName("src_iova")).withName("iommu_ioas_copy");

    public static final StructLayout IOMMU_IOAS_UNMAP_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U64.withName("iova"), U64.withName("length"))
            .withName("iommu_ioas_unmap");

    public static final StructLayout IOMMU_OPTION_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("option_id"), U16.withName("op"), U16.withName("__reserved"),
            U32.withName("object_id"), U64.withName("val64")).withName("iommu_option");

    public static final StructLayout IOMMU_HWPT_ALLOC_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dev_id"), U32.withName("pt_id"),
            U32.withName("out_hwpt_id"), U32.withName("__reserved"), U32.withName("data_type"),
            U32.withName("data_len"), U64.withName("data_uptr"), U32.withName("fault_id"),
            U32.withName("__reserved2")).withName("iommu_hwpt_alloc");

    public static final StructLayout IOMMU_HW_INFO_LAYOUT = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dev_id"), U32.withName("data_len"),
            U64.withName("data_uptr"), U32.withName("out_data_type"), U8.withName("out_max_pasid_log2"),
            MemoryLayout.sequenceLayout(3, U8).withName("__reserved"),
            U64.withName("out_capabilities")).withName("iommu_hw_info");

    public static final StructLayout IOMMU_HW_INFO_VTD_LAYOUT = MemoryLayout.structLayout(
            U32.withName("flags"), U32.withName("__reserved"), U64.withName("cap_reg"), U64.withName("ecap_reg"))
            .withName("iommu_hw_info_vtd");

    /** {@code offsetofend(layout, field)}: the minimum size a command accepts. */
    public static long offsetofend(final StructLayout layout, final String field) {
        return layout.byteOffset(groupElement(field)) + layout.select(groupElement(field)).byteSize();
    }

    public static long offsetof(final StructLayout layout, final String field) {
        return layout.byteOffset(groupElement(field));
    }
}
