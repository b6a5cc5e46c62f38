package org.iopersist.kernel.iommu.intel;

import org.iopersist.kernel.KernelRig;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.pci.CanaryPages;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.testing.Handovers;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The VT-d unit across a kexec with devices running. Guest memory is the guestmemfs carve-out,
 * which no kernel's allocator ever hands out. The IOTLB and context cache are tiny, so DMA after
 * the update walks the preserved tables rather than riding on cached translations.
 */
class VtdLiveUpdateTest {
    private static final long MIB = 1L << 20;
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;
    private static final int RW = IommuDomain.READ | IommuDomain.WRITE;
    private static final Bdf DEV0 = Bdf.parse("0000:00:02.0");
    private static final Bdf DEV1 = Bdf.parse("0000:00:03.0");
    private static final String CMDLINE = "guestmemfs=32M liveupdate.finish_timeout=0";
    private static final long WIN0 = 0x4000_0000L;
    private static final long WIN1 = 0x8000_0000L;

    @TempDir
    Path dir;

    /** A running machine, kernel A with device 0 on a persistent domain and device 1 on a plain one. */
    final class World implements AutoCloseable {
        final Machine m;
        final Kernel a;
        final long guest;
        final CanaryPages canaries;
        final DeviceBar bar0;
        final DeviceBar bar1;
        final WorkloadSettings work0 = WorkloadSettings.writeVerify(WIN0, 16 * PAGE, 512, 11);
        final WorkloadSettings work1 = WorkloadSettings.writeVerify(WIN1, 4 * PAGE, 512, 12);

        World(final Path at, final boolean persistentDev1) throws Exception {
            final MachineConfig config = MachineConfig.small().withMemorySize(256 * MIB)
                    .withUnits(List.of(UnitConfig.DEFAULT.withCaches(4, 4)));
            m = Machine.create(at, config).start();
            java.nio.file.Files.writeString(at.resolve("boot").resolve("cmdline"), CMDLINE);
            a = Kernel.boot(m.board());
            // Guest RAM: one guestmemfs file, contiguous because the filesystem is empty.
            a.guestmemfs().createFile("ram", 8 * MIB, 0);
            guest = a.guestmemfs().phys("ram", 0);
            assertEquals(guest + 4 * MIB, a.guestmemfs().phys("ram", 4 * MIB));
            final PhysicalMemory mem = m.board().memory();
            canaries = new CanaryPages(mem, 0xCA7);
            final IommuCore iommu = a.iommu();
            final IommuDomain p = iommu.allocPaging(iommu.device(DEV0), IommuDomain.PERSISTENT);
            // Window 0: 16 pages, every other guest frame, canaries between.
            for (int i = 0; i < 16; i++) {
                mem.fill(guest + 2 * i * PAGE, PAGE, (byte) 0);
                p.map(WIN0 + i * PAGE, guest + 2 * i * PAGE, PAGE, RW);
                canaries.fill(guest + (2 * i + 1) * PAGE, 1);
            }
            iommu.attach(iommu.device(DEV0), p);
            final IommuDomain d1 = iommu.allocPaging(iommu.device(DEV1), persistentDev1 ? IommuDomain.PERSISTENT : 0);
            d1.map(WIN1, guest + 64 * PAGE, 4 * PAGE, RW);
            canaries.fill(guest + 68 * PAGE, 4);
            iommu.attach(iommu.device(DEV1), d1);
            bar0 = new DeviceBar(m.board().deviceBar(0));
            bar1 = new DeviceBar(m.board().deviceBar(1));
            bar0.start(work0);
            bar1.start(work1);
            bar0.awaitSeq(200);
            bar1.awaitSeq(200);
        }

        SetupData finalizeAndKexec() {
            final SetupData s = a.liveUpdate().finalizeHandover();
            a.kexecLoad(KernelRig.root(), CMDLINE);
            a.kexec();
            Handovers.checkWithDtc(m.board());
            return s;
        }

