package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.CanaryPages;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadMode;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Reach;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A hostile device through a whole live update: device 1's guest programs it to read and write at
 * random IOVAs, unpaced ({@link WorkloadMode#HOSTILE}), while its domain maps only 1 MiB of guest
 * RAM; device 0, on the same remapping unit, writes and verifies records through its own domain.
 * Both run before the update, in the kexec window with no kernel at all, while kernel 2 boots, before
 * the VMM reopens and after. Every hostile access outside its domain faults and lands nowhere: the
 * rest of guest RAM and firmware memory are canaries and never change, and device 0's records are
 * all in place. The faults overflow the unit's fault recording registers (FSTS.PFO) many times over,
 * and the unit is not lost: device 0 never faults, and kernel 2's queued invalidations still complete
 * (a map and unmap after the reopen).
 */
class HostileDeviceTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=32M liveupdate.finish_timeout=0 page_poison=on";

    @TempDir
    Path dir;

    @Test
    void aHostileDeviceFaultsEverywhereItsDomainDoesNotMapThroughoutTheUpdate() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            Files.writeString(dir.resolve("m").resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE);
            final Kernel k1 = Kernel.boot(m.board());
            final SyscallServer s1 = k1.serve(dir.resolve("k.sock"));
            final DeviceBar good = new DeviceBar(m.board().deviceBar(0));
            final DeviceBar bad = new DeviceBar(m.board().deviceBar(1));
            final CanaryPages canaries = new CanaryPages(m.board().memory(), 0xBAD0);
            final int pid;
            try (KernelClient vmm = KernelClient.connect(s1.path(), dir.resolve("m").resolve("memory"))) {
                final GuestRam ram = GuestRam.create(vmm, "vm0", 8 * MIB);
                final IommufdHandle fd = IommufdHandle.open(vmm);
                pid = (int) fd.makePersistent();
                final int all = fd.ioasAlloc();
                fd.mapFixed(all, ram.va(), ram.size(), 0);
                final int little = fd.ioasAlloc();
                fd.mapFixed(little, ram.va() + 6 * MIB, MIB, 16 * MIB);
                final VfioDeviceHandle d0 = VfioDeviceHandle.open(vmm, 0);
                d0.bind(fd);
                d0.attach(all);
                final VfioDeviceHandle d1 = VfioDeviceHandle.open(vmm, 1);
                d1.bind(fd);
                d1.attach(little);
                // Canaries: the guest RAM device 0 does not write ([3, 6) and [7, 8) MiB) and firmware memory.
                canaries.fill(k1.guestmemfs().phys("vm0", 3 * MIB), 3 * MIB >>> 12);
                canaries.fill(k1.guestmemfs().phys("vm0", 7 * MIB), MIB >>> 12);
                canaries.fill(0x80000, 0x80000 >>> 12);
                good.start(WorkloadSettings.writeVerify(MIB, 2 * MIB, 512, 11));
                bad.start(WorkloadSettings.writeVerify(16 * MIB, MIB, 512, 12).withMode(WorkloadMode.HOSTILE));
                bad.awaitSeq(20_000);
                good.awaitSeq(500);
                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                vmm.kexecLoad(CMDLINE);
                vmm.rebootKexec();
            }
            s1.close();
            // The kexec window: no kernel at all; both devices go on.
            final long during = bad.counters().nextSeq();
            Thread.sleep(50);
            assertTrue(bad.counters().nextSeq() > during, "the hostile device runs between the kernels");
            final Kernel k2 = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, k2.bootKind(), k2.coldBootReason());
            Thread.sleep(50); // restored, nobody reopened yet
            final SyscallServer s2 = k2.serve(dir.resolve("k.sock"));
            try (KernelClient vmm = KernelClient.connect(s2.path(), dir.resolve("m").resolve("memory"))) {
                final IommufdHandle fd = IommufdHandle.of(vmm, vmm.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                VfioDeviceHandle.open(vmm, 0).bind(fd);
                VfioDeviceHandle.open(vmm, 1).bind(fd);
                final GuestRam ram = GuestRam.open(vmm, "vm0");
                bad.awaitSeq(bad.counters().nextSeq() + 20_000);
                // The unit is not lost: kernel 2 maps and unmaps (each unmap waits on a queued invalidation).
                final int ioas = fd.ioasAlloc();
                fd.mapFixed(ioas, ram.va(), 2 * MIB, 64 * MIB);
                assertEquals(2 * MIB, fd.unmap(ioas, 64 * MIB, 2 * MIB));
                good.awaitSeq(good.counters().nextSeq() + 500);
                bad.stop();
                good.stop();
                final DeviceCounters h = bad.counters();
                assertTrue(h.faults() > 1000 && h.ops() > 1000, "both what went through and what faulted: " + h);
                assertTrue((m.board().unitRegisters(0).read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_PFO) != 0,
                        "the fault recording registers overflowed");
                final DeviceCounters g = good.counters();
                assertEquals(0, g.faults(), "device 0 on the same unit never faulted: " + g);
                assertEquals(0, g.corrupt(), g.toString());
                final IommuDevice d0 = k2.iommu().devices().get(0);
                final RecordChecker.Report r = new RecordChecker(m.board().memory()).check(good.window(),
                        iova -> k2.iommu().domainOf(d0).iovaToPhys(iova));
                assertTrue(r.clean(), r.toString());
                assertEquals(List.of(), canaries.changes(), "a hostile access landed outside its domain");
                assertEquals(List.of(), DeviceStates.halfStates(k2));
                assertEquals(List.of(), Reach.freeButReachable(m.board(), k2.frames()::isFree, 10));
                assertEquals(0, k2.frames().stats().poisonViolations());
            }
            s2.close();
        }
    }
}
