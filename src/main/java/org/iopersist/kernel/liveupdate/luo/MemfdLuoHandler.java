package org.iopersist.kernel.liveupdate.luo;

import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.FrameRuns;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.kernel.mm.memfd.MemFd;
import org.iopersist.uapi.Errno;

/**
 * memfd preservation ({@code mm/memfd_luo.c}, with the seal-preservation series: compatible
 * {@code memfd-v2}). Preserve keeps every page where it is: each run of the file's frames goes into
 * the KHO tracker at once as naturally aligned blocks (no copy, no finalize step), and the file's
 * size is frozen so the frames stay the file's.
 * The next kernel reserves those frames before its allocator opens, claims them, and RETRIEVE_FD
 * gives a memfd over them with the same contents, size, position and seals.
 *
 * <pre>
 * file@F { compatible = "memfd-v2"; token = &lt;u64&gt;;
 *          pos = &lt;u64&gt;;  size = &lt;u64&gt;;  seals = &lt;u32&gt;;    f_pos, i_size, F_GET_SEALS
 *          runs = &lt;index phys pages ...&gt; };                    3 x u64 per run of pages contiguous in
 *                                                             the file and in memory, in file order
 * </pre>
 *
 * Mainline's {@code memfd_luo_ser} lists one {@code memfd_luo_folio_ser} (pfn, flags, index) per
 * folio in a preserved vmalloc area and preserves each folio at its order; runs say the same in far
 * fewer bytes. <b>Blocks:</b> a run is split into the largest naturally aligned blocks it holds, up
 * to the allocator's largest order ({@link #forEachBlock}); preserve, validation and adopt all make
 * that one split, so each asks the tracker about exactly the blocks preserve put in, and the cost of
 * each step is O(runs · log), not O(pages). Not preserved, as in Linux: {@code FD_CLOEXEC} and the name.
 */
public final class MemfdLuoHandler implements LuoFileHandler {
    public static final String COMPATIBLE = "memfd-v2";
    /** MEMFD_LUO_ALL_SEALS: the seals this version can hand over; any other is EOPNOTSUPP at preserve. */
    public static final int ALL_SEALS = MemFd.F_SEAL_SEAL | MemFd.F_SEAL_SHRINK | MemFd.F_SEAL_GROW | MemFd.F_SEAL_WRITE
            | MemFd.F_SEAL_FUTURE_WRITE | MemFd.F_SEAL_EXEC;
    private static final long UINT_MAX = 0xFFFF_FFFFL;

    private final Luo luo;
    private final PhysicalMemory memory;
    private final FrameSource frames;
    private final FrameRefs refs;

    public MemfdLuoHandler(final Luo luo, final PhysicalMemory memory, final FrameSource frames, final FrameRefs refs) {
        this.luo = luo;
        this.memory = memory;
        this.frames = frames;
        this.refs = refs;
    }

    @Override
    public String compatible() {
        return COMPATIBLE;
    }

    /** memfd_luo_can_preserve: a shmem file with no name in any directory, i.e. a memfd. */
    @Override
    public boolean canPreserve(final KernelFile file) {
        return file instanceof MemFd;
    }

    /**
     * memfd_luo_preserve: seals this version knows (EOPNOTSUPP), at most UINT_MAX pages (EFBIG);
     * then every run's blocks are preserved in place and the size frozen.
     */
    @Override
    public Preserved preserve(final OpenFile file, final long token, final LuoSession session) {
        final MemFd m = (MemFd) file.file();
        final int seals = m.seals();
        if ((seals & ~ALL_SEALS) != 0) {
            throw new KernelException(Errno.EOPNOTSUPP, "seals 0x" + Integer.toHexString(seals) + " cannot be handed over");
        }
        m.freezeSize(true);
        final long size = m.size();
        if ((size + PhysicalMemory.FRAME_SIZE - 1) / PhysicalMemory.FRAME_SIZE > UINT_MAX) {
            m.freezeSize(false);
            throw new KernelException(Errno.EFBIG, m.describe() + " has more than UINT_MAX pages");
        }
        final FrameRuns pages = m.runs();
        final Kho kho = luo.kho();
        final long[] done = {0};
        try {
            pages.forEachRun((first, phys, n) -> forEachBlock(phys, n, (p, o) -> {
                kho.preserve(p, o);
                done[0] += 1L << o;
            }));
        } catch (RuntimeException e) {
            final long[] undo = {done[0]};
            pages.forEachRun((first, phys, n) -> forEachBlock(phys, n, (p, o) -> {
                if (undo[0] > 0) {
                    kho.unpreserve(p, o);
                    undo[0] -= 1L << o;
                }
            }));
            m.freezeSize(false);
            throw e;
        }
        return new Out(file, m, size, seals, pages);
    }

