package org.iopersist.kernel.init;

import org.iopersist.kernel.KernelRig;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.mm.FrameAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class KernelBootTest {
    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    @Test
    void freshBootTurnsTranslationOnWithEveryDeviceBlocked() {
        try (KernelRig rig = KernelRig.boot(dir, MachineConfig.small().withMemorySize(256 * MIB), "")) {
            final Kernel k = rig.kernel;
            assertEquals(Kernel.BootKind.COLD, k.bootKind());
            assertEquals("no handover in the boot record", k.coldBootReason());
            final var regs = rig.machine.board().unitRegisters(0);
            final int gsts = regs.read32(VtdRegisters.GSTS);
            assertTrue((gsts & VtdRegisters.GSTS_TES) != 0, "translation on");
            assertTrue((gsts & VtdRegisters.GSTS_QIES) != 0, "queued invalidation on");
            final long root = regs.read64(VtdRegisters.RTADDR);
            assertEquals(k.intelIommu().rootTable(0), root);
            assertFalse(k.khoScratch().contains(root), "the root table left scratch once the allocator opened");
            assertTrue(k.frames().isAllocated(root), "the root table is an allocated frame");
            final PhysicalMemory mem = rig.machine.board().memory();
            for (int bus = 0; bus < 256; bus++) {
                assertEquals(0, mem.load64(RootEntry.address(root, bus)), "bus " + bus + " has no context table");
            }
            for (var dev : k.iommu().devices()) {
                assertEquals(k.iommu().blockedDomain(), k.iommu().domainOf(dev));
            }
            // A device that tries DMA anyway faults and touches nothing.
            final DeviceBar bar = rig.bar(0);
            bar.start(WorkloadSettings.writeVerify(0x10_0000, 16 * 4096, 256, 1));
            awaitFaults(bar, 10);
            bar.stop();
            final DeviceCounters c = bar.counters();
            assertEquals(0, c.ops(), c.toString());
            assertEquals(c.faults(), c.faults(FaultReason.ROOT_NOT_PRESENT), c.toString());
            assertTrue(k.log().contains("cold boot (no handover in the boot record): every device blocked"), String.join("\n", k.log().dmesg()));
        }
    }

    @Test
    void commandLineOptionsAreParsedAndUnknownOnesReported() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir, MachineConfig.small().withMemorySize(128 * MIB),
                "page_poison=on kho_scratch=8M guestmemfs=32M foo=bar kho_scratch=12Q quiet")) {
            final Kernel k = rig.kernel;
            assertTrue(k.params().pagePoison());
            assertEquals(8 * MIB, k.khoScratch().size(), "the malformed second value keeps the first");
            assertEquals(java.util.List.of("foo=bar", "quiet"), k.params().unknown());
            assertTrue(k.log().contains("Unknown kernel command line parameters \"foo=bar quiet\", will be passed to user space."));
            assertTrue(k.log().contains("Malformed kernel command line parameter kho_scratch=12Q"));
            assertEquals(96 * MIB, k.guestmemfsRegion().start(), "guestmemfs sits at the top of memory");
            final FrameAllocator.Stats s = k.frames().stats();
            assertEquals((1 + 8 + 32) * 256, s.reservedFrames(), "firmware + scratch + guestmemfs: " + s);
            assertEquals(s.totalFrames(), s.freeFrames() + s.reservedFrames() + s.allocatedFrames());
            // Nothing the allocator hands out lies in a reserved range.
            for (int i = 0; i < 1000; i++) {
                final long phys = k.frames().allocRun(0);
                assertFalse(phys < 9 * MIB || phys >= 96 * MIB, Long.toHexString(phys));
            }
        }
    }

    @Test
    void aBadHandoverRecordMeansAColdBootWithTheReason() throws Exception {
        Files.createDirectories(dir.resolve("boot"));
        final MachineConfig config = MachineConfig.small().withMemorySize(128 * MIB);
        try (var machine = org.iopersist.hw.Machine.create(dir, config).start()) {
            Files.write(dir.resolve("boot").resolve(Kernel.SETUP_DATA_FILE), new byte[] {1, 2, 3});
            final Kernel k = Kernel.boot(machine.board());
            assertEquals(Kernel.BootKind.COLD, k.bootKind());
            assertTrue(k.coldBootReason().startsWith("handover rejected: "), k.coldBootReason());
            assertTrue(k.log().contains("DMAR: cold boot (handover rejected: "));
        }
    }

    @Test
    void twoKernelsOnTwoMachinesDoNotSeeEachOther() {
        final MachineConfig config = MachineConfig.small().withMemorySize(128 * MIB);
        try (KernelRig a = KernelRig.boot(dir.resolve("a"), config, "");
             KernelRig b = KernelRig.boot(dir.resolve("b"), config, "")) {
            final FrameAllocator.Stats bBefore = b.kernel.frames().stats();
            final var devA = a.kernel.iommu().device(Bdf.parse("0000:00:02.0"));
            final IommuDomain d = a.kernel.iommu().allocPaging(devA, 0);
            d.map(0x10_0000, 64 * MIB, 4 * MIB, IommuDomain.READ | IommuDomain.WRITE);
            a.kernel.iommu().attach(devA, d);
            assertEquals(bBefore, b.kernel.frames().stats(), "b's allocator did not move");
            final var devB = b.kernel.iommu().device(Bdf.parse("0000:00:02.0"));
            assertEquals(b.kernel.iommu().blockedDomain(), b.kernel.iommu().domainOf(devB));
            final long rootB = b.kernel.intelIommu().rootTable(0);
            assertEquals(0, b.machine.board().memory().load64(RootEntry.address(rootB, 0)), "b's bus 0 has no context table");
            assertNotEquals(0, a.machine.board().memory().load64(RootEntry.address(a.kernel.intelIommu().rootTable(0), 0)));
            assertEquals(1, a.kernel.intelIommu().domainIdsInUse(0));
            assertEquals(0, b.kernel.intelIommu().domainIdsInUse(0));
            assertFalse(b.kernel.log().dmesg().stream().anyMatch(l -> l.contains("-> paging")), "a's attach is not in b's log");
        }
    }

    @Test
    void processesReachTheBootedKernelThroughItsSocket() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small().withMemorySize(128 * MIB), "");
             var server = rig.kernel.serve(dir.resolve("k.sock"));
             var client = org.iopersist.vmm.KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            final long free = Long.parseLong(client.readFile("/sys/kernel/mm/frames/free").trim());
            assertEquals(rig.kernel.frames().stats().freeFrames(), free, "sysfs shows the allocator's accounting");
            assertEquals("cold", client.readFile("/sys/kernel/boot/kind").trim());
            assertTrue(client.open("/dev/iommu", org.iopersist.uapi.Syscall.O_RDWR) >= 0);
        }
    }

    static void awaitFaults(final DeviceBar bar, final long n) {
        final long deadline = System.nanoTime() + 10_000_000_000L;
        while (bar.counters().faults() < n) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("device never faulted: " + bar.counters());
            }
            Thread.onSpinWait();
        }
    }
}
