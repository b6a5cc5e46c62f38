package org.iopersist.kernel.guestmemfs;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import java.util.function.Function;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.mm.PhysRange;

/**
 * guestmemfs across a kexec. At finalize it freezes the filesystem and preserves the whole
 * carve-out (metadata, data and pins all live there) as the largest naturally aligned blocks it
 * splits into, so a 1 TiB carve-out is a handful of tracker bits, not 512 K order-9 blocks; it
 * hands over a small blob. The next kernel checks the blob against its own carve-out, checks that
 * each of those blocks is preserved, mounts from memory ({@link #validate}), and claims the same
 * blocks ({@link #adopt}).
 *
 * <pre>
 * / { compatible = "guestmemfs-v2"; region = &lt;start size&gt; (u64 x 2); files = &lt;u32&gt;; }
 * </pre>
 *
 * The version in {@code compatible} is the on-memory format's ({@link GmfsLayout#VERSION}): a
 * {@code guestmemfs-v1} handover (one record per block, files below 64 GiB) is refused, and the
 * next kernel cold-boots, formatting the carve-out anew.
 */
public final class GuestmemfsLiveUpdate implements LiveUpdateHandler<Guestmemfs> {
    public static final String NAME = "guestmemfs";
    public static final String COMPATIBLE = "guestmemfs-v" + GmfsLayout.VERSION;
    private static final int MIN_ORDER = GmfsLayout.BLOCK_SHIFT - PhysicalMemory.FRAME_SHIFT;
    private static final int MAX_ORDER = org.iopersist.kernel.liveupdate.kho.PreservedMemoryMap.MAX_ORDER;

    private final PhysicalMemory memory;
    private final Function<PhysRange, PhysRange> carveOutFor;
    private final KernelLog log;
    private final List<long[]> preserved = new ArrayList<>(); // (phys, order)
    private Guestmemfs fs; // guarded by this
    private Kho kho;

    /**
     * @param carveOutFor this boot's carve-out given its KHO scratch region (size 0: no guestmemfs)
     */
    public GuestmemfsLiveUpdate(final PhysicalMemory memory, final Function<PhysRange, PhysRange> carveOutFor,
            final KernelLog log) {
        this.memory = memory;
        this.carveOutFor = carveOutFor;
        this.log = log;
    }

    /** The filesystem this boot runs: adopted from the handover, or {@link #attach}ed fresh; null if none. */
    public synchronized Guestmemfs fs() {
        return fs;
    }

    /** A freshly formatted filesystem (cold boot) is the one later handed over. */
    public synchronized void attach(final Guestmemfs formatted) {
        if (fs != null) {
            throw new IllegalStateException("guestmemfs is mounted already");
        }
        fs = formatted;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public synchronized byte[] serialize(final Kho kho) {
        this.kho = kho;
        fs.freeze();
        final PhysRange r = fs.region();
        for (long[] b : blocks(r)) {
            if (kho.preserve(b[0], (int) b[1])) {
                preserved.add(b);
            }
        }
        return new FdtWriter().beginNode("").propertyString("compatible", COMPATIBLE)
                .propertyU64Array("region", new long[] {r.start(), r.size()})
                .propertyU32("files", fs.list().size()).endNode().finish();
    }

    @Override
    public synchronized void abort() {
        for (long[] b : preserved) {
            kho.unpreserve(b[0], (int) b[1]);
        }
        preserved.clear();
        fs.thaw();
    }

    /**
     * The next kernel's side, before anything is adopted: the blob must describe exactly this boot's
     * carve-out, every block of it must be preserved, and the filesystem must mount from memory.
     * Null without {@code guestmemfs=}: nothing to restore.
     */
    @Override
    public Guestmemfs validate(final IncomingHandover handover) throws HandoverFormatException {
        final PhysRange carveOut = carveOutFor.apply(handover.scratch());
        if (carveOut.size() == 0) {
            return null;
        }
        final KhoIncoming in = handover.kho();
        final FdtReader blob = in.retrieveSubtree(NAME);
        if (blob == null) {
            throw new HandoverFormatException("the handover has no guestmemfs subtree, but guestmemfs= is set");
        }
        final String compatible = blob.string(blob.root(), "compatible");
        if (!COMPATIBLE.equals(compatible)) {
            throw new HandoverFormatException("guestmemfs blob is " + compatible + ", this kernel reads only " + COMPATIBLE
                    + " (the on-memory format changed: the carve-out is formatted anew)");
        }
        final long[] region = blob.u64Array(blob.root(), "region");
        if (region.length != 2 || region[0] != carveOut.start() || region[1] != carveOut.size()) {
            throw new HandoverFormatException("guestmemfs handed over another carve-out than guestmemfs= gives " + carveOut);
        }
        for (long[] b : blocks(carveOut)) {
            switch (in.plan(b[0], (int) b[1])) {
                case NOT_PRESERVED -> throw new HandoverFormatException(String.format("guestmemfs block 0x%x order %d is not preserved",
                        b[0], b[1]));
                case CLAIMED_TWICE -> throw new HandoverFormatException(String.format("guestmemfs block 0x%x order %d is claimed twice",
                        b[0], b[1]));
                case PLANNED -> { }
            }
        }
        return Guestmemfs.mount(memory, carveOut, log);
    }

    /** After every subsystem validated: the carve-out is guestmemfs's again, and so is the filesystem. */
    @Override
    public synchronized void adopt(final Guestmemfs mounted, final IncomingHandover handover) {
        if (mounted == null) {
            return;
        }
        final KhoIncoming in = handover.kho();
        fs = mounted;
        for (long[] b : blocks(mounted.region())) {
            if (!in.claim(b[0], (int) b[1])) {
                throw new IllegalStateException(String.format("validated guestmemfs block 0x%x order %d could not be claimed",
                        b[0], b[1]));
            }
        }
    }

    /**
     * The carve-out split into the largest naturally aligned blocks, as (phys, order); it starts
     * and ends on 2 MiB, so every block is of order 9 or more.
     */
    static List<long[]> blocks(final PhysRange r) {
        final List<long[]> out = new ArrayList<>();
        long p = r.start();
        while (p < r.end()) {
            int order = Math.min(MAX_ORDER, Long.numberOfTrailingZeros(p >>> PhysicalMemory.FRAME_SHIFT));
            while ((PhysicalMemory.FRAME_SIZE << order) > r.end() - p) {
                order--;
            }
            assert order >= MIN_ORDER : "carve-out " + r + " is not 2 MiB-aligned";
            out.add(new long[] {p, order});
            p += PhysicalMemory.FRAME_SIZE << order;
        }
        return out;
    }
}
