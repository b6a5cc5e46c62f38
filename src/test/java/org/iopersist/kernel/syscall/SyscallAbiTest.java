package org.iopersist.kernel.syscall;

import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.fs.Vfs;
import org.iopersist.kernel.mm.FrameRefs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicReference;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.SysfsAttribute;
import org.iopersist.testing.ChildJvm;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The syscall ABI over a real Unix domain socket: open/read/write of sysfs files, anonymous and
 * memfd mappings reached through the process's own MMU (pagemap), copy_from_user faults, and the
 * bad-argument path of every syscall. One test drives it from a second JVM.
 */
class SyscallAbiTest {
    @TempDir
    Path tmp;
    PhysicalMemory memory;
    TestFrames frames;
    SyscallServer server;
    Syscalls syscalls;
    final AtomicReference<String> knob = new AtomicReference<>("0");
    String kexecCmdline;

    @BeforeEach
    void setUp() throws Exception {
        memory = PhysicalMemory.create(tmp.resolve("memory"), 256L << 20);
        frames = new TestFrames(memory, 16L << 20, 128L << 20);
        final Sysfs sysfs = new Sysfs();
        sysfs.add("/sys/kernel/test", SysfsAttribute.readWrite("knob", knob::get, v -> {
            if (!v.matches("[0-9]+")) {
                throw new org.iopersist.kernel.KernelException(Errno.EINVAL, "not a number");
            }
            knob.set(v);
        }));
        sysfs.add("/sys/kernel/test", SysfsAttribute.readOnly("ro", () -> "fixed"));
        final Vfs vfs = new Vfs(sysfs);
        final LiveUpdateControl control = new LiveUpdateControl() {
            @Override
            public void kexecLoad(final UserProcess caller, final String cmdline) {
                kexecCmdline = cmdline;
            }

            @Override
            public void rebootKexec(final UserProcess caller) {
            }
        };
        syscalls = new Syscalls(memory, frames, new FrameRefs(frames), vfs, control);
        server = new SyscallServer(tmp.resolve("kernel.sock"), syscalls, line -> { });
    }

    @AfterEach
    void tearDown() {
        server.close();
        memory.close();
    }

    KernelClient connect() throws Exception {
        return KernelClient.connect(server.path(), tmp.resolve("memory"));
    }

    static Errno errno(final long ret) {
        assertTrue(ret < 0, "expected an error, got " + ret);
        return Errno.of((int) -ret);
    }

