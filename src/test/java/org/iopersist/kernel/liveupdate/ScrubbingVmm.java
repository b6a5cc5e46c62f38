package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;

/** The restarted VMM of the scrub tests: reopen the context, rebind device 0, read the scrub's verdict. */
final class ScrubbingVmm {
    private ScrubbingVmm() {
    }

    /** The scrub's line from sysfs, and whether device 0 was blocked then (before the VMM exits). */
    record Scrubbed(String line, boolean deviceBlocked) {
    }

    /**
     * On kernel {@code b} of the machine in {@code machineDir}: reopens persistent context {@code pid}
     * (its scrub still pending), rebinds device 0, waits for the scrub and checks sysfs shows its line.
     */
    static Scrubbed reopenAndScrub(final Path machineDir, final Kernel b, final int pid) throws Exception {
        final SyscallServer server = b.serve(machineDir.resolve("k2.sock"));
        try (KernelClient vmm = KernelClient.connect(server.path(), machineDir.resolve("memory"))) {
            final IommufdHandle f = IommufdHandle.of(vmm, vmm.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
            assertEquals("pending", vmm.readFile(Iommufd.persistedDir(pid) + "/scrub").trim(), "nothing runs before the rebind");
            VfioDeviceHandle.open(vmm, 0).bind(f);
            final String line = b.persistedContexts().awaitScrub(pid, 60, TimeUnit.SECONDS);
            assertEquals(line, vmm.readFile(Iommufd.persistedDir(pid) + "/scrub").trim());
            final IommuDevice dev = b.iommu().devices().getFirst();
            return new Scrubbed(line, b.iommu().domainOf(dev) == b.iommu().blockedDomain());
        } finally {
            server.close();
        }
    }
}
