package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.iommufd.MockIommu;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuTestCmd;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Without {@code iommufd.selftest=1} the kernel has no mock IOMMU and IOMMU_TEST_CMD is ENOTTY, as without CONFIG_IOMMUFD_TEST. */
class SelftestDisabledTest {
    @TempDir
    Path tmp;

    @Test
    void testCmdIsEnottyWithoutTheBootParameter() throws Exception {
        try (KernelRig rig = KernelRig.boot(tmp.resolve("m"), MachineConfig.small(), "")) {
            assertNull(rig.kernel.iommu().busDriver(MockIommu.class));
            try (SyscallServer server = rig.kernel.serve(tmp.resolve("k.sock"));
                 KernelClient c = KernelClient.connect(server.path(), tmp.resolve("m").resolve("memory"))) {
                final int fd = c.open("/dev/iommu", Syscall.O_RDWR);
                final MemorySegment s = MemorySegment.ofArray(new long[9]);
                Iommufd.size(s, (int) IommuTestCmd.SIZE);
                IommuTestCmd.op(s, IommuTestCmd.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT);
                assertEquals(-Errno.ENOTTY.number, c.ioctl(fd, IommuTestCmd.IOMMU_TEST_CMD, s));
                assertEquals(-Errno.EFAULT.number, c.syscall(Syscall.IOCTL, fd, IommuTestCmd.IOMMU_TEST_CMD, 0),
                        "still inside iommufd's table: the size is read first");
            }
            rig.assertBooksBalanced("after the process exited");
        }
    }
}
