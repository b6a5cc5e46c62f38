package org.iopersist.kernel.mm.memfd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Fragments;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A memfd's pages are runs of frames, counted by range: what userspace sees (contents through
 * read, write and mmap, PFNs through pagemap, pins) is per page as before, whatever the runs are.
 */
class MemfdRunsTest {
    private static final long PAGE = 4096;
    private static final long MIB = 1L << 20;

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
        rig.assertBooksBalanced("after the memfd runs");
        rig.close();
    }

    /** Each page's frame through pagemap. */
    private long[] frames(final long va, final int pages) {
        final long[] phys = new long[pages];
        for (int i = 0; i < pages; i++) {
            phys[i] = c.memory().physOf(va + i * PAGE);
        }
        return phys;
    }

    /** The pages as (first page, pages) runs contiguous in memory. */
    private static List<long[]> runs(final long[] phys) {
        final List<long[]> out = new ArrayList<>();
        for (int i = 0; i < phys.length; ) {
            int j = i + 1;
            while (j < phys.length && phys[j] == phys[j - 1] + PAGE) {
                j++;
            }
            out.add(new long[] {i, j - i});
            i = j;
        }
        return out;
    }

    private static byte[] pattern(final int page) {
        final byte[] b = new byte[(int) PAGE];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (page * 31 + i * 7);
        }
        return b;
    }

    @Test
    void growthTakesTheLargestRunAlignedInTheFileAndInMemory() {
        final FrameRefs refs = rig.kernel.frameRefs();
        final int runsBefore = refs.runs();
        final long allocatedBefore = rig.kernel.frames().stats().allocatedFrames();
        final int fd = c.memfdCreate("big", Syscall.MFD_ALLOW_SEALING);
        final int pages = 1539; // 6 MiB and 3 pages: a 4 MiB run, a 2 MiB run, 2 pages, 1 page
        c.ftruncate(fd, pages * PAGE);
        assertEquals(allocatedBefore + pages, rig.kernel.frames().stats().allocatedFrames());
        final long va = c.mmap(0, pages * PAGE, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
        final long[] phys = frames(va, pages);
        assertEquals(0, phys[0] % (4 * MIB), "page 0 starts an order-10 run");
        assertEquals(0, phys[1024] % (2 * MIB), "page 1024 starts an order-9 run");
        assertEquals(0, phys[1536] % (2 * PAGE), "page 1536 starts an order-1 run");
        for (int i = 1; i < 1024; i++) {
            assertEquals(phys[0] + i * PAGE, phys[i], "the 4 MiB run is contiguous");
        }
        assertEquals(Set.of(), duplicates(phys));
        assertTrue(refs.runs() - runsBefore <= 4, "the books hold " + (refs.runs() - runsBefore) + " runs for 4 pieces");
        assertEquals(1, refs.count(phys[700]), "the file's reference");

        // write(2) across a run boundary, seen through the mapping; a store through the mapping seen by read(2).
        final byte[] data = new byte[6000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 13 + 5);
        }
        c.lseek(fd, 1024 * PAGE - 3000, 0);
        assertEquals(data.length, c.write(fd, data));
        assertArrayEquals(data, c.memory().readBytes(va + 1024 * PAGE - 3000, data.length));
        c.memory().writeBytes(va + 1535 * PAGE, pattern(1535));
        c.memory().writeBytes(va + 1538 * PAGE, pattern(1538));
        c.lseek(fd, 1535 * PAGE, 0);
        assertArrayEquals(pattern(1535), c.read(fd, (int) PAGE));
        c.lseek(fd, 1538 * PAGE, 0);
        assertArrayEquals(pattern(1538), c.read(fd, (int) (2 * PAGE)), "a read stops at the end of the file");

        // Shrinking cuts runs in the middle: what is cut goes back to the allocator, what is kept stays.
        c.munmap(va, pages * PAGE);
        c.ftruncate(fd, 5 * PAGE + 100);
        assertEquals(allocatedBefore + 6, rig.kernel.frames().stats().allocatedFrames(), "6 pages kept of 1539");
        assertEquals(0, refs.count(phys[6]));
        assertEquals(1, refs.count(phys[5]));
        c.ftruncate(fd, 8 * PAGE);
        final long va2 = c.mmap(0, 8 * PAGE, Syscall.PROT_READ, Syscall.MAP_SHARED, fd, 0);
        final long[] again = frames(va2, 8);
        assertArrayEquals(Arrays.copyOf(phys, 6), Arrays.copyOf(again, 6), "the kept pages did not move");
        assertEquals(0, again[6] % (2 * PAGE), "index 6 takes an order-1 run");
        assertArrayEquals(new byte[(int) PAGE], c.memory().readBytes(va2 + 6 * PAGE, (int) PAGE), "grown pages are zero");
        c.munmap(va2, 8 * PAGE);
        c.close(fd);
        assertEquals(allocatedBefore, rig.kernel.frames().stats().allocatedFrames(), "closing it freed every frame");
        assertEquals(runsBefore, refs.runs());
    }

    @Test
    void aFragmentedAllocatorGivesRunsNotAlignedToTheirSizesAndPagesStillBehaveAsPages() {
        final int fd = c.memfdCreate("frag", 0);
        final Fragments f = Fragments.exhaust(rig.kernel.frames());
        final Set<Long> holes = new HashSet<>();
        try {
            f.freeHoles(3);
            // One page at a time, so every run is the allocator's next free frame.
            for (int i = 0; i < 21; i++) {
                c.ftruncate(fd, (i + 1) * PAGE);
            }
        } finally {
            f.release();
        }
        c.ftruncate(fd, 21 * PAGE + 3 * MIB); // and the rest in large runs from memory that is free again
        final int pages = 21 + 768;
        final long va = c.mmap(0, pages * PAGE, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
        final long[] phys = frames(va, pages);
        final List<long[]> runs = runs(phys);
        assertTrue(runs.size() >= 4, "a fragmented memfd: " + runs.size() + " runs");
        assertTrue(runs.stream().anyMatch(r -> r[1] > 1 && (phys[(int) r[0]] / PAGE) % Long.highestOneBit(r[1] * 2 - 1) != 0),
                "some run is not aligned to its size");
        assertEquals(Set.of(), duplicates(phys));
        for (int i = 0; i < 21; i++) {
            holes.add(phys[i]);
        }
        assertEquals(21, holes.size());
        // Every page through write(2), then read back through the mapping and through read(2).
        for (int i = 0; i < pages; i += 7) {
            c.lseek(fd, i * PAGE, 0);
            c.write(fd, pattern(i));
        }
        for (int i = 0; i < pages; i += 7) {
            assertArrayEquals(pattern(i), c.memory().readBytes(va + i * PAGE, (int) PAGE), "page " + i + " through mmap");
            c.lseek(fd, i * PAGE, 0);
            assertArrayEquals(pattern(i), c.read(fd, (int) PAGE), "page " + i + " through read");
        }
        c.munmap(va, pages * PAGE);
        c.close(fd);
    }

    @Test
    void mapFileOfPartOfARunPinsThatPartAndUnmapMergesTheRunAgain() {
        final FrameRefs refs = rig.kernel.frameRefs();
        final int runsNone = refs.runs();
        final int fd = c.memfdCreate("ram", Syscall.MFD_ALLOW_SEALING);
        c.ftruncate(fd, 2 * MIB);
        final long va = c.mmap(0, 2 * MIB, Syscall.PROT_READ, Syscall.MAP_SHARED, fd, 0);
        final long[] phys = frames(va, 512);
        c.munmap(va, 2 * MIB);
        assertEquals(1, runs(phys).size(), "one 2 MiB run");
        final int runsBefore = refs.runs();
        final IommufdHandle iommufd = IommufdHandle.open(c);
        final int ioas = iommufd.ioasAlloc();
        final VfioDeviceHandle d = VfioDeviceHandle.open(c, 0);
        d.bind(iommufd);
        d.attach(ioas); // with a domain attached, a mapping pins its pages
        iommufd.mapFileFixed(ioas, fd, 3 * PAGE, 5 * PAGE, 0x10_0000);
        assertEquals(runsBefore + 2, refs.runs(), "pages 0-2, 3-7 (pinned), 8-511");
        for (int i = 0; i < 12; i++) {
            final boolean pinned = i >= 3 && i < 8;
            assertEquals(pinned ? 2 : 1, refs.count(phys[i]), "page " + i);
            assertEquals(pinned ? 1 : 0, refs.pins(phys[i]), "page " + i);
        }
        iommufd.mapFileFixed(ioas, fd, 6 * PAGE, 4 * PAGE, 0x20_0000); // overlaps the first in pages 6-7
        assertEquals(runsBefore + 4, refs.runs(), "0-2, 3-5, 6-7, 8-9, 10-511");
        assertEquals(2, refs.pins(phys[7]));
        assertEquals(1, refs.pins(phys[9]));
        assertEquals(0, refs.pins(phys[10]));
        assertEquals(5 * PAGE, iommufd.unmap(ioas, 0x10_0000, 5 * PAGE));
        assertEquals(runsBefore + 2, refs.runs(), "0-5, 6-9 (pinned), 10-511");
        assertEquals(1, refs.pins(phys[6]));
        assertEquals(0, refs.pins(phys[5]));

        // Closing the file drops its reference: the pinned pages stay for the device, the rest are free.
        c.close(fd);
        assertEquals(1, refs.count(phys[8]), "the pin's reference");
        assertEquals(0, refs.count(phys[0]), "the file's pages no area pins are free");
        assertEquals(0, refs.count(phys[511]));
        assertEquals(0, refs.count(phys[10]));
        assertEquals(4 * PAGE, iommufd.unmap(ioas, 0x20_0000, 4 * PAGE));
        assertEquals(0, refs.count(phys[8]), "the last unpin freed them");
        assertEquals(runsNone, refs.runs(), "the books are as before the file (the runs are maximal, so the same)");
        d.close();
        iommufd.close();
    }

    private static Set<Long> duplicates(final long[] phys) {
        final Set<Long> seen = new HashSet<>();
        final Set<Long> dup = new HashSet<>();
        for (long p : phys) {
            if (!seen.add(p)) {
                dup.add(p);
            }
        }
        return dup;
    }
}