    /** A preserved memfd of this boot: its frames are in the tracker from preserve to unpreserve. */
    private final class Out implements Preserved {
        private final OpenFile file;
        private final MemFd memfd;
        private final long size;
        private final int seals;
        private final FrameRuns pages;
        private long pos;

        Out(final OpenFile file, final MemFd memfd, final long size, final int seals, final FrameRuns pages) {
            this.file = file;
            this.memfd = memfd;
            this.size = size;
            this.seals = seals;
            this.pages = pages;
            this.pos = file.position();
        }

        /** memfd_luo_freeze: the position may have moved since preserve; nothing else can have. */
        @Override
        public void freeze() {
            pos = file.position();
        }

        @Override
        public void serialize(final FdtWriter node) {
            node.propertyU64("pos", pos).propertyU64("size", size).propertyU32("seals", seals)
                    .propertyU64Array("runs", runs(pages));
        }

        @Override
        public void unpreserve() {
            final Kho kho = luo.kho();
            pages.forEachRun((first, phys, n) -> forEachBlock(phys, n, kho::unpreserve));
            memfd.freezeSize(false);
        }
    }

    /** The pages as runs: (first page index, first frame, pages), each contiguous in memory. */
    static long[] runs(final FrameRuns pages) {
        final long[] out = new long[3 * pages.runs()];
        for (int r = 0; r < pages.runs(); r++) {
            out[3 * r] = pages.runFirstPage(r);
            out[3 * r + 1] = pages.runPhys(r);
            out[3 * r + 2] = pages.runPages(r);
        }
        return out;
    }

    /** A naturally aligned block of {@code 2^order} frames at {@code phys}. */
    @FunctionalInterface
    interface BlockVisitor {
        void block(long phys, int order);
    }

    /**
     * Splits {@code pages} frames from {@code phys} into the largest naturally aligned blocks, left
     * to right, none above {@link FrameAllocator#MAX_ORDER} (so a block KHO's finish frees is one
     * the allocator takes). Deterministic: preserve, validation and adopt each make this split.
     */
    static void forEachBlock(final long phys, final long pages, final BlockVisitor visitor) {
        long pfn = phys >>> PhysicalMemory.FRAME_SHIFT;
        final long end = pfn + pages;
        while (pfn < end) {
            int order = pfn == 0 ? FrameAllocator.MAX_ORDER : Math.min(Long.numberOfTrailingZeros(pfn), FrameAllocator.MAX_ORDER);
            while ((1L << order) > end - pfn) {
                order--;
            }
            visitor.block(pfn << PhysicalMemory.FRAME_SHIFT, order);
            pfn += 1L << order;
        }
    }

