package org.iopersist.kernel.liveupdate.luo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.testing.Fragments;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * memfd preservation ({@code memfd-v2}): the pages stay in their frames through the kexec, and
 * RETRIEVE_FD gives a memfd with the same contents, size, position and seals. Guest RAM can be such
 * a memfd, mapped for DMA by file.
 */
class MemfdLuoTest {
    private static final long MIB = 1L << 20;
    private static final long PAGE = 4096;
    private static final String CMDLINE = "liveupdate.finish_timeout=0";

    @TempDir
    Path dir;

    private KernelRig boot() {
        return KernelRig.boot(dir.resolve("m"), MachineConfig.small(), CMDLINE);
    }

    @Test
    void aPreservedMemfdComesBackInTheSameFramesWithItsSizePositionAndSeals() throws Exception {
        try (KernelRig rig = boot()) {
            final KernelClient vmm = rig.connect(rig.kernel);
            final int fd = vmm.memfdCreate("ram", Syscall.MFD_ALLOW_SEALING);
            final long size = 40 * PAGE + 123;
            vmm.ftruncate(fd, size);
            final long va = vmm.mmap(0, 41 * PAGE, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
            final long[] phys = new long[41];
            final byte[] pattern = new byte[(int) PAGE];
            for (int i = 0; i < 41; i++) {
                java.util.Arrays.fill(pattern, (byte) (i * 7 + 1));
                vmm.memory().writeBytes(va + i * PAGE, pattern);
                phys[i] = vmm.memory().physOf(va + i * PAGE);
            }
            vmm.munmap(va, 41 * PAGE);
            vmm.fcntl(fd, Syscall.F_ADD_SEALS, GuestRam.MEMFD_SEALS | Syscall.F_SEAL_FUTURE_WRITE);
            vmm.lseek(fd, 4321, 0);
            final SessionHandle s = LiveupdateHandle.open(vmm).createSession("vm0");
            s.preserveFd(fd, 0x42);
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();
            assertTrue(Handovers.checkWithDtc(rig.machine.board()).get("LUO").contains("compatible = \"memfd-v2\""));

            final Kernel b = rig.bootNext();
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
            try (KernelClient v2 = rig.connect(b)) {
                final SessionHandle r = LiveupdateHandle.open(v2).retrieveSession("vm0");
                final int fd2 = r.retrieveFd(0x42);
                assertEquals(GuestRam.MEMFD_SEALS | Syscall.F_SEAL_FUTURE_WRITE, v2.fcntl(fd2, Syscall.F_GET_SEALS, 0), "the seals");
                assertEquals(4321, v2.lseek(fd2, 0, 1), "the position");
                assertEquals(size, v2.lseek(fd2, 0, 2), "the size");
                final int again = r.retrieveFd(0x42);
                assertEquals(size, v2.lseek(again, 0, 1), "retrieving it again gives the same open file (one position)");
                v2.close(again);
                final long va2 = v2.mmap(0, 41 * PAGE, Syscall.PROT_READ, Syscall.MAP_SHARED, fd2, 0);
                for (int i = 0; i < 41; i++) {
                    java.util.Arrays.fill(pattern, (byte) (i * 7 + 1));
                    assertArrayEquals(pattern, v2.memory().readBytes(va2 + i * PAGE, (int) PAGE), "page " + i);
                    assertEquals(phys[i], v2.memory().physOf(va2 + i * PAGE), "page " + i + " never moved");
                }
                assertEquals(Errno.EPERM.number, org.junit.jupiter.api.Assertions.assertThrows(ErrnoException.class,
                        () -> v2.ftruncate(fd2, 0)).errno(), "still F_SEAL_SHRINK");
                r.finish();
                assertEquals(1, b.frameRefs().count(phys[3]), "the retrieved memfd holds its frames");
            }
            assertEquals(0, b.frameRefs().count(phys[3]), "the last user closed it: the frame is free");
            rig.server(b).close();
        }
    }

    @Test
    void guestRamCanBeAMemfdMappedForDmaByFile() throws Exception {
        try (KernelRig rig = boot()) {
            try (KernelClient vmm = rig.connect(rig.kernel)) {
                final GuestRam ram = GuestRam.createMemfd(vmm, "vm0-ram", 8 * MIB);
                assertTrue(ram.memfd());
                assertEquals(GuestRam.MEMFD_SEALS, vmm.fcntl(ram.fd(), Syscall.F_GET_SEALS, 0));
                final IommufdHandle iommufd = IommufdHandle.open(vmm);
                final int ioas = iommufd.ioasAlloc();
                ram.mapForDma(iommufd, ioas, 1); // IOMMU_IOAS_MAP_FILE: by fd and offset
                final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, 0);
                d.bind(iommufd);
                d.attach(ioas);
                final DeviceBar bar = rig.bar(0);
                bar.start(WorkloadSettings.writeVerify(MIB, MIB, 512, 1));
                bar.awaitSeq(500);
                bar.stop();
                final DeviceCounters c = bar.counters();
                assertEquals(0, c.faults() + c.corrupt(), c.toString());
                final RecordChecker.Report r = new RecordChecker(rig.machine.board().memory()).check(bar.window(), ram::physOf);
                assertTrue(r.clean(), r.toString());
            }
            rig.server(rig.kernel).close();
        }
    }

