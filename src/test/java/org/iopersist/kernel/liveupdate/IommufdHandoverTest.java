package org.iopersist.kernel.liveupdate;

import org.iopersist.kernel.iommufd.persist.PersistedIommufds;
import org.iopersist.kernel.KernelRig;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.intel.VtdHandover;
import org.iopersist.kernel.iommufd.persist.IommufdHandover;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Handovers;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The iommufd subtree read by dtc, and broken on purpose. A break of the structure ends in a cold
 * boot; tables that disagree with sound areas are the scrub's to find after the devices are rebound,
 * and it blocks them.
 */
class IommufdHandoverTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=64M liveupdate.finish_timeout=0";
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    @TempDir
    Path dir;

    /**
     * Kernel A with a persistent context, finalized and kexec'd: three areas (the third a copy
     * sharing the first one's pages) and one device.
     */
    private record Handed(Machine machine, SetupData setup, int pid) {
    }

    private Handed handOver(final Path at) throws Exception {
        final Machine m = Machine.create(at, MachineConfig.small().withMemorySize(256 * MIB)).start();
        Files.writeString(at.resolve("boot").resolve("cmdline"), CMDLINE);
        final Kernel a = Kernel.boot(m.board());
        final SyscallServer server = a.serve(at.resolve("k.sock"));
        final KernelClient vmm = KernelClient.connect(server.path(), at.resolve("memory"));
        final GuestRam ram = GuestRam.create(vmm, "ram", 8 * MIB);
        final IommufdHandle f = IommufdHandle.open(vmm);
        final int pid = (int) f.makePersistent();
        final int ioas = f.ioasAlloc();
        f.mapFixed(ioas, ram.va(), 2 * MIB, 0);
        f.mapFixed(ioas, ram.va() + 4 * MIB, 2 * MIB, 8 * MIB);
        f.copyFixed(ioas, 16 * MIB, ioas, 0, MIB);
        final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, 0);
        d.bind(f);
        d.attach(ioas);
        final SetupData setup = a.liveUpdate().finalizeHandover();
        a.kexecLoad(KernelRig.root(), CMDLINE);
        a.kexec();
        Handovers.checkWithDtc(m.board());
        return new Handed(m, setup, pid);
    }

    private static MemorySegment areas(final FdtReader b, final int pid) {
        final int ctx = b.subnode(b.root(), "ctx@" + pid);
        final int ioas = b.children(ctx).stream().filter(n -> b.nodeName(n).startsWith("ioas@")).findFirst().orElseThrow();
        return b.value(b.property(ioas, "areas"));
    }

    /** Reseals the edited iommufd blob, boots, and expects a cold boot for {@code reason}, everything blocked. */
    private static void assertCold(final Machine m, final String reason) {
        Handovers.reseal(m.board(), IommufdHandover.NAME);
        final Kernel b = Kernel.boot(m.board());
        assertEquals(Kernel.BootKind.COLD, b.bootKind(), reason);
        assertTrue(b.coldBootReason().contains(reason), b.coldBootReason());
        for (IommuDevice d : b.iommu().devices()) {
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(d));
        }
        assertEquals(List.of(), PersistedIommufds.restoredIds(b), "nothing half-adopted");
    }

    /**
     * Reseals the edited blob and boots: the structure is sound, so the boot restores. The VMM
     * reopens and rebinds; the scrub then finds {@code reason}, says so in sysfs, and blocks the device.
     */
    private static String assertScrubBlocks(final Path at, final Machine m, final int pid, final String reason) throws Exception {
        Handovers.reseal(m.board(), IommufdHandover.NAME);
        final Kernel b = Kernel.boot(m.board());
        assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), "only the leaves disagree: boot restores " + b.coldBootReason());
        final ScrubbingVmm.Scrubbed s = ScrubbingVmm.reopenAndScrub(at, b, pid);
        assertTrue(s.line().startsWith("mismatch: ") && s.line().contains(reason) && s.line().contains("1 devices blocked"), s.line());
        assertTrue(s.deviceBlocked(), "the device of the bad domain is blocked while its VMM still holds it");
        return s.line();
    }

    @Test
    void aSoundHandoverScrubsClean() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            final Kernel b = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind());
            final ScrubbingVmm.Scrubbed s = ScrubbingVmm.reopenAndScrub(dir.resolve("m"), b, h.pid());
            // 2 MiB + 2 MiB + the 1 MiB copy, as 2 MiB leaves and 4 KiB ones.
            assertTrue(s.line().startsWith("ok: ") && s.line().contains("0x500000 bytes"), s.line());
            assertTrue(!s.deviceBlocked(), "the device keeps translating");
        }
    }

    @Test
    void dtcReadsTheIommufdSubtree() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            final FdtReader b = Handovers.subtree(m.board(), IommufdHandover.NAME);
            final Path f = dir.resolve("iommufd.dtb");
            Files.write(f, b.segment().toArray(ValueLayout.JAVA_BYTE));
            final Process p = new ProcessBuilder("dtc", "-I", "dtb", "-O", "dts", f.toString()).redirectErrorStream(true).start();
            final String out = new String(p.getInputStream().readAllBytes());
            assertEquals(0, p.waitFor(), out);
            assertTrue(out.contains("compatible = \"iommufd-v1\"") && out.contains("ctx@" + h.pid())
                    && out.contains("ioas@1") && out.contains("device@") && out.contains("pages = <"), out);
            final Kernel b2 = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b2.bootKind(), "the untouched handover restores");
        }
    }

    @Test
    void anAreaPastItsFilesEndColdBoots() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            areas(Handovers.subtree(m.board(), IommufdHandover.NAME), h.pid()).set(BE64, 3 * 8, 7 * MIB); // offset of area 0
            assertCold(m, "past the end of inode");
        }
    }

    @Test
    void overlappingAreasColdBoot() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            areas(Handovers.subtree(m.board(), IommufdHandover.NAME), h.pid())
                    .set(BE64, IommufdHandover.AREA_CELLS * 8, MIB); // area 1's iova into area 0
            assertCold(m, "areas overlap");
        }
    }

    @Test
    void anAreaTheTablesDoNotMapThereIsFoundByTheScrub() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            // Still well-formed, inside its file and its pages, overlapping nothing: only the tables disagree.
            areas(Handovers.subtree(m.board(), IommufdHandover.NAME), h.pid()).set(BE64, IommufdHandover.AREA_CELLS * 8, 32 * MIB);
            assertScrubBlocks(dir.resolve("m"), m, h.pid(), "outside every area");
        }
    }

    @Test
    void anAreaWithOtherPermissionsThanItsLeavesIsFoundByTheScrub() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            areas(Handovers.subtree(m.board(), IommufdHandover.NAME), h.pid()).set(BE64, 4 * 8, 1L); // area 0 read-only
            assertScrubBlocks(dir.resolve("m"), m, h.pid(), "allows 0x3, its area 0x1");
        }
    }

    @Test
    void aDomainMappingMoreThanItsAreasIsFoundByTheScrub() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            // The copy's area shrinks to half: every page it keeps matches, the other half is mapped by nobody's area.
            areas(Handovers.subtree(m.board(), IommufdHandover.NAME), h.pid())
                    .set(BE64, (2L * IommufdHandover.AREA_CELLS + 1) * 8, MIB / 2);
            assertScrubBlocks(dir.resolve("m"), m, h.pid(), "outside every area");
        }
    }

    @Test
    void tableUsageThatMovesATablePageIsFoundByTheScrub() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            // The count stays right, so boot restores; but the pool now has a live table page free and
            // a free page in use. The walk from the pgd, the scrub's first step, finds it.
            final FdtReader vtd = Handovers.subtree(m.board(), VtdHandover.NAME);
            final int dom = vtd.children(vtd.root()).stream().filter(n -> vtd.nodeName(n).startsWith("domain@")).findFirst()
                    .orElseThrow();
            final MemorySegment chunks = vtd.value(vtd.property(dom, "table-chunks"));
            final MemorySegment usage = vtd.value(vtd.property(dom, "table-usage"));
            long word = 0;
            boolean moved = false;
            for (long c = 0; c < chunks.byteSize() / 8 && !moved; c++) {
                final int order = (int) (chunks.get(BE64, c * 8) & 0xFFF);
                final long valid = order >= 6 ? -1L : (1L << (1 << order)) - 1;
                final long bits = usage.get(BE64, word * 8);
                if (bits != 0 && (~bits & valid) != 0) {
                    final long top = Long.highestOneBit(bits);
                    usage.set(BE64, word * 8, (bits & ~top) | Long.lowestOneBit(~bits & valid));
                    moved = true;
                }
                word += Math.max(1, (1 << order) >>> 6);
            }
            assertTrue(moved, "some chunk has a page in use and a free one");
            Handovers.reseal(m.board(), VtdHandover.NAME);
            final Kernel b = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), "the count and chunks are sound: boot restores " + b.coldBootReason());
            final ScrubbingVmm.Scrubbed s = ScrubbingVmm.reopenAndScrub(dir.resolve("m"), b, h.pid());
            assertTrue(s.line().startsWith("mismatch: ") && s.line().contains("table-usage marks in use")
                    && s.line().contains("1 devices blocked"), s.line());
            assertTrue(s.deviceBlocked(), "the device of the bad domain is blocked");
        }
    }

    @Test
    void anAreaOutsideItsPagesColdBoots() throws Exception {
        final Handed h = handOver(dir.resolve("m"));
        try (Machine m = h.machine()) {
            final MemorySegment areas = areas(Handovers.subtree(m.board(), IommufdHandover.NAME), h.pid());
            assertEquals(0, areas.get(BE64, (2L * IommufdHandover.AREA_CELLS + 5) * 8), "the copy shares area 0's pages");
            areas.set(BE64, (IommufdHandover.AREA_CELLS + 5) * 8, 0L); // area 1 (file offset 4 MiB) onto pages 0 ([0, 2 MiB))
            assertCold(m, "outside its pages");
        }
    }

    @Test
    void anyFlippedByteOfTheIommufdBlobFailsItsChecksum() throws Exception {
        final Random rnd = new Random(11);
        for (int sample = 0; sample < 8; sample++) {
            final Handed h = handOver(dir.resolve("m" + sample));
            try (Machine m = h.machine()) {
                final MemorySegment bytes = Handovers.subtree(m.board(), IommufdHandover.NAME).segment();
                final long at = rnd.nextLong(bytes.byteSize());
                bytes.set(ValueLayout.JAVA_BYTE, at, (byte) (bytes.get(ValueLayout.JAVA_BYTE, at) ^ (1 << rnd.nextInt(8))));
                final Kernel b = Kernel.boot(m.board());
                assertEquals(Kernel.BootKind.COLD, b.bootKind(), "byte " + at);
                assertTrue(b.coldBootReason().contains("iommufd fails its CRC-32C"), b.coldBootReason());
            }
        }
    }

    /**
     * Flips that a checksum would catch, resealed so that the structural and semantic checks alone
     * judge them: each either cold-boots with every device blocked, or restores a context that is
     * whole and consistent (same objects, the device translating as before).
     */
    @Test
    void resealedByteCorruptionsNeverEscapeAndNeverHalfAdopt() throws Exception {
        final List<String> intact;
        final long intactPhys;
        try (Machine m = handOver(dir.resolve("intact")).machine()) {
            final Kernel b = Kernel.boot(m.board());
            intact = kinds(PersistedIommufds.objectsById(b, PersistedIommufds.restoredIds(b).get(0)));
            intactPhys = b.iommu().domainOf(b.iommu().devices().get(0)).iovaToPhys(8 * MIB + 0x5000);
        }
        final Random rnd = new Random(7);
        int cold = 0;
        for (int sample = 0; sample < 32; sample++) {
            final Handed h = handOver(dir.resolve("r" + sample));
            try (Machine m = h.machine()) {
                final MemorySegment bytes = Handovers.subtree(m.board(), IommufdHandover.NAME).segment();
                final long at = rnd.nextLong(bytes.byteSize());
                bytes.set(ValueLayout.JAVA_BYTE, at, (byte) (bytes.get(ValueLayout.JAVA_BYTE, at) ^ (1 + rnd.nextInt(255))));
                Handovers.reseal(m.board(), IommufdHandover.NAME);
                final Kernel b = Kernel.boot(m.board());
                if (b.bootKind() == Kernel.BootKind.COLD) {
                    cold++;
                    for (IommuDevice d : b.iommu().devices()) {
                        assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(d), "byte " + at);
                    }
                    assertEquals(List.of(), PersistedIommufds.restoredIds(b), "byte " + at);
                } else {
                    // A flip nothing depends on (padding, a unit address), or one that renames an
                    // object id or persistent id: what is restored must still be whole and consistent.
                    assertEquals(1, PersistedIommufds.restoredIds(b).size(), "byte " + at);
                    final int pid = PersistedIommufds.restoredIds(b).get(0);
                    assertEquals(intact, kinds(PersistedIommufds.objectsById(b, pid)), "byte " + at);
                    assertEquals(intactPhys, b.iommu().domainOf(b.iommu().devices().get(0)).iovaToPhys(8 * MIB + 0x5000), "byte " + at);
                }
            }
        }
        assertTrue(cold > 16, "most flips are caught by the checks behind the checksum: " + cold + " of 32");
    }

    private static List<String> kinds(final List<String> objectsById) {
        return objectsById.stream().map(o -> o.substring(o.indexOf(':') + 1)).sorted().toList();
    }
}
