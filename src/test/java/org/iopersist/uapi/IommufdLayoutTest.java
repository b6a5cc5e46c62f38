package org.iopersist.uapi;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The uAPI structs byte for byte as {@code include/uapi/linux/iommufd.h} and {@code vfio.h} lay them
 * out (sizes from the C definitions with {@code __aligned_u64}), the ioctl numbers as
 * {@code _IO(';', nr)}, and each struct class's constant offsets and accessors against its layout.
 */
class IommufdLayoutTest {
    /**
     * Each struct class with Linux's {@code sizeof} and the minimum size of the kernel's dispatch
     * table ({@code offsetofend} of {@code lastMandatory}; VFIO's {@code minsz}). The VFIO sizes are
     * those of the merged structs; later kernels append flag-gated fields this model does not accept.
     */
    private record Linux(Class<?> type, long size, String lastMandatory, long minSize) {
    }

    private static final List<Linux> STRUCTS = List.of(
            new Linux(IommuDestroy.class, 8, "id", 8),
            new Linux(IommuIoasAlloc.class, 12, "out_ioas_id", 12),
            new Linux(IommuIovaRange.class, 16, null, 0),
            new Linux(IommuIoasIovaRanges.class, 32, "out_iova_alignment", 32),
            new Linux(IommuIoasAllowIovas.class, 24, "allowed_iovas", 24),
            new Linux(IommuIoasMap.class, 40, "iova", 40),
            new Linux(IommuIoasMapFile.class, 40, "iova", 40),
            new Linux(IommuIoasCopy.class, 40, "src_iova", 40),
            new Linux(IommuIoasUnmap.class, 24, "length", 24),
            new Linux(IommuOption.class, 24, "val64", 24),
            new Linux(IommuHwptAlloc.class, 48, "__reserved", 24),
            new Linux(IommuHwInfo.class, 40, "__reserved", 32),
            new Linux(IommuHwInfoVtd.class, 24, null, 0),
            new Linux(IommuHwptLiveupdateMarkPreserve.class, 16, "hwpt_token", 16),
            new Linux(VfioDeviceBindIommufd.class, 16, "out_devid", 16),
            new Linux(VfioDeviceAttachIommufdPt.class, 12, "pt_id", 12),
            new Linux(VfioDeviceDetachIommufdPt.class, 8, "flags", 8),
            new Linux(IommuVfioIoas.class, 12, "__reserved", 12),
            new Linux(VfioIommuType1Info.class, 24, "iova_pgsizes", 16),
            new Linux(VfioIommuType1DmaMap.class, 32, "size", 32),
            new Linux(VfioIommuType1DmaUnmap.class, 24, "size", 24),
            new Linux(VfioInfoCapHeader.class, 8, null, 0),
            new Linux(VfioIommuType1InfoCapIovaRange.class, 16, null, 0),
            new Linux(VfioIovaRange.class, 16, null, 0),
            new Linux(VfioIommuType1InfoDmaAvail.class, 12, null, 0),
            new Linux(IommuHwptSetDirtyTracking.class, 16, "__reserved", 16),
            new Linux(IommuHwptGetDirtyBitmap.class, 48, "data", 48));

