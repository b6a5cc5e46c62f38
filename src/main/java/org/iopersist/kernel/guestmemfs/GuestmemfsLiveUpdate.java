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
 * carve-out (one order-9 block per 2 MiB: metadata, data and pins all live there), and hands over
 * a small blob; the next kernel checks the blob against its own carve-out, mounts from memory
 * ({@link #validate}), and claims the blocks ({@link #adopt}).
 *
 * <pre>
 * / { compatible = "guestmemfs-v1"; region = &lt;start size&gt; (u64 x 2); files = &lt;u32&gt;; }
 * </pre>
 */
public final class GuestmemfsLiveUpdate implements LiveUpdateHandler<Guestmemfs> {
    public static final String NAME = "guestmemfs";
    public static final String COMPATIBLE = "guestmemfs-v1";
    private static final int ORDER = GmfsLayout.BLOCK_SHIFT - PhysicalMemory.FRAME_SHIFT;

    private final PhysicalMemory memory;
    private final Function<PhysRange, PhysRange> carveOutFor;
    private final KernelLog log;
    private final List<Long> preserved = new ArrayList<>();
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
        for (long p = r.start(); p + GmfsLayout.BLOCK_SIZE <= r.end(); p += GmfsLayout.BLOCK_SIZE) {
            if (kho.preserve(p, ORDER)) {
                preserved.add(p);
            }
        }
        return new FdtWriter().beginNode("").propertyString("compatible", COMPATIBLE)
                .propertyU64Array("region", new long[] {r.start(), r.size()})
                .propertyU32("files", fs.list().size()).endNode().finish();
    }

    @Override
    public synchronized void abort() {
        for (long p : preserved) {
            kho.unpreserve(p, ORDER);
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
        if (!COMPATIBLE.equals(blob.string(blob.root(), "compatible"))) {
            throw new HandoverFormatException("guestmemfs blob is not " + COMPATIBLE);
        }
        final long[] region = blob.u64Array(blob.root(), "region");
        if (region.length != 2 || region[0] != carveOut.start() || region[1] != carveOut.size()) {
            throw new HandoverFormatException("guestmemfs handed over another carve-out than guestmemfs= gives " + carveOut);
        }
        for (long p = carveOut.start(); p + GmfsLayout.BLOCK_SIZE <= carveOut.end(); p += GmfsLayout.BLOCK_SIZE) {
            if (!in.preserved(p)) {
                throw new HandoverFormatException(String.format("guestmemfs block 0x%x is not preserved", p));
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
        final PhysRange carveOut = mounted.region();
        fs = mounted;
        for (long p = carveOut.start(); p + GmfsLayout.BLOCK_SIZE <= carveOut.end(); p += GmfsLayout.BLOCK_SIZE) {
            if (!in.claim(p, ORDER)) {
                throw new IllegalStateException(String.format("validated guestmemfs block 0x%x could not be claimed", p));
            }
        }
    }
}
