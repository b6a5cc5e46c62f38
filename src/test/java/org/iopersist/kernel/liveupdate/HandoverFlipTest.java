package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.liveupdate.kho.DtsWriter;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import org.iopersist.kernel.liveupdate.kho.PreservedMemoryMap;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Handovers;
import org.iopersist.vmm.KernelClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every byte of a real handover flipped, one at a time: the KHO tree, each subsystem's blob, each
 * preserved-memory tracker chunk, and {@code boot/setup_data}. For each flip the next boot's
 * validation runs as the boot would run it ({@link Kernel#validateHandover}: memory and registers
 * only, so one machine serves every flip, the byte put back after each). The verdict must be a
 * cold boot, or a restore identical to the original: the same tree and the same subsystem blobs
 * at the same places, as {@code dtc} would print them, and the same preserved blocks, which with
 * the same memory is the same restore. Anything that validates but differs
 * would be something in between, and fails the test.
 *
 * <p>Exhaustive in CI too (about 8000 flips, a few seconds): the validation is what a boot spends
 * before it touches anything, so a flip costs a fraction of a millisecond. At the end a real
 * kernel boots from the handover, restored, with its device still on its tables.
 */
class HandoverFlipTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=32M liveupdate.finish_timeout=0";
    private static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;

    @TempDir
    static Path dir;
    private static Machine machine;
    private static PhysicalMemory mem;
    private static String original;
    private static SetupData setup;
    private static DeviceBar bar;

    /** A region of the handover and what it is. */
    private record Region(String what, long phys, long length) {
    }

    @BeforeAll
    static void handOver() throws Exception {
        machine = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start();
        mem = machine.board().memory();
        Files.writeString(dir.resolve("m").resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE);
        final Kernel k1 = Kernel.boot(machine.board());
        final SyscallServer server = k1.serve(dir.resolve("k.sock"));
        try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
            Handovers.persistEveryKind(vmm);
            bar = new DeviceBar(machine.board().deviceBar(0));
            bar.start(WorkloadSettings.writeVerify(MIB, MIB, 512, 7));
            bar.awaitSeq(100);
            vmm.writeFile("/sys/kernel/kho/finalize", "1");
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();
        }
        server.close();
        setup = SetupData.decode(Files.readAllBytes(dir.resolve("m").resolve("boot").resolve(Kernel.SETUP_DATA_FILE)));
        original = verdict();
        assertTrue(!original.startsWith("cold"), original);
    }

    @AfterAll
    static void bootForReal() {
        try {
            final Kernel k2 = Kernel.boot(machine.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, k2.bootKind(), "after every flip put back: " + k2.coldBootReason());
            final long seq = bar.counters().nextSeq();
            bar.awaitSeq(seq + 100);
            assertEquals(0, bar.counters().faults(), bar.counters().toString());
        } finally {
            if (bar != null) {
                bar.stop();
            }
            machine.close();
        }
    }

    /** What the next boot would do: "cold: reason", or the restore it would make, in full. */
    private static String verdict() {
        final IncomingBoot in = Kernel.validateHandover(machine.board());
        if (!in.restoring()) {
            assertTrue(!in.coldReason().startsWith(IncomingBoot.UNEXPECTED), "validation broke instead of refusing: "
                    + in.coldReason());
            return "cold: " + in.coldReason();
        }
        final KhoIncoming kho = in.handover().kho();
        final StringBuilder b = new StringBuilder();
        // fdt_size only bounds the tree (its totalsize is what is read, and early memory starts past it).
        final SetupData s = in.handover().setup();
        b.append(String.format("tree 0x%x scratch 0x%x+0x%x%n", s.fdtAddr(), s.scratchAddr(), s.scratchSize()));
        b.append(DtsWriter.toDts(kho.tree()));
        final Map<String, String> blobs = new TreeMap<>();
        for (String name : kho.subtreeNames()) {
            final long phys = kho.subtreePhys(name);
            try {
                final FdtReader blob = FdtReader.open(mem.slice(phys, FdtReader.open(mem.slice(phys, 64 * 1024)).totalSize()));
                blobs.put(name, "0x" + Long.toHexString(phys) + "\n" + DtsWriter.toDts(blob));
            } catch (org.iopersist.kernel.liveupdate.kho.HandoverFormatException e) {
                throw new AssertionError(name + " validated and does not read", e);
            }
        }
        b.append(blobs).append('\n');
        final List<String> blocks = new ArrayList<>();
        kho.reserveAll(new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) {
                blocks.add(Long.toHexString(phys) + "/" + order);
            }

            @Override
            public void metadata(final long phys) {
                blocks.add(Long.toHexString(phys) + "/meta");
            }
        });
        blocks.sort(null);
        b.append(blocks);
        return b.toString();
    }

    /** The tree, then each blob it points at, then each tracker chunk. */
    private static List<Region> regions() throws Exception {
        final List<Region> out = new ArrayList<>();
        final FdtReader tree = FdtReader.open(mem.slice(setup.fdtAddr(), setup.fdtSize()));
        out.add(new Region("KHO tree", setup.fdtAddr(), tree.totalSize()));
        for (int child : tree.children(tree.root())) {
            final long blob = tree.u64(child, Kho.PROP_FDT);
            out.add(new Region("blob " + tree.nodeName(child), blob, FdtReader.open(mem.slice(blob, 64 * 1024)).totalSize()));
        }
        for (long chunk = tree.u64(tree.root(), Kho.PROP_MEMORY_MAP); chunk != 0; chunk = mem.load64(chunk)) {
            out.add(new Region("tracker chunk", chunk, PhysicalMemory.FRAME_SIZE));
        }
        return out;
    }

    /** Flips each byte of {@code r} to be flipped, checks the verdict, puts it back. */
    private static int[] flip(final Region r) {
        final MemorySegment seg = mem.segment();
        int cold = 0;
        int same = 0;
        for (long off = 0; off < r.length(); off++) {
            final long at = r.phys() + off;
            final byte was = seg.get(BYTE, at);
            seg.set(BYTE, at, (byte) ~was);
            try {
                final String v = verdict();
                if (v.startsWith("cold")) {
                    cold++;
                } else {
                    assertEquals(original, v, String.format("%s byte 0x%x (phys 0x%x) flipped: it validates, and differs", r.what(),
                            off, at));
                    same++;
                }
            } finally {
                seg.set(BYTE, at, was);
            }
        }
        return new int[] {cold, same};
    }

    @Test
    void everyByteOfTheTreeAndOfEachBlob() throws Exception {
        for (Region r : regions()) {
            if (!r.what().equals("tracker chunk")) {
                final int[] v = flip(r);
                System.out.printf("flips: %s, %d bytes: %d cold, %d identical%n", r.what(), r.length(), v[0], v[1]);
                assertEquals(r.length(), v[0] + v[1]);
            }
        }
    }

    @Test
    void everyByteOfEachTrackerChunk() throws Exception {
        int chunks = 0;
        for (Region r : regions()) {
            if (r.what().equals("tracker chunk")) {
                chunks++;
                final int count = Short.toUnsignedInt((short) (mem.load32(r.phys() + 12) >>> 16));
                final int[] v = flip(r);
                System.out.printf("flips: tracker chunk at 0x%x (%d entries): %d cold, %d identical%n", r.phys(), count, v[0], v[1]);
            }
        }
        assertTrue(chunks > 0);
    }

    @Test
    void everyByteOfSetupData() throws Exception {
        final Path file = dir.resolve("m").resolve("boot").resolve(Kernel.SETUP_DATA_FILE);
        final byte[] good = Files.readAllBytes(file);
        int cold = 0;
        try {
            for (int i = 0; i < good.length; i++) {
                final byte[] bad = good.clone();
                bad[i] = (byte) ~bad[i];
                Files.write(file, bad);
                final String v = verdict();
                if (v.startsWith("cold")) {
                    cold++;
                } else {
                    assertEquals(original, v, "setup_data byte " + i);
                }
            }
        } finally {
            Files.write(file, good);
        }
        System.out.printf("flips: setup_data, %d bytes: %d cold%n", good.length, cold);
    }
}
