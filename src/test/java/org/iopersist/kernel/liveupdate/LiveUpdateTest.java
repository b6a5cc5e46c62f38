package org.iopersist.kernel.liveupdate;

import org.iopersist.kernel.KernelRig;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.KhoSubsystem;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * KHO across real kexecs in one JVM: the machine keeps running, each kernel is booted from the
 * board alone, and what the old one preserved is found by the new one through physical memory.
 */
class LiveUpdateTest {
    private static final long MIB = 1L << 20;
    private static final int[] ORDERS = {0, 0, 1, 3, 9};

    @TempDir
    Path dir;

    /** A subsystem that preserves checksummed runs and lists them in its blob. */
    static final class Payload implements LiveUpdateHandler<Void> {
        final List<long[]> runs = new ArrayList<>(); // phys, order, checksum
        private final PhysicalMemory memory;
        private final FrameAllocator frames;

        Payload(final Kernel k, final long seed) {
            this.memory = k.board().memory();
            this.frames = k.frames();
            long x = seed;
            for (int order : ORDERS) {
                final long phys = frames.allocRun(order);
                long sum = 0;
                for (long off = 0; off < (PhysicalMemory.FRAME_SIZE << order); off += 8) {
                    x = x * 6364136223846793005L + 1442695040888963407L;
                    memory.store64(phys + off, x);
                    sum += x * (off + 1);
                }
                runs.add(new long[] {phys, order, sum});
            }
        }

        @Override
        public Void validate(final IncomingHandover in) {
            return null;
        }

        @Override
        public void adopt(final Void plan, final IncomingHandover in) {
        }

        @Override
        public String name() {
            return "payload";
        }

        @Override
        public byte[] serialize(final Kho kho) {
            final long[] flat = new long[runs.size() * 3];
            for (int i = 0; i < runs.size(); i++) {
                kho.preserve(runs.get(i)[0], (int) runs.get(i)[1]);
                System.arraycopy(runs.get(i), 0, flat, 3 * i, 3);
            }
            return new FdtWriter().beginNode("").propertyString("compatible", "payload-v1").propertyU64Array("runs", flat)
                    .endNode().finish();
        }

        @Override
        public void abort() {
        }

        static long checksum(final PhysicalMemory memory, final long phys, final int order) {
            long sum = 0;
            for (long off = 0; off < (PhysicalMemory.FRAME_SIZE << order); off += 8) {
                sum += memory.load64(phys + off) * (off + 1);
            }
            return sum;
        }
    }

    /** The new kernel's side: every run intact, then claimed. Returns the runs. */
    static long[] retrieveAndClaim(final Kernel k) throws Exception {
        final FdtReader blob = k.liveUpdate().incoming().retrieveSubtree("payload");
        assertNotNull(blob, "the payload subtree came through");
        final long[] runs = blob.u64Array(blob.root(), "runs");
        for (int i = 0; i < runs.length; i += 3) {
            assertEquals(runs[i + 2], Payload.checksum(k.board().memory(), runs[i], (int) runs[i + 1]),
                    "run at 0x" + Long.toHexString(runs[i]) + " intact");
            assertTrue(k.liveUpdate().incoming().claim(runs[i], (int) runs[i + 1]));
        }
        return runs;
    }

    static Kernel kexec(final Kernel k, final Machine m, final String cmdline) {
        k.kexecLoad(KernelRig.root(), cmdline);
        k.kexec();
        Handovers.checkIfHandedOver(m.board());
        return Kernel.boot(m.board());
    }

