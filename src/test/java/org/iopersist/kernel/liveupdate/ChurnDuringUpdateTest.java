package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadMode;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.init.Accounting;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Reach;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * 16 VMM processes, each with its own iommufd and device on one remapping unit (a small IOTLB and
 * context cache, so entries are evicted and refilled all the time), churn while their devices write
 * unpaced: map and unmap 64 KiB pieces of their memory, replace their device between two domains
 * over the same IOAS, block it and attach it again (the devices are paced, or 16 device threads
 * would starve the VMMs on a 2-core host). VMM 0's context is persistent and live-updates
 * in the middle of it; the others go on until the kexec ends them.
 *
 * <p>After every unmap returns, the pages that were behind it get canaries: the invalidation and the
 * drain are done, so a device write that still lands there came through a stale IOTLB entry. Every
 * canary is checked before its pages are mapped again, and at the end. The driver's shared state is
 * checked after the churn: no half state between kernel and hardware, nothing a device reaches on a
 * free list, each process charged what its areas pin, and once every VMM is gone the books are back
 * at the baseline. VMM 0's device comes through the update on its tables, records in place.
 */
class ChurnDuringUpdateTest {
    private static final long MIB = 1L << 20;
    private static final long KIB = 1L << 10;
    private static final int VMMS = 16;
    private static final long BUFFER = 64 * KIB;
    private static final long PIECE = 16 * KIB;
    /**
     * 16 device threads unpaced (or finely paced, which spins) would take both CPUs of a small host
     * from the VMMs: 2000 page-sized records a second each, so a device comes round its 16 pages
     * every 8 ms.
     */
    private static final long PACE_NANOS = 500_000;
    private static final int RECORD = 4096;
    private static final String CMDLINE = "guestmemfs=32M liveupdate.finish_timeout=0 page_poison=on";

    @TempDir
    Path dir;

    /** One churning VMM: its memory, the pieces mapped now, the canaried ones. */
    private final class Churner implements Runnable {
        final int index;
        final KernelClient c;
        final IommufdHandle fd;
        final VfioDeviceHandle dev;
        final int ioas;
        final int hwptB;
        final long va;
        final boolean[] mapped = new boolean[(int) (BUFFER / PIECE)];
        final boolean[] canaried = new boolean[mapped.length];
        final SplittableRandom rng;
        long ops;

        Churner(final int index, final SyscallServer server, final long seed) throws Exception {
            this.index = index;
            this.rng = new SplittableRandom(seed);
            c = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"));
            fd = IommufdHandle.open(c);
            ioas = fd.ioasAlloc();
            va = c.mmapAnonymous(BUFFER);
            for (int p = 0; p < mapped.length; p++) {
                fd.mapFixed(ioas, va + p * PIECE, PIECE, p * PIECE);
                mapped[p] = true;
            }
            dev = VfioDeviceHandle.open(c, index);
            dev.bind(fd);
            dev.attach(ioas);
            hwptB = fd.hwptAlloc(dev.devId(), ioas); // a second domain over the same IOAS
        }

        @Override
        public void run() {
            try {
                while (!stop.get()) {
                    step();
                    ops++;
                }
            } catch (RuntimeException | AssertionError | InterruptedException e) {
                if (!stop.get()) {
                    problems.add("vmm " + index + ": " + e);
                }
            }
        }

        void step() throws InterruptedException {
            switch (rng.nextInt(10)) {
                case 0 -> dev.attach(rng.nextBoolean() ? hwptB : ioas); // replace between the two domains
                case 1 -> {
                    dev.detach();
                    dev.attach(rng.nextBoolean() ? ioas : hwptB);
                }
                default -> {
                    final int p = rng.nextInt(mapped.length);
                    if (mapped[p]) {
                        assertEquals(PIECE, fd.unmap(ioas, p * PIECE, PIECE));
                        mapped[p] = false;
                        // Unmapped, invalidated, drained: from now on nothing may write here. The device
                        // comes round its window every few ms: give a stale entry the time to show.
                        fillCanary(p);
                        Thread.sleep(12);
                        checkCanary(p);
                        fillCanary(p);
                    } else {
                        checkCanary(p);
                        fd.mapFixed(ioas, va + p * PIECE, PIECE, p * PIECE);
                        mapped[p] = true;
                    }
                }
            }
        }

        private long word(final int p, final long off) {
            return 0xCA7_0000_0000_0000L ^ (long) index << 40 ^ (long) p << 24 ^ off;
        }

        void fillCanary(final int p) {
            final byte[] b = new byte[(int) PIECE];
            final java.nio.ByteBuffer w = java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (long off = 0; off < PIECE; off += 8) {
                w.putLong((int) off, word(p, off));
            }
            c.memory().writeBytes(va + p * PIECE, b);
            canaried[p] = true;
        }

        void checkCanary(final int p) {
            if (!canaried[p]) {
                return;
            }
            final java.nio.ByteBuffer w = java.nio.ByteBuffer.wrap(c.memory().readBytes(va + p * PIECE, (int) PIECE))
                    .order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (long off = 0; off < PIECE; off += 8) {
                if (w.getLong((int) off) != word(p, off)) {
                    problems.add(String.format("vmm %d: IOVA 0x%x was unmapped, and a DMA wrote there after (a stale IOTLB "
                            + "entry): 0x%x", index, p * PIECE + off, w.getLong((int) off)));
                    break;
                }
            }
            canaried[p] = false;
        }

        void checkAll() {
            for (int p = 0; p < mapped.length; p++) {
                checkCanary(p);
            }
        }
    }

