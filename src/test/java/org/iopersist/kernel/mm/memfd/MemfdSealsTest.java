package org.iopersist.kernel.mm.memfd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * memfd_create and file sealing with mm/memfd.c's and shmem's errno, through the syscall ABI: the
 * flag checks, F_ADD_SEALS / F_GET_SEALS, and what each seal refuses.
 */
class MemfdSealsTest {
    private static final long PAGE = 4096;

    @TempDir
    Path dir;
    private KernelRig rig;
    private SyscallServer server;
    private KernelClient c;

    @BeforeEach
    void boot() throws Exception {
        rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small(), "");
        server = rig.kernel.serve(dir.resolve("k.sock"));
        c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
    }

    @AfterEach
    void shutdown() {
        c.close();
        server.close();
        rig.close();
    }

    private static Errno errno(final long ret) {
        assertTrue(ret < 0, "expected an error, got " + ret);
        return Errno.of((int) -ret);
    }

    private long memfdCreate(final String name, final int flags) {
        final byte[] b = (name + "\0").getBytes(StandardCharsets.UTF_8);
        c.memory().writeBytes(c.scratch() + 1024, b);
        return c.syscall(Syscall.MEMFD_CREATE, c.scratch() + 1024, flags);
    }

    @Test
    void memfdCreateChecksFlagsThenTheName() {
        assertEquals(Errno.EINVAL, errno(memfdCreate("x", 0x100)), "an unknown flag");
        assertEquals(Errno.EINVAL, errno(memfdCreate("x", Syscall.MFD_EXEC | Syscall.MFD_NOEXEC_SEAL)), "both exec flags");
        assertEquals(Errno.EINVAL, errno(memfdCreate("x", Syscall.MFD_HUGETLB)), "hugetlb memfds are not modelled");
        assertTrue(memfdCreate("n".repeat(Syscall.MFD_NAME_MAX_LEN), 0) >= 0, "249 bytes of name");
        assertEquals(Errno.EINVAL, errno(memfdCreate("n".repeat(Syscall.MFD_NAME_MAX_LEN + 1), 0)), "250 bytes");
        assertEquals(Errno.EFAULT, errno(c.syscall(Syscall.MEMFD_CREATE, 0x1000, 0)), "name not mapped");
    }

    @Test
    void sealsStartAsMemfdCreateSays() {
        final int plain = c.memfdCreate("plain");
        assertEquals(Syscall.F_SEAL_SEAL, c.fcntl(plain, Syscall.F_GET_SEALS, 0), "not sealable without MFD_ALLOW_SEALING");
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.FCNTL, plain, Syscall.F_ADD_SEALS, Syscall.F_SEAL_GROW)));
        final int sealable = c.memfdCreate("sealable", Syscall.MFD_ALLOW_SEALING);
        assertEquals(0, c.fcntl(sealable, Syscall.F_GET_SEALS, 0));
        final int noexec = c.memfdCreate("noexec", Syscall.MFD_NOEXEC_SEAL);
        assertEquals(Syscall.F_SEAL_EXEC, c.fcntl(noexec, Syscall.F_GET_SEALS, 0), "MFD_NOEXEC_SEAL: sealable, exec-sealed");
        assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.FCNTL, sealable, Syscall.F_ADD_SEALS, 0x40)), "an unknown seal");
        assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.FCNTL, sealable, Syscall.F_ADD_SEALS, 1L << 32)), "above UINT_MAX");
        final int devNull = c.open("/dev/null", Syscall.O_RDWR);
        assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.FCNTL, devNull, Syscall.F_GET_SEALS, 0)), "not a memfd");
        assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.FCNTL, devNull, Syscall.F_ADD_SEALS, Syscall.F_SEAL_GROW)));
        assertEquals(Errno.EBADF, errno(c.syscall(Syscall.FCNTL, 99, Syscall.F_GET_SEALS, 0)));
        assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.FCNTL, sealable, 1, 0)), "F_GETFD is not modelled");
        // F_SEAL_EXEC on an executable memfd brings the write and size seals (W^X from the start).
        final int exec = c.memfdCreate("exec", Syscall.MFD_ALLOW_SEALING);
        c.fcntl(exec, Syscall.F_ADD_SEALS, Syscall.F_SEAL_EXEC);
        assertEquals(Syscall.F_SEAL_EXEC | Syscall.F_SEAL_SHRINK | Syscall.F_SEAL_GROW | Syscall.F_SEAL_WRITE
                | Syscall.F_SEAL_FUTURE_WRITE, c.fcntl(exec, Syscall.F_GET_SEALS, 0));
        c.fcntl(noexec, Syscall.F_ADD_SEALS, Syscall.F_SEAL_EXEC);
        assertEquals(Syscall.F_SEAL_EXEC, c.fcntl(noexec, Syscall.F_GET_SEALS, 0), "not when it is not executable");
    }

    @Test
    void eachSealRefusesWhatItSays() {
        final int fd = c.memfdCreate("s", Syscall.MFD_ALLOW_SEALING);
        c.ftruncate(fd, 4 * PAGE);
        c.fcntl(fd, Syscall.F_ADD_SEALS, Syscall.F_SEAL_SHRINK);
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.FTRUNCATE, fd, PAGE)), "F_SEAL_SHRINK");
        c.ftruncate(fd, 8 * PAGE);
        c.fcntl(fd, Syscall.F_ADD_SEALS, Syscall.F_SEAL_GROW);
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.FTRUNCATE, fd, 9 * PAGE)), "F_SEAL_GROW");
        c.memory().writeBytes(c.scratch() + 2048, new byte[] {1, 2, 3, 4});
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.PWRITE64, fd, c.scratch() + 2048, 4, 8 * PAGE - 2)),
                "a write past the end under F_SEAL_GROW");
        assertEquals(4, c.syscall(Syscall.PWRITE64, fd, c.scratch() + 2048, 4, 0), "inside it writes");
        final long w = c.mmap(0, PAGE, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
        assertEquals(Errno.EBUSY, errno(c.syscall(Syscall.FCNTL, fd, Syscall.F_ADD_SEALS, Syscall.F_SEAL_WRITE)),
                "F_SEAL_WRITE with a writable shared mapping");
        c.munmap(w, PAGE);
        c.fcntl(fd, Syscall.F_ADD_SEALS, Syscall.F_SEAL_WRITE);
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.PWRITE64, fd, c.scratch() + 2048, 4, 0)), "F_SEAL_WRITE");
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.MMAP, 0, PAGE, Syscall.PROT_READ | Syscall.PROT_WRITE,
                Syscall.MAP_SHARED, fd, 0)), "no new writable mapping");
        final long r = c.mmap(0, PAGE, Syscall.PROT_READ, Syscall.MAP_SHARED, fd, 0);
        assertEquals(1, c.memory().readBytes(r, 1)[0], "a read-only mapping sees the data");
        c.fcntl(fd, Syscall.F_ADD_SEALS, Syscall.F_SEAL_SEAL);
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.FCNTL, fd, Syscall.F_ADD_SEALS, Syscall.F_SEAL_FUTURE_WRITE)),
                "F_SEAL_SEAL: no more seals");
        assertEquals(Syscall.F_SEAL_SHRINK | Syscall.F_SEAL_GROW | Syscall.F_SEAL_WRITE | Syscall.F_SEAL_SEAL,
                c.fcntl(fd, Syscall.F_GET_SEALS, 0));
        final int fw = c.memfdCreate("fw", Syscall.MFD_ALLOW_SEALING);
        c.ftruncate(fw, PAGE);
        final long keep = c.mmap(0, PAGE, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fw, 0);
        c.fcntl(fw, Syscall.F_ADD_SEALS, Syscall.F_SEAL_FUTURE_WRITE); // unlike F_SEAL_WRITE, allowed with a mapping
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.PWRITE64, fw, c.scratch() + 2048, 4, 0)), "F_SEAL_FUTURE_WRITE");
        assertEquals(Errno.EPERM, errno(c.syscall(Syscall.MMAP, 0, PAGE, Syscall.PROT_WRITE, Syscall.MAP_SHARED, fw, 0)));
        c.munmap(keep, PAGE);
    }

    @Test
    void writesGrowTheFileAndReadsStopAtItsEnd() {
        final int fd = c.memfdCreate("grow");
        assertEquals(5, c.write(fd, "hello".getBytes(StandardCharsets.UTF_8)));
        assertEquals(5, c.lseek(fd, 0, 2), "the file is 5 bytes long");
        c.lseek(fd, 0, 0);
        assertEquals("hello", new String(c.read(fd, 64), StandardCharsets.UTF_8));
        assertEquals(0, c.read(fd, 64).length, "end of file");
    }
}