        @Override
        public void close() {
            for (DeviceBar b : List.of(bar0, bar1)) {
                if (b.running()) {
                    b.stop();
                }
            }
            m.close();
        }
    }

    @Test
    void devicesOfPersistentDomainsRunThroughTheUpdate() throws Exception {
        try (World w = new World(dir.resolve("m"), false)) {
            final long faults0 = w.bar0.counters().faults();
            w.finalizeAndKexec();
            final long abortsAtKexec = w.bar1.masterAborts();
            final Kernel b = Kernel.boot(w.m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), String.join("\n", b.log().dmesg()));
            final IommuDevice dev0 = b.iommu().device(DEV0);
            final IommuDomain restored = b.iommu().domainOf(dev0);
            assertTrue(restored.persistent() && restored.type() == IommuDomain.Type.PAGING);
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(b.iommu().device(DEV1)));
            // Device 0 keeps going on the adopted tables for many more laps.
            final long seqAfterBoot = w.bar0.counters().nextSeq();
            w.bar0.awaitSeq(seqAfterBoot + 4 * w.work0.slots());
            // The new kernel can change the restored domain: one more page, reached by DMA.
            restored.map(WIN0 + 16 * PAGE, w.guest + 40 * PAGE, PAGE, RW);
            assertEquals(w.guest + 40 * PAGE, restored.iovaToPhys(WIN0 + 16 * PAGE));
            w.bar0.stop();
            final DeviceCounters c0 = w.bar0.counters();
            assertEquals(faults0, c0.faults(), "not one fault on the preserved device: " + c0);
            assertEquals(0, c0.corrupt(), c0.toString());
            final RecordChecker.Report r = new RecordChecker(w.m.board().memory()).check(w.bar0.window(), restored::iovaToPhys);
            assertTrue(r.clean(), r.toString());
            assertEquals(List.of(), w.canaries.changes(), "canaries untouched");
            // Device 1 lost bus mastering at kexec; its target memory is what it was then.
            assertTrue(w.bar1.masterAborts() > abortsAtKexec || !w.bar1.busMaster());
            final byte[] before = w.m.board().memory().slice(w.guest + 64 * PAGE, 4 * PAGE).toArray(ValueLayout.JAVA_BYTE);
            w.bar1.setBusMaster(true); // a rogue re-enable: its context entry is gone, so it faults
            final long f1 = w.bar1.counters().faults();
            final long deadline = System.nanoTime() + 5_000_000_000L;
            while (w.bar1.counters().faults() < f1 + 10 && System.nanoTime() < deadline) {
                Thread.onSpinWait();
            }
            w.bar1.stop();
            final DeviceCounters c1 = w.bar1.counters();
            assertTrue(c1.faults() >= f1 + 10, c1.toString());
            assertTrue(c1.faults(FaultReason.CONTEXT_NOT_PRESENT) >= 10, c1.toString());
            assertEquals(java.util.Arrays.toString(before), java.util.Arrays.toString(
                    w.m.board().memory().slice(w.guest + 64 * PAGE, 4 * PAGE).toArray(ValueLayout.JAVA_BYTE)));
            b.liveUpdate().finish();
        }
    }

    /** The blob of the intel-iommu subsystem as the next kernel will read it, writable in place. */
    private static FdtReader vtdBlob(final Machine m, final SetupData setup) {
        return Handovers.subtree(m.board(), VtdHandover.NAME);
    }

    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private void assertColdAndBlocked(final World w, final String why, final String reason) throws Exception {
        Handovers.reseal(w.m.board(), VtdHandover.NAME); // the checks behind the checksum judge the edit
        final Kernel b = Kernel.boot(w.m.board());
        assertEquals(Kernel.BootKind.COLD, b.bootKind(), why);
        assertTrue(b.coldBootReason().startsWith("handover rejected") && b.coldBootReason().contains(reason),
                why + ": " + b.coldBootReason());
        for (IommuDevice d : b.iommu().devices()) {
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(d), why);
        }
        // Nothing half-adopted: the fresh root table has no context tables at all.
        final long root = b.intelIommu().rootTable(0);
        for (int bus = 0; bus < 256; bus++) {
            assertEquals(0, w.m.board().memory().load64(RootEntry.address(root, bus)), why);
        }
        final long f = w.bar0.counters().faults();
        final long deadline = System.nanoTime() + 5_000_000_000L;
        while (w.bar0.counters().faults() <= f && System.nanoTime() < deadline) {
            Thread.onSpinWait();
        }
        assertTrue(w.bar0.counters().faults() > f, why + ": the once-preserved device is blocked now");
    }

    @Test
    void aPgdThatIsNotPreservedColdBoots() throws Exception {
        try (World w = new World(dir.resolve("m"), false)) {
            final SetupData s = w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, s);
            final int dom = domainNode(blob, 0);
            final long anyFrame = w.a.frames().allocRun(0); // allocated in A, never preserved
            blob.value(blob.property(dom, "pgd")).set(BE64, 0, anyFrame);
            assertColdAndBlocked(w, "pgd not preserved", "domain pgd 0x" + Long.toHexString(anyFrame) + " is not a table page in use");
        }
    }

    @Test
    void aTableChunkThatIsNotPreservedColdBoots() throws Exception {
        try (World w = new World(dir.resolve("m"), false)) {
            final SetupData s = w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, s);
            final MemorySegment chunks = blob.value(blob.property(domainNode(blob, 0), "table-chunks"));
            final long anyFrame = w.a.frames().allocRun(0); // allocated in A, never preserved
            chunks.set(BE64, 0, anyFrame); // order 0, where the pgd's chunk was
            assertColdAndBlocked(w, "chunk not preserved", "table chunk 0x" + Long.toHexString(anyFrame) + " is not preserved");
        }
    }

    @Test
    void tableChunksThatOverlapOrAreTooLargeColdBoot() throws Exception {
        try (World w = new World(dir.resolve("m"), false)) {
            final SetupData s = w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, s);
            final MemorySegment chunks = blob.value(blob.property(domainNode(blob, 0), "table-chunks"));
            assertTrue(chunks.byteSize() >= 16, "a domain of 4 table pages has chunks of 1 and 2 frames at least");
            chunks.set(BE64, 8, chunks.get(BE64, 0)); // the second chunk is the first again
            assertColdAndBlocked(w, "overlapping chunks", "is claimed twice"); // the claims planned across handlers see it first
        }
        try (World w = new World(dir.resolve("m2"), false)) {
            final SetupData s = w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, s);
            final MemorySegment chunks = blob.value(blob.property(domainNode(blob, 0), "table-chunks"));
            chunks.set(BE64, 0, chunks.get(BE64, 0) | 10);
            assertColdAndBlocked(w, "a chunk larger than 2 MiB", "table chunk of order");
        }
    }

    @Test
    void tableUsageThatDisagreesWithItsCountOrChunksColdBoots() throws Exception {
        try (World w = new World(dir.resolve("m"), false)) {
            w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, null);
            final MemorySegment usage = blob.value(blob.property(domainNode(blob, 0), "table-usage"));
            assertEquals(1L, usage.get(BE64, 0), "the first chunk is one frame: the pgd");
            usage.set(BE64, 0, 0L); // one page fewer than table-pages says
            assertColdAndBlocked(w, "a page missing from table-usage", "table-usage marks");
        }
        try (World w = new World(dir.resolve("m2"), false)) {
            w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, null);
            final MemorySegment usage = blob.value(blob.property(domainNode(blob, 0), "table-usage"));
            usage.set(BE64, 0, 2L); // the pgd's chunk is one frame; bit 1 lies past it
            assertColdAndBlocked(w, "a bit past its chunk", "marks pages past the end of chunk");
        }
    }

    @Test
    void aDidBeyondNdColdBoots() throws Exception {
        try (World w = new World(dir.resolve("m"), false)) {
            final SetupData s = w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, s);
            final int dom = domainNode(blob, 0);
            blob.value(blob.property(dom, "dids")).set(BE64, 0, 70_000L); // unit 0, DID 70000 >= ND
            assertColdAndBlocked(w, "DID >= ND", "DID 70000 outside 2..65535");
        }
    }

    @Test
    void aContextEntryOutsideThePreservedDomainsColdBoots() throws Exception {
        try (World w = new World(dir.resolve("m"), false)) {
            w.finalizeAndKexec();
            // Device 1's entry was cleared at kexec; put one back that points at a random frame.
            final PhysicalMemory mem = w.m.board().memory();
            final long root = w.a.intelIommu().rootTable(0);
            final long ctx = ContextEntry.address(RootEntry.contextTable(mem.load64(RootEntry.address(root, 0))), DEV1.devfn());
            mem.store64(ctx + 8, ContextEntry.encodeHi(9, 2));
            mem.store64Release(ctx, ContextEntry.encodeLo(0x7000_0000L, ContextEntry.TT_MULTI_LEVEL, false));
            assertColdAndBlocked(w, "context entry outside preserved memory", "1 present context entries belong to no preserved domain");
        }
    }

    @Test
    void twoDomainsClaimingOneDeviceColdBoots() throws Exception {
        try (World w = new World(dir.resolve("m"), true)) {
            final SetupData s = w.finalizeAndKexec();
            final FdtReader blob = vtdBlob(w.m, s);
            final long dev0Key = blob.value(blob.property(domainNode(blob, 0), "devices")).get(BE64, 0);
            blob.value(blob.property(domainNode(blob, 1), "devices")).set(BE64, 0, dev0Key);
            assertColdAndBlocked(w, "two domains claim one device", "0000:00:02.0 is claimed by two domains");
        }
    }

    @Test
    void byteCorruptionsAcrossTheBlobNeverEscapeAndNeverHalfAdopt() throws Exception {
        final Random rnd = new Random(2026);
        for (int sample = 0; sample < 12; sample++) {
            try (World w = new World(dir.resolve("m" + sample), false)) {
                final SetupData s = w.finalizeAndKexec();
                final FdtReader blob = vtdBlob(w.m, s);
                final MemorySegment bytes = blob.segment();
                final long at = rnd.nextLong(bytes.byteSize());
                bytes.set(ValueLayout.JAVA_BYTE, at, (byte) (bytes.get(ValueLayout.JAVA_BYTE, at) ^ (1 + rnd.nextInt(255))));
                if (sample % 4 == 0) {
                    final Kernel raw = Kernel.boot(w.m.board());
                    assertEquals(Kernel.BootKind.COLD, raw.bootKind(), "byte " + at + " without a new checksum");
                    assertTrue(raw.coldBootReason().contains("intel-iommu fails its CRC-32C"), raw.coldBootReason());
                    continue;
                }
                Handovers.reseal(w.m.board(), VtdHandover.NAME); // so the checks behind the checksum judge it
                final Kernel b = Kernel.boot(w.m.board());
                final IommuDevice dev0 = b.iommu().device(DEV0);
                if (b.bootKind() == Kernel.BootKind.COLD) {
                    assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(dev0), "byte " + at);
                } else {
                    // A flip the checks cannot see (padding): the adoption must then be exactly right.
                    final IommuDomain d = b.iommu().domainOf(dev0);
                    assertNotNull(d);
                    assertEquals(w.guest, d.iovaToPhys(WIN0), "byte " + at);
                }
            }
        }
    }

    /** The {@code k}-th domain node of an intel-iommu blob (they are named by their pgd). */
    private static int domainNode(final org.iopersist.kernel.liveupdate.kho.FdtReader blob, final int k) {
        return blob.children(blob.root()).stream().filter(n -> blob.nodeName(n).startsWith("domain@")).skip(k).findFirst()
                .orElseThrow();
    }
}
