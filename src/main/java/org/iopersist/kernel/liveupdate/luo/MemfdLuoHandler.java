package org.iopersist.kernel.liveupdate.luo;

import java.util.Arrays;
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
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.kernel.mm.memfd.MemFd;
import org.iopersist.uapi.Errno;

/**
 * memfd preservation ({@code mm/memfd_luo.c}, with the seal-preservation series: compatible
 * {@code memfd-v2}). Preserve keeps every page where it is: each frame goes into the KHO tracker
 * at once (no copy, no finalize step), and the file's size is frozen so the frames stay the file's.
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
 * folio in a preserved vmalloc area; runs say the same of order-0 pages in far fewer bytes. Not
 * preserved, as in Linux: {@code FD_CLOEXEC} and the name.
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
     * then every frame is preserved in place and the size frozen.
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
        final long[] pages = m.framesByPage();
        final Kho kho = luo.kho();
        int done = 0;
        try {
            for (; done < pages.length; done++) {
                kho.preserve(pages[done], 0);
            }
        } catch (RuntimeException e) {
            for (int i = 0; i < done; i++) {
                kho.unpreserve(pages[i], 0);
            }
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
        private final long[] pages;
        private long pos;

        Out(final OpenFile file, final MemFd memfd, final long size, final int seals, final long[] pages) {
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
            for (long p : pages) {
                kho.unpreserve(p, 0);
            }
            memfd.freezeSize(false);
        }
    }

    /** The pages as runs: (first page index, first frame, pages), each contiguous in memory. */
    static long[] runs(final long[] pages) {
        final long[] out = new long[3 * pages.length];
        int n = 0;
        for (int i = 0; i < pages.length; ) {
            int j = i + 1;
            while (j < pages.length && pages[j] == pages[j - 1] + PhysicalMemory.FRAME_SIZE) {
                j++;
            }
            out[n++] = i;
            out[n++] = pages[i];
            out[n++] = j - i;
            i = j;
        }
        return Arrays.copyOf(out, n);
    }

    /**
     * Every page of the file is one run's, in order and once; every frame is preserved, exactly as
     * the order-0 block adopt claims, and no two runs share a frame.
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
        final long[] pages = new long[(int) npages];
        final KhoIncoming kho = in.kho();
        long next = 0;
        for (int k = 0; k < runs.length; k += 3) {
            final long index = runs[k];
            final long phys = runs[k + 1];
            final long count = runs[k + 2];
            if (index != next || count < 1 || count > npages - index || (phys & PhysicalMemory.FRAME_MASK) != 0) {
                throw new HandoverFormatException(what + ": runs do not cover its pages in order");
            }
            for (long i = 0; i < count; i++) {
                final long f = phys + (i << PhysicalMemory.FRAME_SHIFT);
                if (!kho.preservedExactly(f, 0)) {
                    throw new HandoverFormatException(String.format("%s: page %d at 0x%x is not preserved", what, index + i, f));
                }
                pages[(int) (index + i)] = f;
            }
            next = index + count;
        }
        if (next != npages) {
            throw new HandoverFormatException(what + ": runs cover " + next + " of " + npages + " pages");
        }
        final long[] sorted = pages.clone();
        Arrays.sort(sorted);
        for (int i = 1; i < sorted.length; i++) {
            if (sorted[i] == sorted[i - 1]) {
                throw new HandoverFormatException(String.format("%s: frame 0x%x backs two pages", what, sorted[i]));
            }
        }
        return new In(pos, size, seals, pages);
    }

    /** A memfd handed over: kernel-held from adopt until retrieve hands it out, or finish frees it. */
    public final class In implements Restorable {
        private final long pos;
        private final long size;
        private final int seals;
        private final long[] pages;
        private MemFd memfd;

        In(final long pos, final long size, final int seals, final long[] pages) {
            this.pos = pos;
            this.size = size;
            this.seals = seals;
            this.pages = pages;
        }

        /** memfd_luo_retrieve_folios, done at boot: each frame claimed and counted as the file's. */
        @Override
        public void adopt(final IncomingHandover in) {
            for (long p : pages) {
                if (!in.kho().claim(p, 0)) {
                    throw new IllegalStateException("memfd frame 0x" + Long.toHexString(p) + " changed after validation");
                }
                refs.init(p); // the file's reference, dropped by its release
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