    /**
     * struct iommu_test_cmd's union: each member's offset constant against the layout's path
     * ({@code u.<member>.<field>}), the size and the minimum (offsetofend of {@code last}).
     */
    @Test
    void iommuTestCmdIsIommufdTestH() throws Exception {
        assertEquals(72, IommuTestCmd.LAYOUT.byteSize());
        assertEquals(72, IommuTestCmd.SIZE);
        assertEquals(68, IommuTestCmd.MIN_SIZE);
        assertEquals(Iommufd.offsetofend(IommuTestCmd.LAYOUT, "last"), IommuTestCmd.MIN_SIZE);
        assertEquals(0x3ba0, IommuTestCmd.IOMMU_TEST_CMD);
        final String[][] members = {
            {"ADD_RESERVED_START", "add_reserved", "start"}, {"ADD_RESERVED_LENGTH", "add_reserved", "length"},
            {"MOCK_DOMAIN_OUT_STDEV_ID", "mock_domain", "out_stdev_id"}, {"MOCK_DOMAIN_OUT_HWPT_ID", "mock_domain", "out_hwpt_id"},
            {"MOCK_DOMAIN_OUT_IDEV_ID", "mock_domain", "out_idev_id"}, {"MOCK_DOMAIN_FLAGS_DEV_FLAGS", "mock_domain_flags", "dev_flags"},
            {"MOCK_DOMAIN_REPLACE_PT_ID", "mock_domain_replace", "pt_id"}, {"CHECK_MAP_IOVA", "check_map", "iova"},
            {"CHECK_MAP_LENGTH", "check_map", "length"}, {"CHECK_MAP_UPTR", "check_map", "uptr"},
            {"CHECK_REFS_LENGTH", "check_refs", "length"}, {"CHECK_REFS_UPTR", "check_refs", "uptr"},
            {"CHECK_REFS_REFS", "check_refs", "refs"}, {"CREATE_ACCESS_OUT_ACCESS_FD", "create_access", "out_access_fd"},
            {"CREATE_ACCESS_FLAGS", "create_access", "flags"}, {"DESTROY_ACCESS_PAGES_ACCESS_PAGES_ID", "destroy_access_pages",
                "access_pages_id"}, {"ACCESS_PAGES_FLAGS", "access_pages", "flags"},
            {"ACCESS_PAGES_OUT_ACCESS_PAGES_ID", "access_pages", "out_access_pages_id"}, {"ACCESS_PAGES_IOVA", "access_pages", "iova"},
            {"ACCESS_PAGES_LENGTH", "access_pages", "length"}, {"ACCESS_PAGES_UPTR", "access_pages", "uptr"},
            {"ACCESS_RW_IOVA", "access_rw", "iova"}, {"ACCESS_RW_LENGTH", "access_rw", "length"}, {"ACCESS_RW_UPTR", "access_rw", "uptr"},
            {"ACCESS_RW_FLAGS", "access_rw", "flags"}, {"MEMORY_LIMIT_LIMIT", "memory_limit", "limit"},
            {"ACCESS_REPLACE_IOAS_IOAS_ID", "access_replace_ioas", "ioas_id"}, {"DIRTY_FLAGS", "dirty", "flags"},
            {"DIRTY_IOVA", "dirty", "iova"}, {"DIRTY_LENGTH", "dirty", "length"}, {"DIRTY_PAGE_SIZE", "dirty", "page_size"},
            {"DIRTY_UPTR", "dirty", "uptr"}, {"DIRTY_OUT_NR_DIRTY", "dirty", "out_nr_dirty"}, {"CHECK_IOTLB_ID", "check_iotlb", "id"},
            {"CHECK_IOTLB_IOTLB", "check_iotlb", "iotlb"}};
        for (String[] m : members) {
            final long want = IommuTestCmd.LAYOUT.byteOffset(groupElement("u"), groupElement(m[1]), groupElement(m[2]));
            assertEquals(want, constant(IommuTestCmd.class, m[0] + "_OFFSET"), m[0]);
        }
        assertEquals(64, IommuTestCmd.LAYOUT.byteOffset(groupElement("last")));
    }

    @Test
    void ioctlNumbersAreIoSemicolonNr() {
        assertEquals(0x3b80, Iommufd.IOMMU_DESTROY);
        assertEquals(0x3b81, Iommufd.IOMMU_IOAS_ALLOC);
        assertEquals(0x3b84, Iommufd.IOMMU_IOAS_IOVA_RANGES);
        assertEquals(0x3b85, Iommufd.IOMMU_IOAS_MAP);
        assertEquals(0x3b86, Iommufd.IOMMU_IOAS_UNMAP);
        assertEquals(0x3b87, Iommufd.IOMMU_OPTION);
        assertEquals(0x3b89, Iommufd.IOMMU_HWPT_ALLOC);
        assertEquals(0x3b8a, Iommufd.IOMMU_GET_HW_INFO);
        assertEquals(0x3b8f, Iommufd.IOMMU_IOAS_MAP_FILE);
        assertEquals(0x3b95, Iommufd.IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE);
        assertEquals(0x3b76, Vfio.VFIO_DEVICE_BIND_IOMMUFD);
        assertEquals(0x3b77, Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT);
        assertEquals(0x3b78, Vfio.VFIO_DEVICE_DETACH_IOMMUFD_PT);
        assertEquals(0x3b88, Iommufd.IOMMU_VFIO_IOAS);
        assertEquals(0x3b64, Vfio.VFIO_GET_API_VERSION);
        assertEquals(0x3b65, Vfio.VFIO_CHECK_EXTENSION);
        assertEquals(0x3b66, Vfio.VFIO_SET_IOMMU);
        assertEquals(0x3b70, Vfio.VFIO_IOMMU_GET_INFO);
        assertEquals(0x3b71, Vfio.VFIO_IOMMU_MAP_DMA);
        assertEquals(0x3b72, Vfio.VFIO_IOMMU_UNMAP_DMA);
        assertEquals(0x3b75, Vfio.VFIO_IOMMU_DIRTY_PAGES);
    }

    @Test
    void sizesAreLinuxs() throws Exception {
        for (Linux l : STRUCTS) {
            final String name = l.type().getSimpleName();
            assertEquals(l.size(), layout(l).byteSize(), name + " layout");
            assertEquals(l.size(), constant(l.type(), "SIZE"), name + ".SIZE");
            if (l.lastMandatory() != null) {
                assertEquals(l.minSize(), Iommufd.offsetofend(layout(l), l.lastMandatory()), name + " offsetofend");
                assertEquals(l.minSize(), constant(l.type(), "MIN_SIZE"), name + ".MIN_SIZE");
            }
        }
    }