    private static void dtcReads(final Path dir, final byte[] tree) throws Exception {
        final Path f = dir.resolve("kho-" + System.nanoTime() + ".dtb");
        Files.write(f, tree);
        final Process p = new ProcessBuilder("dtc", "-I", "dtb", "-O", "dts", f.toString()).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes());
        assertEquals(0, p.waitFor(), out);
        assertTrue(out.contains("compatible = \"kho-v2\""), out);
    }

    @Test
    void preservedRunsSurviveAKexecAndNothingLeaksAfterFinish() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            final Kernel a = Kernel.boot(m.board());
            final long freeAtBoot = a.frames().stats().freeFrames();
            final Payload payload = new Payload(a, 42);
            a.liveUpdate().register(payload);
            a.liveUpdate().finalizeHandover();
            dtcReads(dir, a.liveUpdate().kho().tree());
            final Kernel b = kexec(a, m, "liveupdate.finish_timeout=0");
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind());
            assertNull(b.coldBootReason());
            final long[] runs = retrieveAndClaim(b);
            // The claimed runs are the new kernel's now: give them back, then finish frees the rest.
            for (int i = 0; i < runs.length; i += 3) {
                assertTrue(!b.frames().isAllocated(runs[i]), "preserved frames are reserved, not allocated");
                b.frames().freeRun(runs[i], (int) runs[i + 1]);
            }
            assertTrue(b.liveUpdate().unclaimedFrames() > 0, "the blobs and the VT-d tables' leftovers are unclaimed");
            b.liveUpdate().finish();
            assertEquals(0, b.liveUpdate().unclaimedFrames());
            final FrameAllocator.Stats s = b.frames().stats();
            assertEquals(freeAtBoot, s.freeFrames(), "the same free memory as a fresh boot: " + s);
            assertEquals(s.totalFrames(), s.freeFrames() + s.reservedFrames() + s.allocatedFrames());
            assertEquals(Errno.ESHUTDOWN, assertThrows(KernelException.class, () -> a.liveUpdate().finalizeHandover()).errno(),
                    "the old kernel is gone");
        }
    }

    @Test
    void finalizeAbortFinalizeAgain() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            final Kernel a = Kernel.boot(m.board());
            final Payload payload = new Payload(a, 7);
            a.liveUpdate().register(payload);
            final long preservedBefore = a.liveUpdate().kho().preservedFrames();
            a.liveUpdate().finalizeHandover();
            assertEquals("1", a.sysfs().read("/sys/kernel/kho/finalize").trim());
            assertEquals(Errno.EBUSY, assertThrows(KernelException.class, () -> a.liveUpdate().finalizeHandover()).errno());
            a.sysfs().write("/sys/kernel/kho/finalize", "0");
            assertEquals("0", a.sysfs().read("/sys/kernel/kho/finalize").trim());
            assertEquals(Errno.ENOENT, assertThrows(KernelException.class, () -> a.sysfs().read("/sys/kernel/kho/fdt")).errno(),
                    "no handover after abort");
            a.sysfs().write("/sys/kernel/kho/finalize", "1");
            dtcReads(dir, a.sysfs().attribute("/sys/kernel/kho/fdt").bytes());
            assertEquals(Errno.EINVAL, assertThrows(KernelException.class, () -> a.sysfs().write("/sys/kernel/kho/finalize", "2")).errno());
            final Kernel b = kexec(a, m, "");
            retrieveAndClaim(b);
            assertTrue(preservedBefore <= b.liveUpdate().incoming().unclaimedFrames() + 1 << 20);
        }
    }

    @Test
    void aSecondKexecBeforeFinishCarriesWhatNobodyClaimed() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            final Kernel a = Kernel.boot(m.board());
            a.liveUpdate().register(new Payload(a, 99));
            a.liveUpdate().finalizeHandover();
            final Kernel b = kexec(a, m, "");
            // b neither claims nor finishes: the payload rides along to c.
            b.liveUpdate().finalizeHandover();
            dtcReads(dir, b.liveUpdate().kho().tree());
            final Kernel c = kexec(b, m, "");
            assertEquals(Kernel.BootKind.LIVE_UPDATE, c.bootKind(), String.join("\n", c.log().dmesg()));
            retrieveAndClaim(c);
            c.liveUpdate().finish();
        }
    }

    @Test
    void finishOnTimeout() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            final Kernel a = Kernel.boot(m.board());
            a.liveUpdate().register(new Payload(a, 1));
            a.liveUpdate().finalizeHandover();
            final Kernel b = kexec(a, m, "liveupdate.finish_timeout=1");
            assertEquals("0", b.sysfs().read("/sys/kernel/liveupdate/finish").trim());
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (b.liveUpdate().unclaimedFrames() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertEquals(0, b.liveUpdate().unclaimedFrames(), "the timeout finished it");
            assertEquals("1", b.sysfs().read("/sys/kernel/liveupdate/finish").trim());
            assertTrue(b.log().contains("liveupdate: finish timeout of 1 s expired"));
        }
    }

    @Test
    void aCorruptTreeMeansAColdBootWithTheReason() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            final Kernel a = Kernel.boot(m.board());
            a.liveUpdate().register(new Payload(a, 3));
            final var setup = a.liveUpdate().finalizeHandover();
            a.kexecLoad(KernelRig.root(), "");
            a.kexec();
            Handovers.checkWithDtc(m.board());
            m.board().memory().store32Release(setup.fdtAddr(), 0x12345678); // the FDT magic
            final Kernel b = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.COLD, b.bootKind());
            assertTrue(b.coldBootReason().startsWith("handover rejected: "), b.coldBootReason());
            assertTrue(b.log().contains("DMAR: cold boot (handover rejected: "));
            assertEquals(b.coldBootReason(), b.sysfs().read("/sys/kernel/boot/cold_boot_reason").trim());
        }
    }

    /**
     * A damaged preserved-memory radix tree is refused before anything is reserved: a node pointer
     * outside memory, a cycle back to the root, key bits 63:53 set. Each means a cold boot.
     */
    @Test
    void aCorruptRadixTreeMeansAColdBoot() throws Exception {
        final String[] damages = {"outside", "cycle", "topBits"};
        for (String damage : damages) {
            try (Machine m = Machine.create(dir.resolve("m-" + damage), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
                final Kernel a = Kernel.boot(m.board());
                a.liveUpdate().register(new Payload(a, 3));
                final var setup = a.liveUpdate().finalizeHandover();
                a.kexecLoad(KernelRig.root(), "");
                a.kexec();
                final PhysicalMemory mem = m.board().memory();
                final FdtReader tree = FdtReader.open(mem.slice(setup.fdtAddr(), setup.fdtSize()));
                final long root = tree.u64(tree.root(), Kho.PROP_MEMORY_MAP);
                final long level4 = mem.load64(root + 2 * 8); // order 0 sets key bit 52: root slot 2
                assertTrue(level4 != 0, "order-0 blocks were preserved");
                switch (damage) {
                    case "outside" -> mem.store64(root + 2 * 8, 1L << 40);
                    case "cycle" -> mem.store64(level4 + 511 * 8, root);
                    default -> mem.store64(root + 4 * 8, level4);
                }
                final Kernel b = Kernel.boot(m.board());
                assertEquals(Kernel.BootKind.COLD, b.bootKind(), damage);
                final String why = switch (damage) {
                    case "outside" -> "not a frame of memory";
                    case "cycle" -> "reached twice";
                    default -> "key bits 63:53";
                };
                assertTrue(b.coldBootReason().startsWith("handover rejected: ") && b.coldBootReason().contains(why),
                        b.coldBootReason());
            }
        }
    }

    @Test
    void finalizeAndKexecThroughTheSyscallAbi() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            final Kernel a = Kernel.boot(m.board());
            a.liveUpdate().register(new Payload(a, 5));
            final var server = a.serve(dir.resolve("k.sock"));
            try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                final long cmd = vmm.scratch() + 1024;
                vmm.memory().writeBytes(cmd, "liveupdate.finish_timeout=0\0".getBytes());
                assertEquals(0, vmm.syscall(Syscall.KEXEC_LOAD, cmd));
                // As in Linux, a reboot that kexecs does not return: no reply, the connection ends.
                assertThrows(IllegalStateException.class, () -> vmm.syscall(Syscall.REBOOT, Syscall.LINUX_REBOOT_MAGIC1,
                        Syscall.LINUX_REBOOT_MAGIC2, Syscall.LINUX_REBOOT_CMD_KEXEC), "reboot(KEXEC) returned to its caller");
            }
            assertTrue(a.liveUpdate().awaitKexec(10, TimeUnit.SECONDS));
            assertEquals("liveupdate.finish_timeout=0", Files.readString(dir.resolve("m").resolve("boot").resolve("cmdline")));
            final Kernel b = Kernel.boot(m.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind());
            retrieveAndClaim(b);
        }
    }
}
