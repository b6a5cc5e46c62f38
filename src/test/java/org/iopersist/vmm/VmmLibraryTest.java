package org.iopersist.vmm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What a VMM does for a guest with assigned devices, with the client library alone. */
class VmmLibraryTest {
    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    @Test
    void aVmmSetsUpPersistentGuestRamAndDevices() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small().withMemorySize(512 * MIB), "guestmemfs=128M")) {
            try (SyscallServer server = rig.kernel.serve(dir.resolve("k.sock"));
                 KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                vmmSession(rig, vmm);
            }
            rig.assertBooksBalanced("after the VMM exited");
        }
    }

    private static void vmmSession(final KernelRig rig, final KernelClient vmm) throws Exception {
        {
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", 64 * MIB);
            final IommufdHandle iommufd = IommufdHandle.open(vmm);
            final long persistentId = iommufd.makePersistent();
            assertTrue(persistentId >= 1);
            assertEquals(persistentId, iommufd.persistentId());
            final int ioas = iommufd.ioasAlloc();
            assertEquals(0, iommufd.mapFixed(ioas, ram.va(), ram.size(), 0), "guest-physical 0");
            final DeviceBar[] bars = new DeviceBar[2];
            for (int i = 0; i < 2; i++) {
                final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, i);
                assertTrue(dev.bind(iommufd) > 0);
                assertTrue(dev.attach(ioas) > 0);
                bars[i] = new DeviceBar(rig.machine.board().deviceBar(i));
                bars[i].start(WorkloadSettings.writeVerify((8 + 8 * i) * MIB, MIB, 1024, 40 + i));
            }
            for (DeviceBar bar : bars) {
                bar.awaitSeq(3000);
                bar.stop();
                assertEquals(0, bar.counters().faults(), bar.counters().toString());
                final RecordChecker.Report r = new RecordChecker(rig.machine.board().memory()).check(bar.window(), ram::physOf);
                assertTrue(r.clean(), r.toString());
            }
            assertEquals(2, iommufd.iovaRanges(ioas).size());
            // Errors arrive as the kernel's errno.
            assertEquals(Errno.EEXIST.number, org.junit.jupiter.api.Assertions.assertThrows(ErrnoException.class,
                    () -> GuestRam.create(vmm, "vm0-ram", MIB)).errno());
            final int memfd = vmm.memfdCreate("x");
            vmm.ftruncate(memfd, MIB);
            final long anon = vmm.mmapAnonymous(MIB);
            assertEquals(Errno.EINVAL.number, org.junit.jupiter.api.Assertions.assertThrows(ErrnoException.class,
                    () -> iommufd.mapFixed(ioas, anon, MIB, 512 * MIB)).errno(), "a persistent ctx refuses anonymous memory");
            assertEquals(Errno.EINVAL.number, org.junit.jupiter.api.Assertions.assertThrows(ErrnoException.class,
                    vmm::rebootKexec).errno(), "reboot(KEXEC) with no kernel loaded");
        }
    }
}