    /**
     * A memfd made on a fragmented allocator: its runs start at odd frames and are not aligned to
     * their lengths, so each is handed over as several blocks of different orders. Preserve,
     * validation and adopt split each run the same way; the pages come back in the same frames with
     * the same contents, and the tracker holds O(runs · log) blocks, not one per page.
     */
    @Test
    void aMemfdOfRunsNotAlignedToTheirSizesComesBackBlockByBlock() throws Exception {
        try (KernelRig rig = boot()) {
            final Kernel a = rig.kernel;
            final KernelClient vmm = rig.connect(a);
            final int fd = vmm.memfdCreate("ram", Syscall.MFD_ALLOW_SEALING);
            final Fragments f = Fragments.exhaust(a.frames());
            try {
                f.freeHoles(3);
                for (int i = 0; i < 21; i++) {
                    vmm.ftruncate(fd, (i + 1) * PAGE); // each page the allocator's next free frame
                }
            } finally {
                f.release();
            }
            final int pages = 21 + 1000;
            vmm.ftruncate(fd, pages * PAGE - 7);
            final long va = vmm.mmap(0, pages * PAGE, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
            final long[] phys = new long[pages];
            final byte[] pattern = new byte[(int) PAGE];
            int runs = 1;
            boolean unaligned = false;
            int runStart = 0;
            for (int i = 0; i < pages; i++) {
                java.util.Arrays.fill(pattern, (byte) (i * 7 + 1));
                vmm.memory().writeBytes(va + i * PAGE, pattern);
                phys[i] = vmm.memory().physOf(va + i * PAGE);
                if (i > 0 && phys[i] != phys[i - 1] + PAGE) {
                    unaligned |= i - runStart > 1 && (phys[runStart] / PAGE) % Long.highestOneBit((i - runStart) * 2L - 1) != 0;
                    runs++;
                    runStart = i;
                }
            }
            assertTrue(runs >= 4 && unaligned, runs + " runs, one not aligned to its size: " + unaligned);
            vmm.munmap(va, pages * PAGE);
            vmm.fcntl(fd, Syscall.F_ADD_SEALS, GuestRam.MEMFD_SEALS);
            final long preservedBefore = a.liveUpdate().kho().preservedFrames();
            final SessionHandle s = LiveupdateHandle.open(vmm).createSession("vm0");
            s.preserveFd(fd, 7);
            assertEquals(pages, a.liveUpdate().kho().preservedFrames() - preservedBefore, "every frame preserved, once");
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();

            final Kernel b = rig.bootNext();
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
            try (KernelClient v2 = rig.connect(b)) {
                final SessionHandle r = LiveupdateHandle.open(v2).retrieveSession("vm0");
                final int fd2 = r.retrieveFd(7);
                assertEquals(pages * PAGE - 7, v2.lseek(fd2, 0, 2));
                final long va2 = v2.mmap(0, pages * PAGE, Syscall.PROT_READ, Syscall.MAP_SHARED, fd2, 0);
                for (int i = 0; i < pages; i++) {
                    java.util.Arrays.fill(pattern, (byte) (i * 7 + 1));
                    assertEquals(phys[i], v2.memory().physOf(va2 + i * PAGE), "page " + i + " never moved");
                    assertArrayEquals(pattern, v2.memory().readBytes(va2 + i * PAGE, (int) PAGE), "page " + i);
                }
                assertTrue(b.frameRefs().runs() <= runs + 8, b.frameRefs().runs() + " runs in the books for " + runs);
                r.finish();
            }
            assertEquals(0, b.frameRefs().count(phys[0]), "closed: the frames are free");
            assertEquals(0, b.frameRefs().count(phys[pages - 1]));
            rig.server(b).close();
        }
    }
}