    private final AtomicBoolean stop = new AtomicBoolean();
    private final List<String> problems = new CopyOnWriteArrayList<>();

    @Test
    void sixteenVmmsChurnWhileOneLiveUpdates() throws Exception {
        final List<MachineConfig.DeviceConfig> devices = new ArrayList<>();
        for (int i = 0; i < VMMS; i++) {
            devices.add(new MachineConfig.DeviceConfig(new Bdf(0, 0, 2 + i, 0), 0));
        }
        final MachineConfig config = MachineConfig.small().withMemorySize(256 * MIB).withDevices(devices)
                .withUnits(List.of(UnitConfig.DEFAULT.withCaches(1024, 8)));
        try (Machine m = Machine.create(dir.resolve("m"), config).start()) {
            Files.writeString(dir.resolve("m").resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE);
            final Kernel k1 = Kernel.boot(m.board());
            final SyscallServer s1 = k1.serve(dir.resolve("k.sock"));
            final List<DeviceBar> bars = new ArrayList<>();
            for (int i = 0; i < VMMS; i++) {
                bars.add(new DeviceBar(m.board().deviceBar(i)));
            }
            final Accounting baseline = k1.accounting();
            // VMM 0: persistent, guest RAM, its device writing and verifying records.
            final KernelClient vmm0 = KernelClient.connect(s1.path(), dir.resolve("m").resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm0, "vm0", 8 * MIB);
            final IommufdHandle fd0 = IommufdHandle.open(vmm0);
            final int pid = (int) fd0.makePersistent();
            final int ioas0 = fd0.ioasAlloc();
            fd0.mapFixed(ioas0, ram.va(), ram.size(), 0);
            final VfioDeviceHandle d0 = VfioDeviceHandle.open(vmm0, 0);
            d0.bind(fd0);
            d0.attach(ioas0);
            bars.get(0).start(WorkloadSettings.writeVerify(MIB, 2 * MIB, 512, 1).withPace(20_000));
            // VMMs 1..15: churners, their devices writing unpaced over their whole buffer (unmapped pieces fault).
            final List<Churner> churners = new ArrayList<>();
            final List<Thread> threads = new ArrayList<>();
            for (int i = 1; i < VMMS; i++) {
                churners.add(new Churner(i, s1, 1000 + i));
            }
            for (Churner ch : churners) {
                bars.get(ch.index).start(WorkloadSettings.writeVerify(0, BUFFER, RECORD, 100 + ch.index).withMode(WorkloadMode.WRITE)
                        .withPace(PACE_NANOS));
                threads.add(Thread.ofPlatform().name("vmm-" + ch.index).start(ch));
            }
            Thread.sleep(600);
            // VMM 0 live-updates while the others churn.
            vmm0.writeFile("/sys/kernel/kho/finalize", "1");
            Thread.sleep(200);
            stop.set(true);
            for (Thread t : threads) {
                t.join(30_000);
            }
            assertEquals(List.of(), problems, "while churning");
            long total = 0;
            for (Churner ch : churners) {
                ch.checkAll();
                total += ch.ops;
            }
            assertEquals(List.of(), problems, "canaries");
            System.out.printf("churn: %d operations%n", total);
            for (Churner ch : churners) {
                assertTrue(ch.ops > 0, "VMM " + ch.index + " churned");
            }
            // The driver's shared state, with everything still attached.
            assertEquals(List.of(), DeviceStates.halfStates(k1), "kernel 1 after the churn");
            assertEquals(List.of(), Reach.freeButReachable(m.board(), k1.frames()::isFree, 10));
            assertEquals(List.of(), k1.accounting().pinMismatches());
            assertEquals(0, k1.frames().stats().poisonViolations(), "no freed frame was written to");
            vmm0.kexecLoad(CMDLINE);
            vmm0.rebootKexec();
            for (Churner ch : churners) {
                ch.c.close();
            }
            vmm0.close();
            s1.close();
            final Kernel k2 = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, k2.bootKind(), k2.coldBootReason());
            final SyscallServer s2 = k2.serve(dir.resolve("k.sock"));
            try (KernelClient vmm = KernelClient.connect(s2.path(), dir.resolve("m").resolve("memory"))) {
                final IommufdHandle fd = IommufdHandle.of(vmm, vmm.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                VfioDeviceHandle.open(vmm, 0).bind(fd);
                GuestRam.open(vmm, "vm0");
                bars.get(0).awaitSeq(bars.get(0).counters().nextSeq() + 500);
                bars.get(0).stop();
                assertEquals(0, bars.get(0).counters().faults(), bars.get(0).counters().toString());
                final IommuDevice dev0 = k2.iommu().devices().get(0);
                assertTrue(new RecordChecker(m.board().memory()).check(bars.get(0).window(),
                        iova -> k2.iommu().domainOf(dev0).iovaToPhys(iova)).clean());
                for (int i = 1; i < VMMS; i++) {
                    assertEquals(k2.iommu().blockedDomain(), k2.iommu().domainOf(k2.iommu().devices().get(i)),
                            "VMM " + i + "'s device was not preserved: blocked");
                }
                assertEquals(List.of(), DeviceStates.halfStates(k2));
                assertEquals(List.of(), Reach.freeButReachable(m.board(), k2.frames()::isFree, 10));
            }
            for (DeviceBar b : bars) {
                b.stop();
            }
            assertEquals(0, k2.accounting().persistentContexts(), "VMM 0 exited: its context went");
            assertEquals(0, k2.frames().stats().poisonViolations());
            s2.close();
            assertTrue(baseline.didsInUse() == 0);
        }
    }
}
