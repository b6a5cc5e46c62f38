package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.TreeMap;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A small guest on the paths a TiB guest takes: q35's layout (3 GiB at IOVA 0, the rest from
 * 4 GiB, the hole between), guestmemfs in 1 GiB-aligned runs mapped with 1 GiB leaves, a live
 * update that adopts them without walking them, and the scrub after the rebind, which passes the
 * sound tables and catches a leaf planted in the preserved tables between the kernels.
 */
class GuestLayoutLiveUpdateTest {
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;
    private static final long GUEST = 5 * GIB;
    private static final String CMDLINE = "guestmemfs=" + (GUEST / MIB + 1024) + "M liveupdate.finish_timeout=0";

    @TempDir
    Path dir;

    private record Handed(Machine machine, int pid, long pgd) {
    }

    /** Kernel A: 5 GiB of guest RAM mapped as q35 lays it out, a device running, finalized and kexec'd. */
    private Handed handOver() throws Exception {
        final Path at = dir.resolve("m");
        final Machine m = Machine.create(at, MachineConfig.small().withMemorySize(GUEST + 2 * GIB)).start();
        Files.writeString(at.resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE);
        final Kernel a = Kernel.boot(m.board());
        final SyscallServer server = a.serve(at.resolve("k.sock"));
        try (KernelClient vmm = KernelClient.connect(server.path(), at.resolve("memory"))) {
            final GuestRam ram = GuestRam.create(vmm, "ram", GUEST);
            final IommufdHandle f = IommufdHandle.open(vmm);
            final int pid = (int) f.makePersistent();
            final int ioas = f.ioasAlloc();
            final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, 0);
            d.bind(f);
            d.attach(ioas);
            final List<GuestRam.Region> regions = ram.mapForDma(f, ioas, 1);
            assertEquals(List.of(new GuestRam.Region(0, 0, 3 * GIB), new GuestRam.Region(4 * GIB, 3 * GIB, 2 * GIB)), regions);
            assertEquals(ram.physOf(4 * GIB), ram.physOf(3 * GIB - 1) + 1, "GPA 4 GiB continues the file after 3 GiB");
            final IommuDevice dev = a.iommu().devices().getFirst();
            final TreeMap<Long, Long> leaves = new TreeMap<>();
            a.iommu().domainOf(dev).ops().forEachLeaf((iova, phys, size, prot) -> leaves.merge(size, 1L, Long::sum));
            assertEquals(new TreeMap<>(java.util.Map.of(GIB, 5L)), leaves, "five 1 GiB leaves, none across the hole");
            new DeviceBar(m.board().deviceBar(0)).start(WorkloadSettings.writeVerify(MIB, MIB, 512, 1));
            final long pgd = a.iommu().domainOf(dev).ops().handoverKey();
            a.liveUpdate().finalizeHandover();
            a.kexecLoad(KernelRig.root(), CMDLINE);
            a.kexec();
            return new Handed(m, pid, pgd);
        } finally {
            server.close();
        }
    }

    /** Boots kernel B from the handover, then the VMM reopens, rebinds and waits for the scrub. */
    private static ScrubbingVmm.Scrubbed restoreAndScrub(final Handed h) throws Exception {
        final Kernel b = Kernel.boot(h.machine().board());
        assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
        return ScrubbingVmm.reopenAndScrub(h.machine().board().directory(), b, h.pid());
    }

    @Test
    void aGuestAcrossTheHoleIsAdoptedAndScrubsClean() throws Exception {
        final Handed h = handOver();
        try (Machine m = h.machine()) {
            final ScrubbingVmm.Scrubbed s = restoreAndScrub(h);
            assertEquals("ok: 5 leaves, 0x140000000 bytes", s.line().substring(0, s.line().indexOf(" in ")), s.line());
            assertTrue(!s.deviceBlocked(), "the device keeps translating");
        }
    }

    @Test
    void aLeafPlantedBetweenTheKernelsIsCaughtByTheScrub() throws Exception {
        final Handed h = handOver();
        try (Machine m = h.machine()) {
            // IOVA 4 GiB's 1 GiB leaf now points at IOVA 1 GiB's memory: well-formed, preserved, wrong.
            final PhysicalMemory mem = m.board().memory();
            final long pdpt = SlPte.address(mem.load64(h.pgd()));
            final long lowLeaf = mem.load64(pdpt + SlPte.index(GIB, 3) * SlPte.SIZE);
            final long highLeafAt = pdpt + SlPte.index(4 * GIB, 3) * SlPte.SIZE;
            mem.store64(highLeafAt, lowLeaf);
            final ScrubbingVmm.Scrubbed s = restoreAndScrub(h);
            assertTrue(s.line().startsWith("mismatch: ") && s.line().contains("IOVA 0x100000000 translates to")
                    && s.line().contains("1 devices blocked"), s.line());
            assertTrue(s.deviceBlocked(), "the device of the bad domain is blocked");
        }
    }
}
