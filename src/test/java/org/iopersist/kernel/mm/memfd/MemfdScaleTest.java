package org.iopersist.kernel.mm.memfd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.FrameRuns;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A memfd of tens of GiB costs its runs, not its pages: 1 GiB runs from the allocator, one extent
 * and one range of reference counts each (at 4 KiB a page, 60 GiB would be 15.7 M entries).
 */
class MemfdScaleTest {
    private static final long GIB = 1L << 30;

    @TempDir
    Path dir;

    @Test
    void sixtyGibibytesAreSixtyRuns() {
        try (PhysicalMemory memory = PhysicalMemory.create(dir.resolve("memory"), 64 * GIB)) {
            final FrameAllocator frames = new FrameAllocator(memory, memory.size(), false);
            frames.open();
            final FrameRefs refs = new FrameRefs(frames);
            final MemFd m = new MemFd("ram", memory, frames, refs);
            final long started = System.nanoTime();
            m.truncate(60 * GIB + 4096 * 3);
            final long ns = System.nanoTime() - started;
            assertEquals((60 * GIB >>> 12) + 3, m.pages());
            assertEquals(60 * (GIB >>> 12) + 3, refs.frames());
            assertTrue(m.extents() <= 62, m.extents() + " extents");
            assertTrue(refs.runs() <= 62, refs.runs() + " ranges of counts");
            final FrameRuns runs = m.runs();
            assertEquals(0, runs.runPhys(0) % GIB, "page 0 starts a 1 GiB run");
            assertEquals(m.frame(262_144 * 7 + 5), m.runs(262_144 * 7 + 5, 1).runPhys(0));
            assertTrue(ns < 5_000_000_000L, "60 GiB took " + ns / 1_000_000 + " ms");
            m.release();
            assertEquals(0, refs.frames());
            assertEquals(0, refs.runs());
            assertEquals(0, frames.stats().allocatedFrames(), "every frame back");
        }
    }
}
