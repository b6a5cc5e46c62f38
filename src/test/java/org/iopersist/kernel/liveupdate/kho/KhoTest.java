package org.iopersist.kernel.liveupdate.kho;

import org.iopersist.kernel.mm.FrameSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The KHO core without a kernel around it: finalize writes a tree dtc reads, the incoming side
 * validates it from memory alone, claims and finish account for every block, abort undoes.
 */
class KhoTest {
    static final long SCRATCH = 0x100000;
    static final long SCRATCH_SIZE = 0x100000;

    @TempDir
    Path tmp;
    PhysicalMemory memory;
    /** A first-fit frame allocator over [4 MiB, 64 MiB), with accounting. */
    final Map<Long, Integer> allocated = new HashMap<>();
    long next = 4L << 20;
    FrameSource frames;

    @BeforeEach
    void setUp() {
        memory = PhysicalMemory.create(tmp.resolve("memory"), 64L << 20);
        frames = new FrameSource() {
            @Override
            public long allocZeroedFrame() {
                return allocZeroedRun(0);
            }

            @Override
            public void freeFrame(final long phys) {
                freeRun(phys, 0);
            }

            @Override
            public long allocZeroedRun(final int order) {
                final long size = PhysicalMemory.FRAME_SIZE << order;
                next = (next + size - 1) & ~(size - 1);
                final long phys = next;
                next += size;
                memory.fill(phys, size, (byte) 0);
                allocated.put(phys, order);
                return phys;
            }

            @Override
            public void freeRun(final long phys, final int order) {
                final Integer o = allocated.remove(phys);
                assertEquals(order, o, "freed with the order it was allocated with: 0x" + Long.toHexString(phys));
            }
        };
    }

    @AfterEach
    void tearDown() {
        memory.close();
    }

    /** Preserves checksummed runs and hands over their list. */
    final class TestSubsystem implements KhoSubsystem {
        final List<long[]> runs = new ArrayList<>();
        int aborts;

        TestSubsystem(final int count) {
            for (int i = 0; i < count; i++) {
                final int order = i % 4;
                final long phys = frames.allocZeroedRun(order);
                for (long off = 0; off < (PhysicalMemory.FRAME_SIZE << order); off += 8) {
                    memory.store64(phys + off, phys * 31 + off);
                }
                runs.add(new long[] {phys, order});
            }
        }

        @Override
        public String name() {
            return "kho-test";
        }

        @Override
        public byte[] serialize(final Kho kho) {
            final long[] packed = new long[runs.size() * 2];
            for (int i = 0; i < runs.size(); i++) {
                kho.preserve(runs.get(i)[0], (int) runs.get(i)[1]);
                packed[2 * i] = runs.get(i)[0];
                packed[2 * i + 1] = runs.get(i)[1];
            }
            return new FdtWriter().beginNode("").propertyString("compatible", "kho-test-v1")
                    .propertyU64Array("runs", packed).endNode().finish();
        }

        @Override
        public void abort() {
            aborts++;
        }
    }

