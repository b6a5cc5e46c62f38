package org.iopersist.kernel.guestmemfs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DmaRecord;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.ChildJvm;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** guestmemfs on a booted kernel, driven by processes over the syscall ABI. */
class GuestmemfsTest {
    private static final long MIB = 1L << 20;
    private static final MachineConfig CONFIG = MachineConfig.small().withMemorySize(256 * MIB);

    @TempDir
    Path dir;

    private static int errno(final Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    private static long mapShared(final KernelClient c, final int fd, final long length) {
        return c.mmap(0, length, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
    }

    @Test
    void filesGrowAndShrinkInBlocksUntilTheCarveOutIsFull() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M");
             SyscallServer server = rig.kernel.serve(dir.resolve("k.sock"));
             KernelClient c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            final long[] fs0 = c.statfs("/guestmemfs");
            assertEquals(GuestmemfsMount.MAGIC, fs0[0]);
            assertEquals(GmfsLayout.BLOCK_SIZE, fs0[1]);
            assertEquals(7, fs0[2], "16 MiB: 8 blocks, one of them metadata");
            assertEquals(7, fs0[3]);
            final int fd = c.open("/guestmemfs/ram", Syscall.O_RDWR | Syscall.O_CREAT);
            c.ftruncate(fd, 5 * MIB);
            assertEquals(5 * MIB, c.stat("/guestmemfs/ram")[1]);
            assertEquals(3 * GmfsLayout.BLOCK_SIZE / 512, c.stat("/guestmemfs/ram")[2], "three 2 MiB blocks");
            assertEquals(4, c.statfs("/guestmemfs")[3]);
            c.ftruncate(fd, MIB);
            assertEquals(6, c.statfs("/guestmemfs")[3], "shrinking freed two blocks");
            final int other = c.open("/guestmemfs/other", Syscall.O_RDWR | Syscall.O_CREAT | Syscall.O_EXCL);
            assertEquals(Errno.ENOSPC.number, errno(() -> c.ftruncate(other, 14 * MIB)), "7 blocks wanted, 6 free");
            assertEquals(0, c.stat("/guestmemfs/other")[1], "a failed grow changes nothing");
            c.ftruncate(other, 12 * MIB);
            assertEquals(0, c.statfs("/guestmemfs")[3]);
            assertEquals(Errno.EEXIST.number, errno(() -> c.open("/guestmemfs/ram", Syscall.O_RDWR | Syscall.O_CREAT | Syscall.O_EXCL)));
            assertEquals(Errno.ENOENT.number, errno(() -> c.open("/guestmemfs/nothing", Syscall.O_RDWR)));
            assertEquals(Errno.ENAMETOOLONG.number, errno(() -> c.open("/guestmemfs/" + "x".repeat(64), Syscall.O_RDWR | Syscall.O_CREAT)));
            assertEquals(List.of("other", "ram"), c.listDir("/guestmemfs"));
            c.close(other);
            c.unlink("/guestmemfs/other");
            assertEquals(6, c.statfs("/guestmemfs")[3]);
            assertEquals(List.of("ram"), c.listDir("/guestmemfs"));
        }
    }

