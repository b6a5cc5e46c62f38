package org.iopersist.kernel.mm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;
import org.junit.jupiter.api.Test;

class FrameRunsTest {
    private static final long PAGE = 4096;

    @Test
    void contiguousPiecesCoalesceIntoOneRun() {
        final FrameRuns r = new FrameRuns.Builder().add(0x4000_0000L, 512).add(0x4000_0000L + 512 * PAGE, 512)
                .add(0x9000_0000L, 1).build();
        assertEquals(2, r.runs());
        assertEquals(1025, r.pages());
        assertEquals(0x4000_0000L + 1023 * PAGE, r.frameOf(1023));
        assertEquals(0x9000_0000L, r.frameOf(1024));
        assertThrows(IndexOutOfBoundsException.class, () -> r.frameOf(1025));
    }

    @Test
    void aTebibyteOfTwoMibBlocksInOrderIsOneRun() {
        final FrameRuns.Builder b = new FrameRuns.Builder();
        for (long blk = 0; blk < (1L << 40) / (2L << 20); blk++) {
            b.add((1L << 41) + blk * (2L << 20), 512);
        }
        final FrameRuns r = b.build();
        assertEquals(1, r.runs());
        assertEquals((1L << 40) / PAGE, r.pages());
        assertEquals((1L << 41) + (1L << 40) - PAGE, r.frameOf(r.pages() - 1));
    }

    /** Against a page-by-page reference: every frame, and every slice, agree. */
    @Property(tries = 200)
    void agreesWithAPerPageArray(@ForAll @Size(min = 1, max = 12) final List<@IntRange(min = 1, max = 40) Integer> lengths,
            @ForAll @IntRange(min = 0, max = 3) final int gapEvery, @ForAll @IntRange(min = 0, max = 400) final int a,
            @ForAll @IntRange(min = 0, max = 400) final int b) {
        final FrameRuns.Builder builder = new FrameRuns.Builder();
        final List<Long> reference = new ArrayList<>();
        long next = 0x10_0000L;
        for (int i = 0; i < lengths.size(); i++) {
            if (gapEvery != 0 && i % gapEvery == 0) {
                next += 7 * PAGE; // a physical gap: a new run
            }
            builder.add(next, lengths.get(i));
            for (int k = 0; k < lengths.get(i); k++) {
                reference.add(next + k * PAGE);
            }
            next += lengths.get(i) * PAGE;
        }
        final FrameRuns runs = builder.build();
        assertEquals(reference.size(), runs.pages());
        for (int i = 0; i < reference.size(); i++) {
            assertEquals(reference.get(i), runs.frameOf(i));
        }
        final int from = Math.min(a, b) % reference.size();
        final int to = Math.min(reference.size(), from + Math.abs(a - b));
        final FrameRuns s = runs.slice(from, to);
        assertEquals(to - from, s.pages());
        for (int i = from; i < to; i++) {
            assertEquals(reference.get(i), s.frameOf(i - from));
        }
        final List<Long> each = new ArrayList<>();
        runs.forEachFrame(each::add);
        assertEquals(reference, each);
    }
}