    @Test
    void handoverRoundTripsThroughMemoryAndDtcReadsIt() throws Exception {
        final Kho kho = new Kho(memory, frames, SCRATCH, SCRATCH_SIZE, line -> { });
        final TestSubsystem sub = new TestSubsystem(12);
        kho.register(sub);
        final int before = allocated.size();
        final SetupData setup = kho.finalizeHandover();
        assertTrue(kho.finalized());
        assertEquals(Errno.EBUSY, assertThrows(KernelException.class, () -> kho.preserve(0x200000, 0)).errno());
        assertEquals(Errno.EBUSY, assertThrows(KernelException.class, kho::finalizeHandover).errno());

        final Path dtb = tmp.resolve("kho.dtb");
        Files.write(dtb, kho.tree());
        final Process p = new ProcessBuilder("dtc", "-I", "dtb", "-O", "dts", dtb.toString()).redirectErrorStream(true).start();
        final String dts = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), dts);
        assertTrue(dts.contains("compatible = \"kho-v2\";") && dts.contains("kho-test {"), dts);

        // The next kernel: only memory and the setup record.
        final KhoIncoming in = KhoIncoming.parse(memory, SetupData.decode(setup.encode()));
        assertEquals(List.of("kho-test"), in.subtreeNames());
        final FdtReader blob = in.retrieveSubtree("kho-test");
        assertEquals("kho-test-v1", blob.string(blob.root(), "compatible"));
        final long[] runs = blob.u64Array(blob.root(), "runs");
        final long preservedFrames = in.unclaimedFrames();
        long claimedFrames = 0;
        for (int i = 0; i < runs.length; i += 2) {
            final long phys = runs[i];
            final int order = (int) runs[i + 1];
            for (long off = 0; off < (PhysicalMemory.FRAME_SIZE << order); off += 8) {
                assertEquals(phys * 31 + off, memory.load64(phys + off));
            }
            assertTrue(in.claim(phys, order));
            assertFalse(in.claim(phys, order), "a block is claimed once");
            claimedFrames += 1L << order;
        }
        assertNull(in.retrieveSubtree("missing"));
        // Unclaimed: the blob itself. Finish frees it and the tracker.
        assertEquals(preservedFrames - claimedFrames, in.unclaimedFrames());
        in.finish(frames);
        assertEquals(0, in.unclaimedFrames());
        // The old kernel is gone: what it allocated for the handover (blob, bitmaps, chunks) was freed
        // by finish, and only the claimed runs remain.
        assertEquals(before, allocated.size());
    }

    @Test
    void abortUndoesAndFinalizeWorksAgain() throws Exception {
        final Kho kho = new Kho(memory, frames, SCRATCH, SCRATCH_SIZE, line -> { });
        final TestSubsystem sub = new TestSubsystem(3);
        kho.register(sub);
        assertEquals(Errno.ENOENT, assertThrows(KernelException.class, kho::abort).errno());
        kho.finalizeHandover();
        kho.abort();
        assertEquals(1, sub.aborts);
        assertFalse(kho.finalized());
        // Between the two finalizes the subsystem drops a run and unpreserves it.
        final long[] dropped = sub.runs.remove(0);
        kho.unpreserve(dropped[0], (int) dropped[1]);
        final SetupData setup = kho.finalizeHandover();
        final KhoIncoming in = KhoIncoming.parse(memory, setup);
        final FdtReader blob = in.retrieveSubtree("kho-test");
        assertEquals(2, blob.u64Array(blob.root(), "runs").length / 2);
        assertFalse(in.preserved(dropped[0]), "unpreserved before the second finalize");
        assertTrue(in.preserved(sub.runs.get(0)[0]));
    }

    @Test
    void aFailingSubsystemLeavesNothingFinalized() {
        final Kho kho = new Kho(memory, frames, SCRATCH, SCRATCH_SIZE, line -> { });
        final TestSubsystem good = new TestSubsystem(2);
        kho.register(good);
        kho.register(new KhoSubsystem() {
            @Override
            public String name() {
                return "broken";
            }

            @Override
            public byte[] serialize(final Kho k) {
                throw new KernelException(Errno.EBUSY, "busy");
            }

            @Override
            public void abort() {
            }
        });
        assertEquals(Errno.EBUSY, assertThrows(KernelException.class, kho::finalizeHandover).errno());
        assertFalse(kho.finalized());
        assertEquals(1, good.aborts);
        assertEquals(Errno.EEXIST, assertThrows(KernelException.class, () -> kho.register(good)).errno());
    }

    @Test
    void invalidHandoversAreRefused() throws Exception {
        final Kho kho = new Kho(memory, frames, SCRATCH, SCRATCH_SIZE, line -> { });
        kho.register(new TestSubsystem(2));
        final SetupData setup = kho.finalizeHandover();
        KhoIncoming.parse(memory, setup);
        // Outside memory, outside scratch, too small.
        assertThrows(HandoverFormatException.class, () -> KhoIncoming.parse(memory,
                new SetupData(1L << 40, setup.fdtSize(), setup.scratchAddr(), setup.scratchSize())));
        assertThrows(HandoverFormatException.class, () -> KhoIncoming.parse(memory,
                new SetupData(setup.fdtAddr(), 8, setup.scratchAddr(), setup.scratchSize())));
        assertThrows(HandoverFormatException.class, () -> SetupData.decode(new byte[7]));
        assertNull(SetupData.decode(new byte[0]));
        // A wrong compatible string.
        final byte[] tree = kho.tree();
        final byte[] bad = new String(tree, StandardCharsets.ISO_8859_1).replace("kho-v2", "kho-v9")
                .getBytes(StandardCharsets.ISO_8859_1);
        memory.write(SCRATCH, bad, 0, bad.length);
        final HandoverFormatException e = assertThrows(HandoverFormatException.class, () -> KhoIncoming.parse(memory, setup));
        assertTrue(e.getMessage().contains("kho-v9"), e.getMessage());
        // A blob in memory that is not preserved: unpreserve it behind KHO's back.
        memory.write(SCRATCH, tree, 0, tree.length);
        final KhoIncoming ok = KhoIncoming.parse(memory, setup);
        final long blobPhys = ok.subtreePhys("kho-test");
        assertTrue(ok.claim(blobPhys, 0));
        assertThrows(HandoverFormatException.class, () -> KhoIncoming.parse(memory, setup));
    }
}
