package org.iopersist.kernel.guestmemfs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
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
    private static final long GIB = 1L << 30;
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
            // As Linux's path walk: the mount point is a directory, a file is not, a missing name is not there.
            assertEquals(Errno.EISDIR.number, errno(() -> c.open("/guestmemfs", Syscall.O_RDWR)));
            assertEquals(Errno.ENOTDIR.number, errno(() -> c.open("/guestmemfs/ram", Syscall.O_RDONLY | Syscall.O_DIRECTORY)));
            assertEquals(Errno.ENOENT.number, errno(() -> c.open("/guestmemfs/nothing", Syscall.O_RDONLY | Syscall.O_DIRECTORY)));
            assertEquals(Errno.ENOENT.number, errno(() -> c.statfs("/guestmemfs/nothing")));
            assertEquals(GuestmemfsMount.MAGIC, c.statfs("/guestmemfs/ram")[0]);
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
            assertEquals(GmfsLayout.VERSION, mem.load32(base + GmfsLayout.SB_VERSION));
            assertEquals(8, mem.load64(base + GmfsLayout.SB_BLOCKS));
            assertEquals(1, mem.load64(base + GmfsLayout.SB_META_BLOCKS));
            assertEquals(0b1111L, mem.load64(base + GmfsLayout.BITMAP_OFFSET), "metadata + 2 + 1 blocks in use");
            final long inodeA = base + GmfsLayout.INODE_OFFSET + ia * GmfsLayout.INODE.byteSize();
            assertEquals(3 * MIB, mem.load64(inodeA + GmfsLayout.IN_SIZE));
            assertEquals('a', mem.load32(inodeA + GmfsLayout.IN_NAME) & 0xFF);
            // a: one extent of two blocks, split by the pin of its second; b: one extent.
            assertEquals(3, mem.load64(base + GmfsLayout.SB_EXTENTS));
            final long blockOfAPart2 = (fs.phys("a", 2 * MIB) - base) >>> GmfsLayout.BLOCK_SHIFT;
            final long table = base + mem.load64(base + GmfsLayout.SB_EXTENT_TABLE);
            long rec = -1;
            for (int s = 0; s < 3; s++) {
                final long r = table + s * GmfsLayout.EXTENT.byteSize();
                if (mem.load32(r + GmfsLayout.EX_OWNER) == ia + 1 && mem.load64(r + GmfsLayout.EX_FILE_BLOCK) == 1) {
                    rec = r;
                }
            }
            assertTrue(rec >= 0, "an extent starts at a's second block");
            assertEquals(blockOfAPart2, mem.load64(rec + GmfsLayout.EX_BLOCK));
            assertEquals(1, mem.load64(rec + GmfsLayout.EX_COUNT));
            assertEquals(1, mem.load32(rec + GmfsLayout.EX_PINS));
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

    private static void assertGibRuns(final Guestmemfs.FileMap map) {
        for (Guestmemfs.Run r : map.runs()) {
            assertEquals(0, r.offset() % GIB, "run " + r);
            assertEquals(0, r.phys() % GIB, "run " + r + " is 1 GiB-aligned in memory");
            assertEquals(0, r.length() % GIB, "run " + r);
        }
        assertEquals(map.size(), map.runs().stream().mapToLong(Guestmemfs.Run::length).sum());
    }

    @Test
    void creatingAFileZeroesItWithoutWritingIt() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small().withMemorySize(4 * GIB), "guestmemfs=3G")) {
            final Guestmemfs fs = rig.kernel.guestmemfs();
            final PhysicalMemory mem = rig.machine.board().memory();
            final long before = mem.allocatedBytes();
            fs.createFile("ram", GIB, 0);
            final long created = mem.allocatedBytes();
            assertTrue(created - before <= MIB, "creating 1 GiB took " + (created - before) + " bytes of disk");
            assertGibRuns(fs.map("ram"));
            final long phys = fs.phys("ram", 0);
            for (long off = 0; off < GIB; off += 16 * MIB) {
                mem.store64(fs.phys("ram", off + 4096), ~off); // a guest wrote into every 8th block
            }
            assertTrue(mem.allocatedBytes() - created >= 64 * 4096, "the guest's writes cost disk");
            fs.unlink("ram");
            fs.createFile("again", GIB, 0);
            assertEquals(phys, fs.phys("again", 0), "the same blocks, reused");
            for (long off = 0; off < GIB; off += 16 * MIB) {
                assertEquals(0, mem.load64(fs.phys("again", off + 4096)), "reads zero at 0x" + Long.toHexString(off));
            }
            assertTrue(mem.allocatedBytes() - before <= MIB, "re-zeroing gave the disk back: " + (mem.allocatedBytes() - before));
        }
    }

    /** The size ftruncate grows to, past v1's 64 GiB limit; memory is sparse, so this costs no disk. */
    private static final long BIG = 70 * GIB + 3 * MIB;

    @Test
    void aFileLargerThan64GiBSurvivesALiveUpdateInGibRuns() throws Exception {
        final MachineConfig config = MachineConfig.small().withMemorySize(160 * GIB);
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), config, "guestmemfs=150G")) {
            final Guestmemfs fs = rig.kernel.guestmemfs();
            final PhysicalMemory mem = rig.machine.board().memory();
            final long disk = mem.allocatedBytes();
            fs.createFile("small", 3 * MIB, 0); // goes where the metadata already broke a GiB
            try (SyscallServer server = rig.kernel.serve(dir.resolve("k.sock"));
                 KernelClient c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                final int fd = c.open("/guestmemfs/big", Syscall.O_RDWR | Syscall.O_CREAT);
                c.ftruncate(fd, BIG);
                assertEquals(BIG, c.stat("/guestmemfs/big")[1]);
                assertEquals(Errno.EFBIG.number, errno(() -> c.ftruncate(fd, 151 * GIB)));
                c.close(fd);
            }
            final Guestmemfs.FileMap map = fs.map("big");
            final List<Guestmemfs.Run> gibs = map.runs().subList(0, map.runs().size() - 1);
            assertGibRuns(new Guestmemfs.FileMap(70 * GIB, gibs));
            assertEquals(3 * MIB, map.runs().getLast().length(), "the tail that is no whole GiB");
            assertTrue(map.runs().getLast().phys() < 11 * GIB, "goes into the GiB the metadata broke, as the small file did");
            assertTrue(fs.extents() <= 72, "extents, not blocks: " + fs.extents());
            assertTrue(mem.allocatedBytes() - disk <= 71 * MIB, "creating 70 GiB took " + (mem.allocatedBytes() - disk) + " bytes");
            for (long g = 0; g < 70; g += 7) {
                mem.store64(fs.phys("big", g * GIB + 8 * g), g * 1001 + 1);
            }
            mem.store64(fs.phys("big", BIG - 8), 0xE11DL);
            final int inode = fs.lookup("big", false, false, 0);
            fs.pin(inode, 65 * GIB - MIB, 2 * MIB); // across a GiB boundary: splits two runs
            final int extents = fs.extents();
            final Guestmemfs.Stat stat = fs.stat("big");
            rig.kernel.liveUpdate().finalizeHandover();
            assertEquals(Errno.EBUSY, assertThrows(org.iopersist.kernel.KernelException.class,
                    () -> fs.truncate(inode, GIB)).errno(), "frozen after finalize");
            rig.kernel.kexecLoad(KernelRig.root(), "guestmemfs=150G");
            rig.kernel.kexec();
            final Map<String, String> dts = Handovers.checkWithDtc(rig.machine.board());
            assertTrue(dts.get(GuestmemfsLiveUpdate.NAME).contains("\"guestmemfs-v2\""), dts.get(GuestmemfsLiveUpdate.NAME));
            final Kernel b = Kernel.boot(rig.machine.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
            final Guestmemfs fsb = b.guestmemfs();
            assertEquals(stat, fsb.stat("big"));
            assertEquals(map, fsb.map("big"));
            assertEquals(extents, fsb.extents());
            for (long g = 0; g < 70; g += 7) {
                assertEquals(g * 1001 + 1, mem.load64(fsb.phys("big", g * GIB + 8 * g)));
            }
            assertEquals(0xE11DL, mem.load64(fsb.phys("big", BIG - 8)));
            assertEquals(1, fsb.pinsAt("big", 65 * GIB - MIB));
            assertEquals(1, fsb.pinsAt("big", 65 * GIB));
            assertEquals(0, fsb.pinsAt("big", 65 * GIB + 2 * MIB));
            assertEquals(Errno.EBUSY, assertThrows(org.iopersist.kernel.KernelException.class, () -> fsb.unlink("big")).errno());
            b.liveUpdate().finish();
            fsb.unpin(fsb.lookup("big", false, false, 0), 65 * GIB - MIB, 2 * MIB);
            assertEquals(extents - 2, fsb.extents(), "unpinning merges the split runs back");
            assertGibRuns(new Guestmemfs.FileMap(70 * GIB, fsb.map("big").runs().subList(0, fsb.map("big").runs().size() - 1)));
            fsb.unlink("big");
            assertEquals(1, fsb.extents());
        }
    }

    @Test
    void theCarveOutIsPreservedAsFewLargeBlocks() {
        for (org.iopersist.kernel.mm.PhysRange r : List.of(new org.iopersist.kernel.mm.PhysRange(10 * GIB, 150 * GIB),
                new org.iopersist.kernel.mm.PhysRange(240 * MIB, 16 * MIB), new org.iopersist.kernel.mm.PhysRange(2 * MIB, GIB))) {
            final List<long[]> blocks = GuestmemfsLiveUpdate.blocks(r);
            long next = r.start();
            for (long[] b : blocks) {
                assertEquals(next, b[0], "blocks tile " + r);
                assertTrue(b[1] >= 9, "order " + b[1]);
                assertEquals(0, b[0] & ((4096L << b[1]) - 1), "naturally aligned");
                next += 4096L << b[1];
            }
            assertEquals(r.end(), next);
            assertTrue(blocks.size() <= 2 * 22, r + " in " + blocks.size() + " blocks");
        }
    }

    @Test
    void aVersion1HandoverColdBoots() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M")) {
            rig.kernel.guestmemfs().createFile("ram", 4 * MIB, 0);
            rig.kernel.liveUpdate().finalizeHandover();
            rig.kernel.kexecLoad(KernelRig.root(), "guestmemfs=16M");
            rig.kernel.kexec();
            // What a kernel with the old format hands over: its compatible string.
            final var blob = Handovers.subtree(rig.machine.board(), GuestmemfsLiveUpdate.NAME);
            final var value = blob.value(blob.property(blob.root(), "compatible"));
            final byte[] v1 = "guestmemfs-v1".getBytes(StandardCharsets.US_ASCII);
            for (int k = 0; k < v1.length; k++) {
                value.set(java.lang.foreign.ValueLayout.JAVA_BYTE, k, v1[k]);
            }
            Handovers.reseal(rig.machine.board(), GuestmemfsLiveUpdate.NAME);
            final Kernel b = Kernel.boot(rig.machine.board());
            assertEquals(Kernel.BootKind.COLD, b.bootKind());
            assertTrue(b.coldBootReason().contains("guestmemfs-v1") && b.coldBootReason().contains("guestmemfs-v2"),
                    b.coldBootReason());
            assertEquals(List.of(), b.guestmemfs().list(), "formatted anew");
        }
    }

    @Test
    void aSuperblockOfAnotherVersionDoesNotMount() throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), CONFIG, "guestmemfs=16M")) {
            final PhysicalMemory mem = rig.machine.board().memory();
            final long base = rig.kernel.guestmemfsRegion().start();
            mem.store32Release(base + GmfsLayout.SB_VERSION, 1);
            final var e = assertThrows(org.iopersist.kernel.liveupdate.kho.HandoverFormatException.class,
                    () -> Guestmemfs.mount(mem, rig.kernel.guestmemfsRegion(), rig.kernel.log()));
            assertTrue(e.getMessage().contains("version 1"), e.getMessage());
        }
    }

    /** A small carve-out that a 1 GiB boundary cuts: no whole GiB, runs of 2 MiB blocks only. */
    @Test
    void randomChangesMountBackTheSame() throws Exception {
        randomChanges(GIB + 64 * MIB, "guestmemfs=96M", 20 * MIB, 400, 20);
    }

    /** Three GiBs, files up to 1.5 GiB: whole GiBs are taken, broken and freed again. */
    @Test
    void randomChangesAcrossWholeGibsMountBackTheSame() throws Exception {
        randomChanges(4 * GIB, "guestmemfs=3G", 1536 * MIB, 150, 21);
    }

    /**
     * Random creates, truncates, pins and unlinks: after each step the filesystem mounted again
     * from memory alone is the same, pins are what the ranges pinned say, and no block belongs to
     * two files.
     */
    private void randomChanges(final long memory, final String cmdline, final long maxSize, final int steps, final long seed)
            throws Exception {
        try (KernelRig rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small().withMemorySize(memory), cmdline)) {
            final Guestmemfs fs = rig.kernel.guestmemfs();
            final PhysicalMemory mem = rig.machine.board().memory();
            final Random rnd = new Random(seed);
            final Map<String, List<long[]>> pins = new HashMap<>();
            final List<String> names = List.of("a", "b", "c", "d", "e");
            for (int step = 0; step < steps; step++) {
                final String name = names.get(rnd.nextInt(names.size()));
                final boolean exists = fs.list().contains(name);
                final int op = rnd.nextInt(10);
                try {
                    if (!exists) {
                        fs.createFile(name, rnd.nextLong(maxSize), 0);
                        pins.put(name, new ArrayList<>());
                    } else if (op < 4) {
                        // Never below a pinned range: the test unpins by the ranges it pinned.
                        final long floor = pins.get(name).stream().mapToLong(p -> p[0] + p[1]).max().orElse(0);
                        fs.truncate(fs.lookup(name, false, false, 0), Math.max(floor, rnd.nextLong(2 * maxSize)));
                    } else if (op < 7 && fs.stat(name).size() > 0) {
                        final long size = fs.stat(name).size();
                        final long off = rnd.nextLong(size);
                        final long len = 1 + rnd.nextLong(size - off);
                        fs.pin(fs.lookup(name, false, false, 0), off, len);
                        pins.get(name).add(new long[] {off, len});
                    } else if (op < 9 && !pins.get(name).isEmpty()) {
                        final long[] p = pins.get(name).remove(rnd.nextInt(pins.get(name).size()));
                        fs.unpin(fs.lookup(name, false, false, 0), p[0], p[1]);
                    } else {
                        fs.unlink(name);
                        pins.remove(name);
                    }
                } catch (org.iopersist.kernel.KernelException e) {
                    assertTrue(e.errno() == Errno.ENOSPC || e.errno() == Errno.EBUSY, e.toString());
                }
                final Guestmemfs again = Guestmemfs.mount(mem, rig.kernel.guestmemfsRegion(), rig.kernel.log());
                assertEquals(fs.list(), again.list(), "step " + step);
                assertEquals(fs.statfs(), again.statfs(), "step " + step);
                assertEquals(fs.extents(), again.extents(), "step " + step);
                long used = 0;
                final java.util.TreeMap<Long, Long> taken = new java.util.TreeMap<>();
                for (String n : fs.list()) {
                    assertEquals(fs.stat(n), again.stat(n));
                    final Guestmemfs.FileMap m = fs.map(n);
                    assertEquals(m, again.map(n));
                    for (long off = 0; off < m.size(); off += 2 * MIB) {
                        final long block = off >> 21;
                        assertEquals(fs.pinsAt(n, off), again.pinsAt(n, off));
                        assertEquals(pins.get(n).stream().filter(p -> p[0] >> 21 <= block && block <= (p[0] + p[1] - 1) >> 21).count(),
                                fs.pinsAt(n, off), n + " block at " + off);
                    }
                    for (Guestmemfs.Run r : m.runs()) {
                        final long start = r.phys();
                        final long end = (r.phys() + r.length() + 2 * MIB - 1) & -(2 * MIB);
                        final Map.Entry<Long, Long> before = taken.floorEntry(end - 1);
                        assertTrue(before == null || before.getValue() <= start, "blocks shared at 0x" + Long.toHexString(start));
                        taken.put(start, end);
                    }
                    used += fs.stat(n).blocks();
                }
                assertEquals(fs.statfs().blocks() - used, fs.statfs().freeBlocks(), "step " + step);
            }
        }
    }
}