    @Test
    void offsetsAreLinuxs() {
        // Spot checks against the header, where padding or a narrow field moves what follows.
        assertEquals(24, IommuIoasMap.LENGTH_OFFSET);
        assertEquals(12, IommuIoasMapFile.FD_OFFSET);
        assertEquals(8, IommuIoasUnmap.IOVA_OFFSET);
        assertEquals(10, IommuOption.RESERVED_OFFSET);
        assertEquals(16, IommuOption.VAL64_OFFSET);
        assertEquals(28, IommuHwInfo.OUT_MAX_PASID_LOG2_OFFSET);
        assertEquals(29, IommuHwInfo.RESERVED_OFFSET);
        assertEquals(32, IommuHwInfo.OUT_CAPABILITIES_OFFSET);
        assertEquals(40, IommuHwptAlloc.FAULT_ID_OFFSET);
        assertEquals(8, IommuHwInfoVtd.CAP_REG_OFFSET);
        assertEquals(12, VfioDeviceBindIommufd.OUT_DEVID_OFFSET);
        // The shared headers the dispatchers read before they know the struct.
        assertEquals(IommuIoasMap.SIZE_OFFSET, Iommufd.SIZE_OFFSET);
        assertEquals(VfioDeviceBindIommufd.ARGSZ_OFFSET, Vfio.ARGSZ_OFFSET);
        assertEquals(VfioDeviceBindIommufd.FLAGS_OFFSET, Vfio.FLAGS_OFFSET);
    }

    /** Every {@code X_OFFSET} constant is its member's offset in the layout, and every member has one. */
    @Test
    void everyOffsetConstantIsTheLayouts() throws Exception {
        for (Linux l : STRUCTS) {
            final StructLayout layout = layout(l);
            final Set<String> covered = new HashSet<>();
            for (Field f : l.type().getFields()) {
                if (!f.getName().endsWith("_OFFSET")) {
                    continue;
                }
                final String member = member(layout, f.getName());
                assertEquals(layout.byteOffset(groupElement(member)), f.getLong(null), l.type().getSimpleName() + "." + f.getName());
                covered.add(member);
            }
            for (MemoryLayout m : layout.memberLayouts()) {
                assertTrue(m.name().isEmpty() || covered.contains(m.name().get()),
                        l.type().getSimpleName() + " has no offset constant for " + m.name());
            }
        }
    }

    /**
     * Every accessor reaches exactly its own member: a getter reads the member's bytes (zero-extended
     * for u8/u16), a setter writes them and nothing else.
     */
    @Test
    void everyAccessorUsesItsOwnOffset() throws Exception {
        int checked = 0;
        for (Linux l : STRUCTS) {
            final StructLayout layout = layout(l);
            for (Method m : l.type().getMethods()) {
                if (!Modifier.isStatic(m.getModifiers()) || m.getParameterCount() == 0
                        || m.getParameterTypes()[0] != MemorySegment.class || m.getReturnType() == boolean.class) {
                    continue;
                }
                final String constName = m.getName().replaceAll("([a-z0-9])([A-Z])", "$1_$2").toUpperCase(Locale.ROOT) + "_OFFSET";
                final long offset = constant(l.type(), constName);
                final long width = layout.select(groupElement(member(layout, constName))).byteSize();
                final String what = l.type().getSimpleName() + "." + m.getName();
                if (m.getParameterCount() == 1) {
                    final byte[] bytes = new byte[(int) l.size()];
                    for (int i = 0; i < bytes.length; i++) {
                        bytes[i] = (byte) (0x81 + 7 * i);
                    }
                    final long got = ((Number) m.invoke(null, MemorySegment.ofArray(bytes))).longValue();
                    final long want = width == 4 ? (int) le(bytes, offset, width) : le(bytes, offset, width);
                    assertEquals(want, got, what);
                } else {
                    final byte[] bytes = new byte[(int) l.size()];
                    final long value = 0x8877_6655_4433_2211L;
                    final Object arg = m.getParameterTypes()[1] == long.class ? (Object) value : (Object) (int) value;
                    m.invoke(null, MemorySegment.ofArray(bytes), arg);
                    final byte[] want = new byte[bytes.length];
                    for (int i = 0; i < width; i++) {
                        want[(int) offset + i] = (byte) (value >>> (8 * i));
                    }
                    assertEquals(java.util.HexFormat.of().formatHex(want), java.util.HexFormat.of().formatHex(bytes), what);
                }
                checked++;
            }
        }
        assertTrue(checked > 60, checked + " accessors checked");
    }

    private static StructLayout layout(final Linux l) throws Exception {
        return (StructLayout) l.type().getField("LAYOUT").get(null);
    }

    private static long constant(final Class<?> type, final String name) throws Exception {
        return type.getField(name).getLong(null);
    }

    /** The member an {@code X_OFFSET} constant names: {@code x}, or {@code __x} for reserved fields. */
    private static String member(final StructLayout layout, final String constant) {
        final String plain = constant.substring(0, constant.length() - "_OFFSET".length()).toLowerCase(Locale.ROOT);
        for (MemoryLayout m : layout.memberLayouts()) {
            if (m.name().equals(java.util.Optional.of(plain))) {
                return plain;
            }
        }
        return "__" + plain;
    }

    private static long le(final byte[] b, final long offset, final long width) {
        long v = 0;
        for (int i = (int) width - 1; i >= 0; i--) {
            v = v << 8 | (b[(int) offset + i] & 0xFF);
        }
        return v;
    }
}
