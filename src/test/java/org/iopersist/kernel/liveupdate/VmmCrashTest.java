package org.iopersist.kernel.liveupdate;

import org.iopersist.kernel.iommufd.persist.PersistedIommufds;
import org.iopersist.kernel.KernelRig;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.ChildJvm;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A VMM process dies between finalize and kexec (killed, no orderly close). Its files go with it,
 * so the persisted iommufd it held is closed: the finalize is aborted, its devices are blocked and
 * its pins dropped, and a kexec now hands nothing over. Nothing half-preserved reaches the next
 * kernel.
 */
class VmmCrashTest {
    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    /** The VMM: sets up a persistent context with a device, finalizes, then waits to be killed. */
    public static final class FinalizingVmm {
        public static void main(final String[] args) throws Exception {
            final KernelClient vmm = KernelClient.connect(Path.of(args[0]), Path.of(args[1]));
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", 8 * MIB);
            final IommufdHandle iommufd = IommufdHandle.open(vmm);
            iommufd.makePersistent();
            final int ioas = iommufd.ioasAlloc();
            iommufd.mapFixed(ioas, ram.va(), ram.size(), 0);
            final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, 0);
            d.bind(iommufd);
            d.attach(ioas);
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            System.out.println("finalized");
            System.out.flush();
            Thread.sleep(600_000);
        }
    }

    @Test
    void aVmmKilledAfterFinalizeAbortsItAndTheNextKernelColdBoots() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            Files.writeString(dir.resolve("m").resolve("boot").resolve("cmdline"), "guestmemfs=32M");
            final Kernel a = Kernel.boot(m.board());
            final SyscallServer server = a.serve(dir.resolve("k.sock"));
            try (ChildJvm vmm = ChildJvm.start(dir.resolve("vmm.log"), FinalizingVmm.class, server.path().toString(),
                    dir.resolve("m").resolve("memory").toString())) {
                final long deadline = System.nanoTime() + 60_000_000_000L;
                while (!vmm.output().contains("finalized")) {
                    assertTrue(vmm.process().isAlive() && System.nanoTime() < deadline, vmm.output());
                    Thread.sleep(20);
                }
                final IommuDevice dev = a.iommu().devices().get(0);
                assertTrue(a.liveUpdate().finalized());
                assertEquals(IommuDomainType.PAGING, IommuDomainType.of(a, dev));
                assertEquals(1, a.guestmemfs().pinsAt("vm0-ram", 0));
                vmm.process().destroyForcibly().waitFor();
            }
            // The kernel sees the connection end and runs the process's exit: wait for all of it.
            final IommuDevice dev = a.iommu().devices().get(0);
            final long until = System.nanoTime() + 10_000_000_000L;
            while ((a.liveUpdate().finalized() || a.iommu().domainOf(dev) != a.iommu().blockedDomain()
                    || a.guestmemfs().pinsAt("vm0-ram", 0) != 0 || !PersistedIommufds.liveIds(a).isEmpty())
                    && System.nanoTime() < until) {
                Thread.sleep(10);
            }
            assertTrue(!a.liveUpdate().finalized(), "the finalize was aborted");
            assertTrue(a.log().contains("after KHO finalize: aborting the finalize"), a.log().toString());
            assertEquals(a.iommu().blockedDomain(), a.iommu().domainOf(dev), "its device is blocked");
            assertEquals(0, a.guestmemfs().pinsAt("vm0-ram", 0), "its pins are gone; the file stays");
            assertEquals(List.of(), PersistedIommufds.liveIds(a), "the context is gone");
            a.kexecLoad(KernelRig.root(), "guestmemfs=32M");
            a.kexec();
            final Kernel b = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.COLD, b.bootKind(), "nothing was handed over");
            assertEquals("no handover in the boot record", b.coldBootReason());
            server.close();
        }
    }

    /** The device's domain type, read through the iommu core. */
    private enum IommuDomainType {
        PAGING, BLOCKED;

        static IommuDomainType of(final Kernel k, final IommuDevice d) {
            return k.iommu().domainOf(d) == k.iommu().blockedDomain() ? BLOCKED : PAGING;
        }
    }
}
