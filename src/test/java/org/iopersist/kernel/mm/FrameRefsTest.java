package org.iopersist.kernel.mm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;
import org.iopersist.hw.memory.PhysicalMemory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Reference counts kept per range: against a per-page model under random range operations, the
 * counts, pins, frees and the number of runs (maximal, so every split merges back) agree; and with
 * the real allocator, what the last reference drops goes back whole.
 */
class FrameRefsTest {
    private static final int FRAMES = 96;
    private static final long PAGE = PhysicalMemory.FRAME_SIZE;

    @TempDir
    Path dir;

    /** Records what comes back, and refuses a run that is not naturally aligned or is freed twice. */
    private static final class Returns implements FrameSource {
        final boolean[] freed = new boolean[FRAMES];

        @Override
        public long allocZeroedFrame() {
            throw new UnsupportedOperationException();
        }

        @Override
        public void freeFrame(final long phys) {
            freeRun(phys, 0);
        }

        @Override
        public long allocZeroedRun(final int order) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void freeRun(final long phys, final int order) {
            final int pfn = (int) (phys / PAGE);
            assertEquals(0, pfn & ((1 << order) - 1), "a free of order " + order + " at pfn " + pfn + " is not aligned");
            for (int i = pfn; i < pfn + (1 << order); i++) {
                assertFalse(freed[i], "pfn " + i + " freed twice");
                freed[i] = true;
            }
        }
    }

    /**
     * Each op is (kind, first frame, frames): 0 init, 1 get, 2 pin, 3 put, 4 unpin. The model keeps
     * a count and a pin count per frame.
     */
    @Property(tries = 400)
    void rangesAgreeWithAPerPageModel(@ForAll @Size(min = 1, max = 60) final List<@IntRange(min = 0, max = 4) Integer> kinds,
            @ForAll @Size(min = 60, max = 60) final List<@IntRange(min = 0, max = FRAMES - 1) Integer> starts,
            @ForAll @Size(min = 60, max = 60) final List<@IntRange(min = 1, max = 40) Integer> lengths) {
        final Returns source = new Returns();
        final FrameRefs refs = new FrameRefs(source);
        final int[] count = new int[FRAMES];
        final int[] pins = new int[FRAMES];
        final boolean[] freed = new boolean[FRAMES];
        for (int k = 0; k < kinds.size(); k++) {
            final int s = starts.get(k);
            final int e = Math.min(FRAMES, s + lengths.get(k));
            final long phys = s * PAGE;
            final long n = e - s;
            boolean allCounted = true;
            boolean noneCounted = true;
            boolean allPinned = true;
            boolean allPuttable = true; // a reference that is not a pin's on each
            for (int i = s; i < e; i++) {
                allCounted &= count[i] > 0;
                noneCounted &= count[i] == 0;
                allPinned &= pins[i] > 0;
                allPuttable &= count[i] > pins[i];
            }
            final String what = "op " + k + " kind " + kinds.get(k) + " [" + s + ", " + e + ")";
            switch (kinds.get(k)) {
                case 0 -> {
                    if (noneCounted) {
                        refs.initRange(phys, n);
                        for (int i = s; i < e; i++) {
                            count[i] = 1;
                            freed[i] = false;
                            source.freed[i] = false; // handed out again
                        }
                    } else {
                        assertThrows(IllegalStateException.class, () -> refs.initRange(phys, n), what);
                    }
                }
                case 1, 2 -> {
                    final boolean pin = kinds.get(k) == 2;
                    assertEquals(allCounted, pin ? refs.pinRange(phys, n) : refs.getRange(phys, n), what);
                    if (allCounted) {
                        for (int i = s; i < e; i++) {
                            count[i]++;
                            pins[i] += pin ? 1 : 0;
                        }
                    }
                }
                default -> {
                    final boolean unpin = kinds.get(k) == 4;
                    if (unpin ? allPinned : allPuttable) {
                        if (unpin) {
                            refs.unpinRange(phys, n);
                        } else {
                            refs.putRange(phys, n);
                        }
                        for (int i = s; i < e; i++) {
                            count[i]--;
                            pins[i] -= unpin ? 1 : 0;
                            freed[i] = count[i] == 0;
                        }
                    } else {
                        assertThrows(IllegalStateException.class,
                                () -> {
                                    if (unpin) {
                                        refs.unpinRange(phys, n);
                                    } else {
                                        refs.putRange(phys, n);
                                    }
                                }, what);
                    }
                }
            }
            long counted = 0;
            int runs = 0;
            for (int i = 0; i < FRAMES; i++) {
                assertEquals(count[i], refs.count(i * PAGE), what + ": count of " + i);
                assertEquals(pins[i], refs.pins(i * PAGE), what + ": pins of " + i);
                assertEquals(freed[i], source.freed[i], what + ": frame " + i + " freed");
                counted += count[i] > 0 ? 1 : 0;
                if (count[i] > 0 && (i == 0 || count[i - 1] != count[i] || pins[i - 1] != pins[i])) {
                    runs++;
                }
            }
            assertEquals(counted, refs.frames(), what);
            assertEquals(runs, refs.runs(), what + ": runs are maximal");
        }
    }

    @Test
    void aPinInsideARunSplitsItAndItsUnpinMergesItBack() {
        try (PhysicalMemory memory = PhysicalMemory.create(dir.resolve("memory"), 8L << 20)) {
            final FrameAllocator frames = new FrameAllocator(memory, memory.size(), true);
            frames.open();
            final long before = frames.stats().allocatedFrames();
            final FrameRefs refs = new FrameRefs(frames);
            final long run = frames.allocZeroedRun(9);
            refs.initRange(run, 512);
            assertEquals(1, refs.runs());
            assertTrue(refs.pinRange(run + 100 * PAGE, 50));
            assertEquals(3, refs.runs(), "before, pinned, after");
            assertEquals(2, refs.count(run + 100 * PAGE));
            assertEquals(1, refs.pins(run + 149 * PAGE));
            assertEquals(0, refs.pins(run + 150 * PAGE));
            assertFalse(refs.pinRange(run + 500 * PAGE, 20), "reaches past the counted run");
            assertEquals(3, refs.runs(), "a refused pin changes nothing");
            refs.putRange(run, 512); // the file's reference goes; the pinned pages stay
            assertEquals(50, refs.frames());
            assertEquals(before + 50, frames.stats().allocatedFrames(), "everything but the pinned pages is free again");
            refs.unpinRange(run + 100 * PAGE, 50);
            assertEquals(0, refs.frames());
            assertEquals(0, refs.runs());
            assertEquals(before, frames.stats().allocatedFrames());
            assertEquals(0, frames.stats().poisonViolations());
        }
    }
}
