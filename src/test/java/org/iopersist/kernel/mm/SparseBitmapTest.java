package org.iopersist.kernel.mm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.BitSet;
import java.util.List;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;
import org.iopersist.hw.memory.PhysicalMemory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SparseBitmapTest {
    @TempDir
    Path dir;

    /** Against java.util.BitSet: ranges set and cleared at random, then every bit and every range query. */
    @Property(tries = 200)
    void agreesWithABitSet(@ForAll @Size(max = 20) final List<@IntRange(min = 0, max = 300_000) Integer> edges,
            @ForAll @IntRange(min = 0, max = 300_000) final int q1, @ForAll @IntRange(min = 0, max = 300_000) final int q2) {
        final SparseBitmap s = new SparseBitmap(300_001);
        final BitSet ref = new BitSet();
        for (int i = 0; i + 1 < edges.size(); i += 2) {
            final int from = Math.min(edges.get(i), edges.get(i + 1));
            final int to = Math.max(edges.get(i), edges.get(i + 1));
            if ((i / 2) % 3 == 2) {
                assertEquals(ref.get(from, to).cardinality(), s.clearRange(from, to));
                ref.clear(from, to);
            } else {
                s.setRange(from, to);
                ref.set(from, to);
            }
        }
        for (int i = 0; i <= 300_000; i += 97) {
            assertEquals(ref.get(i), s.get(i), "bit " + i);
        }
        final int from = Math.min(q1, q2);
        final int to = Math.max(q1, q2);
        assertEquals(!ref.get(from, to).isEmpty(), s.anySet(from, to), "[" + from + ", " + to + ")");
    }

    @Test
    void anAllocatorOnATebibyteMachineCostsWhatItManages() {
        // The shape of a TiB guest host: all but 1 GiB of memory is the guestmemfs carve-out.
        try (PhysicalMemory memory = PhysicalMemory.create(dir.resolve("memory"), 1L << 40)) {
            final FrameAllocator frames = new FrameAllocator(memory, memory.size(), false);
            frames.reserve(new PhysRange(1L << 30, (1L << 40) - (1L << 30)), "guestmemfs");
            frames.open();
            final long phys = frames.allocRun(9);
            frames.freeRun(phys, 9);
            assertTrue(frames.metadataBytes() < 256 * 1024, "allocator bookkeeping " + frames.metadataBytes() + " bytes");
            assertEquals((1L << 30) >> 12, frames.stats().freeFrames());
        }
    }
}
