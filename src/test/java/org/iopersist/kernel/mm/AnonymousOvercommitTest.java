package org.iopersist.kernel.mm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** An anonymous mapping larger than free memory is refused up front (ENOMEM), taking no frame. */
class AnonymousOvercommitTest {
    @TempDir
    Path dir;

    @Test
    void aTebibyteOfAnonymousMemoryOnAGibibyteMachineIsEnomemAtOnce() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small(), "")) {
            final SyscallServer server = rig.kernel.serve(dir.resolve("k.sock"));
            try (KernelClient c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                final long free = rig.kernel.frames().stats().freeFrames();
                for (long bytes : new long[] {1L << 40, 16L << 30, (free + 1) << 12}) {
                    final long ret = c.syscall(Syscall.MMAP, 0, bytes, Syscall.PROT_READ | Syscall.PROT_WRITE,
                            Syscall.MAP_PRIVATE | Syscall.MAP_ANONYMOUS, -1, 0);
                    assertEquals(-Errno.ENOMEM.number, ret, "0x" + Long.toHexString(bytes));
                    assertEquals(free, rig.kernel.frames().stats().freeFrames(), "no frame taken");
                }
                assertTrue(c.mmapAnonymous(1 << 20) > 0, "what fits still maps");
            } finally {
                server.close();
            }
        }
    }
}
