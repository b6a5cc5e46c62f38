package org.iopersist.uapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.StructLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * docs/uapi.md against the code it describes: every syscall number the kernel knows has a row,
 * every iommufd command its number, every uAPI struct its size in the struct table. A client is
 * written from that page, so a struct or a call it leaves out, or gets the size of wrong, fails here.
 */
class UapiDocTest {
    private static String doc() throws Exception {
        return Files.readString(Path.of("docs", "uapi.md"));
    }

    @Test
    void everySyscallHasARow() throws Exception {
        final String doc = doc();
        final List<String> missing = new ArrayList<>();
        for (int nr = 0; nr < 512; nr++) {
            final String name = Syscall.name(nr);
            if (name.startsWith("syscall_")) {
                continue;
            }
            if (!doc.contains("| " + nr + " | " + name + " |")) {
                missing.add(nr + " " + name);
            }
        }
        assertEquals(List.of(), missing);
    }

    @Test
    void everyIommufdCommandHasItsNumber() throws Exception {
        final String doc = doc();
        final int[] cmds = {Iommufd.IOMMU_DESTROY, Iommufd.IOMMU_IOAS_ALLOC, Iommufd.IOMMU_IOAS_ALLOW_IOVAS, Iommufd.IOMMU_IOAS_COPY,
            Iommufd.IOMMU_IOAS_IOVA_RANGES, Iommufd.IOMMU_IOAS_MAP, Iommufd.IOMMU_IOAS_UNMAP, Iommufd.IOMMU_OPTION,
            Iommufd.IOMMU_VFIO_IOAS, Iommufd.IOMMU_HWPT_ALLOC, Iommufd.IOMMU_GET_HW_INFO, Iommufd.IOMMU_HWPT_SET_DIRTY_TRACKING,
            Iommufd.IOMMU_HWPT_GET_DIRTY_BITMAP, Iommufd.IOMMU_IOAS_MAP_FILE, IommuTestCmd.IOMMU_TEST_CMD};
        for (int cmd : cmds) {
            assertTrue(doc.contains(String.format("| 0x%x | `IOMMU_", cmd & 0xff)), "no row for iommufd command 0x" + Integer.toHexString(cmd));
        }
        for (int cmd : new int[] {Vfio.VFIO_GET_API_VERSION, Vfio.VFIO_CHECK_EXTENSION, Vfio.VFIO_SET_IOMMU, Vfio.VFIO_IOMMU_GET_INFO,
            Vfio.VFIO_IOMMU_MAP_DMA, Vfio.VFIO_IOMMU_UNMAP_DMA, Vfio.VFIO_IOMMU_DIRTY_PAGES}) {
            assertTrue(doc.contains(String.format("| `0x%x` |", cmd)), "no row for VFIO command 0x" + Integer.toHexString(cmd));
        }
    }

    @Test
    void everyStructHasItsSize() throws Exception {
        final String doc = doc();
        final List<StructLayout> layouts = List.of(IommuDestroy.LAYOUT, IommuIoasAlloc.LAYOUT, IommuIovaRange.LAYOUT,
                IommuIoasIovaRanges.LAYOUT, IommuIoasAllowIovas.LAYOUT, IommuIoasMap.LAYOUT, IommuIoasMapFile.LAYOUT,
                IommuIoasCopy.LAYOUT, IommuIoasUnmap.LAYOUT, IommuOption.LAYOUT, IommuVfioIoas.LAYOUT, IommuHwptAlloc.LAYOUT,
                IommuHwInfo.LAYOUT, IommuHwInfoVtd.LAYOUT, IommuHwptSetDirtyTracking.LAYOUT, IommuHwptGetDirtyBitmap.LAYOUT,
                IommuTestCmd.LAYOUT, VfioDeviceBindIommufd.LAYOUT, VfioDeviceAttachIommufdPt.LAYOUT,
                VfioDeviceDetachIommufdPt.LAYOUT, VfioIommuType1Info.LAYOUT, VfioInfoCapHeader.LAYOUT,
                VfioIommuType1InfoDmaAvail.LAYOUT, VfioIommuType1DmaMap.LAYOUT, VfioIommuType1DmaUnmap.LAYOUT);
        for (StructLayout l : layouts) {
            final String name = l.name().orElseThrow();
            final Matcher m = Pattern.compile("\\| `" + name + "` \\| (\\d+) \\|").matcher(doc);
            assertTrue(m.find(), "no row for struct " + name);
            assertEquals(l.byteSize(), Long.parseLong(m.group(1)), name + "'s size in the doc");
        }
        final Matcher range = Pattern.compile("\\| `vfio_iommu_type1_info_cap_iova_range` \\| 16 \\+ 16n \\|").matcher(doc);
        assertTrue(range.find());
        assertEquals(16, VfioIommuType1InfoCapIovaRange.SIZE);
        assertEquals(16, VfioIovaRange.SIZE);
    }
}