    @Test
    void sysfsFilesReadAndWriteThroughDescriptors() throws Exception {
        try (KernelClient c = connect()) {
            assertTrue(c.pid() >= 100);
            assertEquals("0\n", c.readFile("/sys/kernel/test/knob"));
            c.writeFile("/sys/kernel/test/knob", "42\n");
            assertEquals("42\n", c.readFile("/sys/kernel/test/knob"));
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> c.writeFile("/sys/kernel/test/knob", "x")).error());
            assertEquals(Errno.EACCES, assertThrows(ErrnoException.class, () -> c.open("/sys/kernel/test/ro", Syscall.O_WRONLY)).error());
            assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class, () -> c.open("/sys/kernel/nope", 0)).error());
            assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class, () -> c.open("/dev/nothing", 0)).error());
            assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class, () -> c.open("relative", 0)).error());
        }
    }

    /** Sysfs directories are directories as in Linux: open for reading and getdents64, never for writing. */
    @Test
    void sysfsDirectoriesListWithGetdents64() throws Exception {
        try (KernelClient c = connect()) {
            assertEquals(java.util.List.of("ro", "knob").stream().sorted().toList(), c.listDir("/sys/kernel/test"));
            assertEquals(java.util.List.of("kernel"), c.listDir("/sys"));
            final int fd = c.open("/sys/kernel", Syscall.O_RDONLY);
            final long buf = c.scratch() + 4096;
            final long n = c.syscall(Syscall.GETDENTS64, fd, buf, 512);
            assertTrue(n > 0, "getdents64 of /sys/kernel: " + n);
            assertEquals(Syscall.DT_DIR, c.memory().readBytes(buf + 18, 1)[0], "test is a directory");
            assertEquals("test", new String(c.memory().readBytes(buf + Syscall.DIRENT64_NAME, 4), StandardCharsets.UTF_8));
            assertEquals(0, c.syscall(Syscall.GETDENTS64, fd, buf, 512), "the end");
            // rewinddir: lseek to 0 lists it again (dcache_dir_lseek), SEEK_END is EINVAL.
            assertEquals(0, c.syscall(Syscall.LSEEK, fd, 0, 0));
            assertEquals(n, c.syscall(Syscall.GETDENTS64, fd, buf, 512), "listed again after the rewind");
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.LSEEK, fd, 0, 2)));
            assertEquals(Errno.EISDIR, errno(c.syscall(Syscall.READ, fd, buf, 16)));
            c.close(fd);
            final int attr = c.open("/sys/kernel/test", Syscall.O_RDONLY | Syscall.O_DIRECTORY);
            final long k = c.syscall(Syscall.GETDENTS64, attr, buf, 512);
            assertEquals(Syscall.DT_REG, c.memory().readBytes(buf + 18, 1)[0], "knob is an attribute");
            assertTrue(k > 0);
            c.close(attr);
            assertEquals(Errno.EISDIR, assertThrows(ErrnoException.class, () -> c.open("/sys/kernel/test", Syscall.O_RDWR)).error());
            assertEquals(Errno.EISDIR, assertThrows(ErrnoException.class, () -> c.open("/sys/kernel/test", Syscall.O_WRONLY)).error());
            assertEquals(Errno.ENOTDIR, assertThrows(ErrnoException.class,
                    () -> c.open("/sys/kernel/test/knob", Syscall.O_RDONLY | Syscall.O_DIRECTORY)).error());
            assertEquals(Errno.ENOTDIR, errno(c.syscall(Syscall.GETDENTS64, c.open("/sys/kernel/test/ro", 0), buf, 512)));
        }
    }

    @Test
    void anonymousMemoryIsReachedThroughTheProcessesOwnPageTables() throws Exception {
        try (KernelClient c = connect()) {
            final long va = c.mmapAnonymous(3 * 4096 + 100);
            final byte[] data = "hello, physical memory".getBytes(StandardCharsets.UTF_8);
            c.memory().writeBytes(va + 4090, data); // crosses a page
            assertArrayEquals(data, c.memory().readBytes(va + 4090, data.length));
            // The kernel sees the same bytes through copy_from_user: write them to a memfd and read back.
            final int fd = c.memfdCreate("guest");
            c.ftruncate(fd, 8192);
            assertEquals(data.length, c.syscall(Syscall.PWRITE64, fd, va + 4090, data.length, 100));
            final long shared = c.mmap(0, 8192, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
            assertArrayEquals(data, c.memory().readBytes(shared + 100, data.length));
            c.memory().writeBytes(shared + 5000, data);
            assertEquals(data.length, c.syscall(Syscall.PREAD64, fd, va, data.length, 5000));
            assertArrayEquals(data, c.memory().readBytes(va, data.length));
            c.munmap(va, 3 * 4096 + 100);
            assertThrows(IllegalArgumentException.class, () -> c.memory().readBytes(va, 1), "unmapped now");
        }
    }

    @Test
    void badArgumentsAnswerLinuxErrnos() throws Exception {
        try (KernelClient c = connect()) {
            assertEquals(Errno.EBADF, errno(c.syscall(Syscall.CLOSE, 77)));
            assertEquals(Errno.EBADF, errno(c.syscall(Syscall.READ, 77, c.scratch(), 1)));
            assertEquals(Errno.EBADF, errno(c.syscall(Syscall.CLOSE, -1)));
            assertEquals(Errno.EBADF, errno(c.syscall(Syscall.IOCTL, 5, 0x3b80, 0)));
            assertEquals(Errno.EFAULT, errno(c.syscall(Syscall.OPEN, 0x1000, 0)), "path pointer not mapped");
            assertEquals(Errno.ENOSYS, errno(c.syscall(4242)));
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.MMAP, 0, 0, 3, Syscall.MAP_PRIVATE | Syscall.MAP_ANONYMOUS, -1, 0)));
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.MMAP, 0, 4096, 3, Syscall.MAP_ANONYMOUS, -1, 0)), "neither shared nor private");
            assertEquals(Errno.EBADF, errno(c.syscall(Syscall.MMAP, 0, 4096, 3, Syscall.MAP_SHARED, 9, 0)));
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.MUNMAP, 0x1001, 4096)));
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.REBOOT, 1, 2, Syscall.LINUX_REBOOT_CMD_KEXEC)));
            final int fd = c.memfdCreate("m");
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.FTRUNCATE, fd, -1)));
            assertEquals(8, c.syscall(Syscall.PWRITE64, fd, c.scratch(), 8, 0), "a write past the end grows the file");
            c.ftruncate(fd, 4096);
            assertEquals(Errno.EFAULT, errno(c.syscall(Syscall.PWRITE64, fd, 0x5000, 8, 0)), "source not mapped");
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.MMAP, 0, 4096, 3, Syscall.MAP_SHARED, fd, 4096 * 3)), "past the end");
            assertEquals(Errno.ENOTTY, errno(c.syscall(Syscall.IOCTL, fd, 0x3b80, 0)));
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.MEMFD_CREATE, c.scratch(), 0x100)));
            assertEquals(Errno.EINVAL, errno(c.syscall(Syscall.LSEEK, fd, 0, 7)));
            c.syscall(Syscall.KEXEC_LOAD, 0);
        }
    }

    /** kernel/reboot.c: CAP_SYS_BOOT is checked before the magic; any of the four magic2 dates will do. */
    @Test
    void rebootChecksTheCallerBeforeTheMagic() {
        final UserProcess user = server.newProcess(1000, 1000);
        assertEquals(Errno.EPERM, errno(syscalls.call(user, Syscall.REBOOT, 1, 2, Syscall.LINUX_REBOOT_CMD_KEXEC, 0, 0, 0)));
        assertEquals(Errno.EPERM, errno(syscalls.call(user, Syscall.REBOOT, Syscall.LINUX_REBOOT_MAGIC1,
                Syscall.LINUX_REBOOT_MAGIC2, Syscall.LINUX_REBOOT_CMD_KEXEC, 0, 0, 0)));
        final UserProcess root = server.newProcess(0, 0);
        assertEquals(Errno.EINVAL, errno(syscalls.call(root, Syscall.REBOOT, 1, 2, Syscall.LINUX_REBOOT_CMD_KEXEC, 0, 0, 0)));
        for (int magic2 : new int[] {Syscall.LINUX_REBOOT_MAGIC2, Syscall.LINUX_REBOOT_MAGIC2A, Syscall.LINUX_REBOOT_MAGIC2B,
                Syscall.LINUX_REBOOT_MAGIC2C}) {
            assertEquals(0, syscalls.call(root, Syscall.REBOOT, Syscall.LINUX_REBOOT_MAGIC1, magic2,
                    Syscall.LINUX_REBOOT_CMD_KEXEC, 0, 0, 0), "magic2 " + magic2);
        }
    }

    @Test
    void exitReleasesEverythingTheProcessHeld() throws Exception {
        final int before = frames.used();
        try (KernelClient c = connect()) {
            c.mmapAnonymous(64 * 4096);
            final int fd = c.memfdCreate("m");
            c.ftruncate(fd, 16 * 4096);
            c.mmap(0, 16 * 4096, Syscall.PROT_READ, Syscall.MAP_SHARED, fd, 0);
            assertTrue(frames.used() >= before + 64 + 16);
        }
        // Exit is synchronous: close() returns once the kernel has released everything, as wait(2).
        assertEquals(before, frames.used(), "every frame of the exited process is back when close returns");
    }

    /** Runs in a second JVM: a process that uses the ABI and reports through its exit code. */
    public static final class SecondProcess {
        public static void main(final String[] args) throws Exception {
            try (KernelClient c = KernelClient.connect(Path.of(args[0]), Path.of(args[1]))) {
                c.writeFile("/sys/kernel/test/knob", "7");
                final long va = c.mmapAnonymous(8192);
                c.memory().writeLong(va + 8, 0x1234_5678_9abcL);
                final int fd = c.memfdCreate("x");
                c.ftruncate(fd, 4096);
                c.syscall(Syscall.PWRITE64, fd, va + 8, 8, 0);
                final long shared = c.mmap(0, 4096, Syscall.PROT_READ, Syscall.MAP_SHARED, fd, 0);
                System.out.println("pid " + c.pid() + " value " + Long.toHexString(c.memory().readLong(shared)));
                System.exit(c.memory().readLong(shared) == 0x1234_5678_9abcL ? 0 : 3);
            }
        }
    }

    @Test
    void aSecondProcessDrivesTheAbi() throws Exception {
        try (ChildJvm child = ChildJvm.start(tmp.resolve("child.log"), SecondProcess.class,
                server.path().toString(), tmp.resolve("memory").toString())) {
            assertEquals(0, child.waitFor(60), child.output());
            assertTrue(child.output().contains("value 123456789abc"), child.output());
        }
        assertEquals("7\n", knob.get() + "\n");
    }
}