    /**
     * Every page of the file is one run's, in order and once; every run's blocks are preserved,
     * exactly as adopt will claim them, and no two runs share a frame. O(runs · log): nothing here
     * is per page.
     */
    @Override
    public Restorable validate(final FdtReader blob, final int node, final LuoSession session, final IncomingHandover in)
            throws HandoverFormatException {
        final long pos = blob.u64(node, "pos");
        final long size = blob.u64(node, "size");
        final int seals = blob.u32(node, "seals");
        final long[] runs = blob.u64Array(node, "runs");
        final String what = "memfd in session '" + session.name() + "'";
        if ((seals & ~ALL_SEALS) != 0 || size < 0 || size > (UINT_MAX << 12) || pos < 0) {
            throw new HandoverFormatException(what + ": bad size, position or seals");
        }
        if (runs.length % 3 != 0) {
            throw new HandoverFormatException(what + ": runs are not triples");
        }
        final long npages = (size + PhysicalMemory.FRAME_SIZE - 1) / PhysicalMemory.FRAME_SIZE;
        final FrameRuns.Builder pages = new FrameRuns.Builder();
        final KhoIncoming kho = in.kho();
        final int n = runs.length / 3;
        long next = 0;
        for (int k = 0; k < n; k++) {
            final long index = runs[3 * k];
            final long phys = runs[3 * k + 1];
            final long count = runs[3 * k + 2];
            if (index != next || count < 1 || count > npages - index || (phys & PhysicalMemory.FRAME_MASK) != 0
                    || phys < 0 || count > (Long.MAX_VALUE - phys) >>> PhysicalMemory.FRAME_SHIFT) {
                throw new HandoverFormatException(what + ": runs do not cover its pages in order");
            }
            final long[] missing = {-1};
            final long[] twice = {-1};
            forEachBlock(phys, count, (p, o) -> {
                if (missing[0] < 0 && twice[0] < 0) {
                    switch (kho.plan(p, o)) {
                        case NOT_PRESERVED -> missing[0] = p;
                        case CLAIMED_TWICE -> twice[0] = p;
                        case PLANNED -> { }
                    }
                }
            });
            if (missing[0] >= 0) {
                throw new HandoverFormatException(String.format("%s: page %d at 0x%x is not preserved as its run's block",
                        what, index + ((missing[0] - phys) >>> PhysicalMemory.FRAME_SHIFT), missing[0]));
            }
            if (twice[0] >= 0) {
                throw new HandoverFormatException(String.format("%s: page %d at 0x%x is claimed twice (another page of this file, another"
                        + " file or another subsystem has it too)", what, index + ((twice[0] - phys) >>> PhysicalMemory.FRAME_SHIFT), twice[0]));
            }
            pages.add(phys, count);
            next = index + count;
        }
        if (next != npages) {
            throw new HandoverFormatException(what + ": runs cover " + next + " of " + npages + " pages");
        }
        return new In(pos, size, seals, runs, pages.build());
    }

    /** A memfd handed over: kernel-held from adopt until retrieve hands it out, or finish frees it. */
    public final class In implements Restorable {
        private final long pos;
        private final long size;
        private final int seals;
        /** The record's runs as validated: adopt splits these, not {@link #pages}, whose adjacent runs may have coalesced. */
        private final long[] runs;
        private final FrameRuns pages;
        private MemFd memfd;

        In(final long pos, final long size, final int seals, final long[] runs, final FrameRuns pages) {
            this.pos = pos;
            this.size = size;
            this.seals = seals;
            this.runs = runs;
            this.pages = pages;
        }

        /**
         * memfd_luo_retrieve_folios, done at boot: each run's blocks claimed (the ones validation
         * found), and the run counted as the file's, by range.
         */
        @Override
        public void adopt(final IncomingHandover in) {
            final KhoIncoming kho = in.kho();
            for (int k = 0; k < runs.length; k += 3) {
                forEachBlock(runs[k + 1], runs[k + 2], (p, o) -> {
                    if (!kho.claim(p, o)) {
                        throw new IllegalStateException(String.format("memfd block 0x%x order %d changed after validation", p, o));
                    }
                });
                refs.initRange(runs[k + 1], runs[k + 2]); // the file's reference, dropped by its release
            }
            memfd = MemFd.restore("", memory, frames, refs, pages, size, seals);
        }

        /** The restored file: it will be found again by whatever the previous kernel mapped from it. */
        public MemFd memfd() {
            return memfd;
        }

        public long size() {
            return size;
        }

        public int seals() {
            return seals;
        }

        @Override
        public OpenFile retrieve(final UserProcess caller) {
            final OpenFile f = new OpenFile(memfd);
            f.position(pos);
            return f;
        }

        /** memfd_luo_finish: a memfd nobody retrieved is freed (its frames go back, unless something else pins them). */
        @Override
        public void finish(final boolean retrieved) {
            if (!retrieved) {
                memfd.release();
            }
        }
    }
}