    @Test
    void pinnedBlocksCannotBeFreed() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M");
             SyscallServer server = rig.kernel.serve(dir.resolve("k.sock"));
             KernelClient c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            final Guestmemfs fs = rig.kernel.guestmemfs();
            final int fd = c.open("/guestmemfs/ram", Syscall.O_RDWR | Syscall.O_CREAT);
            c.ftruncate(fd, 6 * MIB);
            final int inode = fs.lookup("ram", false, false, 0);
            fs.pin(inode, 4 * MIB + 4096, 8192); // the third block only
            fs.pin(inode, 4 * MIB, 4096);         // twice: pins are counted
            assertEquals(2, fs.pinsAt("ram", 4 * MIB));
            assertEquals(Errno.EBUSY.number, errno(() -> c.unlink("/guestmemfs/ram")));
            assertEquals(Errno.EBUSY.number, errno(() -> c.ftruncate(fd, 3 * MIB)), "would free the pinned block");
            c.ftruncate(fd, 5 * MIB); // keeps the pinned block: fine
            fs.unpin(inode, 4 * MIB + 4096, 8192);
            assertEquals(Errno.EBUSY.number, errno(() -> c.unlink("/guestmemfs/ram")), "one pin left");
            fs.unpin(inode, 4 * MIB, 4096);
            // Unlinked while open and mapped: the blocks go with the last user.
            final long va = mapShared(c, fd, 4 * MIB);
            c.memory().writeLong(va, 42);
            c.unlink("/guestmemfs/ram");
            assertEquals(List.of(), c.listDir("/guestmemfs"));
            assertEquals(4, c.statfs("/guestmemfs")[3], "still held by the fd and the mapping");
            assertEquals(42, c.memory().readLong(va));
            c.close(fd);
            c.munmap(va, 4 * MIB);
            assertEquals(7, c.statfs("/guestmemfs")[3], "freed with the last user");
        }
    }

    /** A second JVM: maps the file and reports what it sees, then writes a reply. */
    public static final class OtherProcess {
        public static void main(final String[] args) throws Exception {
            try (KernelClient c = KernelClient.connect(Path.of(args[0]), Path.of(args[1]))) {
                final int fd = c.open("/guestmemfs/shared", Syscall.O_RDWR);
                final long va = c.mmap(0, 2 * MIB, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
                System.out.printf("seen %x%n", c.memory().readLong(va + MIB));
                c.memory().writeLong(va + MIB + 8, 0xBEEFL);
            }
        }
    }

    @Test
    void twoProcessesMappingOneFileSeeTheSameBytes() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M");
             SyscallServer server = rig.kernel.serve(dir.resolve("k.sock"));
             KernelClient a = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
             KernelClient b = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            final int fa = a.open("/guestmemfs/shared", Syscall.O_RDWR | Syscall.O_CREAT);
            a.ftruncate(fa, 2 * MIB);
            final long va = mapShared(a, fa, 2 * MIB);
            a.memory().writeLong(va + MIB, 0x1234_5678L);
            final int fb = b.open("/guestmemfs/shared", Syscall.O_RDWR);
            final long vb = mapShared(b, fb, 2 * MIB);
            assertEquals(0x1234_5678L, b.memory().readLong(vb + MIB));
            b.memory().writeLong(vb + 16, 77);
            assertEquals(77, a.memory().readLong(va + 16));
            assertEquals(a.memory().physOf(va), b.memory().physOf(vb), "the same frames, no copy");
            assertEquals(rig.kernel.guestmemfs().phys("shared", 0), a.memory().physOf(va), "the file's block");
            try (ChildJvm child = ChildJvm.start(dir.resolve("child.log"), OtherProcess.class, server.path().toString(),
                    dir.resolve("m").resolve("memory").toString())) {
                assertEquals(0, child.waitFor(60), child.output());
                assertTrue(child.output().contains("seen 12345678"), child.output());
            }
            assertEquals(0xBEEFL, a.memory().readLong(va + MIB + 8), "the other JVM's write");
        }
    }

    @Test
    void deviceDmaLandsInTheFilesBlocks() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M");
             SyscallServer server = rig.kernel.serve(dir.resolve("k.sock"));
             KernelClient c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            final int fd = c.open("/guestmemfs/ram", Syscall.O_RDWR | Syscall.O_CREAT);
            c.ftruncate(fd, 4 * MIB);
            final long va = mapShared(c, fd, 4 * MIB);
            final IommuCore iommu = rig.kernel.iommu();
            final var dev = iommu.device(Bdf.parse("0000:00:02.0"));
            final IommuDomain d = iommu.allocPaging(dev, 0);
            final Guestmemfs fs = rig.kernel.guestmemfs();
            d.map(0, fs.phys("ram", 0), 2 * MIB, IommuDomain.READ | IommuDomain.WRITE);
            d.map(2 * MIB, fs.phys("ram", 2 * MIB), 2 * MIB, IommuDomain.READ | IommuDomain.WRITE);
            iommu.attach(dev, d);
            final DeviceBar bar = rig.bar(0);
            final WorkloadSettings s = WorkloadSettings.writeVerify(MIB, 2 * MIB, 4096, 21);
            bar.start(s);
            bar.awaitSeq(2 * s.slots());
            bar.stop();
            assertEquals(0, bar.counters().faults());
            final RecordChecker.Report r = new RecordChecker(rig.machine.board().memory()).check(bar.window(), d::iovaToPhys);
            assertTrue(r.clean(), r.toString());
            c.memory().flush();
            assertEquals(MIB, c.memory().readLong(va + MIB + DmaRecord.IOVA_OFFSET), "the process sees the device's record");
            assertEquals(21, c.memory().readLong(va + 3 * MIB - 4096 + DmaRecord.GENERATION_OFFSET));
        }
    }

    @Test
    void metadataLivesInTheCarveOut() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M")) {
            final Guestmemfs fs = rig.kernel.guestmemfs();
            fs.createFile("a", 3 * MIB, 0);
            fs.createFile("b", 2 * MIB, 0);
            final int ia = fs.lookup("a", false, false, 0);
            fs.pin(ia, 2 * MIB, 4096);
            final PhysicalMemory mem = rig.machine.board().memory();
            final long base = rig.kernel.guestmemfsRegion().start();
            assertEquals(GmfsLayout.MAGIC, mem.load32(base));
            assertEquals(8, mem.load64(base + GmfsLayout.SB_BLOCKS));
            assertEquals(0b1111L, mem.load64(base + GmfsLayout.BITMAP_OFFSET), "metadata + 2 + 1 blocks in use");
            final long inodeA = base + GmfsLayout.INODE_OFFSET + ia * GmfsLayout.INODE.byteSize();
            assertEquals(3 * MIB, mem.load64(inodeA + GmfsLayout.IN_SIZE));
            assertEquals('a', mem.load32(inodeA + GmfsLayout.IN_NAME) & 0xFF);
            final long blockOfAPart2 = (fs.phys("a", 2 * MIB) - base) >>> GmfsLayout.BLOCK_SHIFT;
            final long rec = base + GmfsLayout.BLOCK_TABLE_OFFSET + blockOfAPart2 * GmfsLayout.BLOCK.byteSize();
            assertEquals(ia + 1, mem.load32(rec + GmfsLayout.BL_OWNER));
            assertEquals(1, mem.load32(rec + GmfsLayout.BL_FILE_BLOCK));
            assertEquals(1, mem.load32(rec + GmfsLayout.BL_PINS));
            // A second mount from memory alone finds the same files, sizes, blocks and pins.
            final Guestmemfs again = Guestmemfs.mount(mem, rig.kernel.guestmemfsRegion(), rig.kernel.log());
            assertEquals(List.of("a", "b"), again.list());
            assertEquals(fs.stat("a"), again.stat("a"));
            assertEquals(fs.phys("b", MIB), again.phys("b", MIB));
            assertEquals(1, again.pinsAt("a", 2 * MIB));
            assertEquals(fs.statfs(), again.statfs());
        }
    }

    @Test
    void filesAndPinsSurviveALiveUpdate() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M")) {
            final Guestmemfs fs = rig.kernel.guestmemfs();
            fs.createFile("ram", 4 * MIB, 0);
            final PhysicalMemory mem = rig.machine.board().memory();
            for (long off = 0; off < 4 * MIB; off += 4096) {
                mem.store64(fs.phys("ram", off), off * 31 + 7);
            }
            fs.pin(fs.lookup("ram", false, false, 0), 0, 3 * MIB);
            rig.kernel.liveUpdate().finalizeHandover();
            assertEquals(Errno.EBUSY, assertThrows(org.iopersist.kernel.KernelException.class,
                    () -> fs.createFile("late", MIB, 0)).errno(), "frozen after finalize");
            rig.kernel.kexecLoad(KernelRig.root(), "guestmemfs=16M");
            rig.kernel.kexec();
            Handovers.checkWithDtc(rig.machine.board());
            final Kernel b = Kernel.boot(rig.machine.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
            final Guestmemfs fsb = b.guestmemfs();
            assertEquals(fs.stat("ram"), fsb.stat("ram"));
            for (long off = 0; off < 4 * MIB; off += 4096) {
                assertEquals(off * 31 + 7, mem.load64(fsb.phys("ram", off)));
            }
            assertEquals(1, fsb.pinsAt("ram", 0));
            assertEquals(1, fsb.pinsAt("ram", 2 * MIB));
            assertEquals(Errno.EBUSY, assertThrows(org.iopersist.kernel.KernelException.class, () -> fsb.unlink("ram")).errno(),
                    "still pinned after the update");
            b.liveUpdate().finish();
            assertEquals(fs.stat("ram"), fsb.stat("ram"), "finish does not touch the claimed carve-out");
            fsb.createFile("new", 2 * MIB, 0);
        }
    }
}
