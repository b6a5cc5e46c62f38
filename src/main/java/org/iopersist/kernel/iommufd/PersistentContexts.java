package org.iopersist.kernel.iommufd;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.guestmemfs.GuestmemFile;
import org.iopersist.kernel.guestmemfs.Guestmemfs;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.LiveUpdate;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.fs.Sysfs;
import org.iopersist.kernel.fs.SysfsAttribute;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Iommufd;

/**
 * Every persistent iommufd context of this boot: the live ones (made persistent by their VMM),
 * and the ones re-hydrated from the handover and held by the kernel until their VMM reopens them
 * through {@code /sys/kernel/iommufd_persisted/<id>/iommufd}, or finish frees them.
 *
 * <p>As a KHO subsystem it hands over, per context, every object with its id:
 * <pre>
 * / { compatible = "iommufd-v1";
 *     ctx@P { persistent-id = &lt;u32&gt;; owner-uid = &lt;u32&gt;; account-mode = &lt;u32&gt;;
 *         ioas@N  { id; alignment (u64); huge-pages; allowed = &lt;start last ...&gt;;
 *                   pages = &lt;ino offset length ...&gt; (3 x u64: one per shared iopt_pages);
 *                   areas = &lt;iova length ino offset prot pages-index ...&gt; (6 x u64 = 48 bytes per area) };
 *         hwpt@N  { id; ioas; auto; domain = &lt;the driver's handover key, the VT-d pgd&gt; };
 *         device@N { id; device = &lt;unit &lt;&lt; 32 | segment &lt;&lt; 16 | source-id&gt;; hwpt };
 *     };
 * };
 * </pre>
 */
public final class PersistentContexts implements LiveUpdateHandler<PersistentContexts.Plan> {
    public static final String NAME = "iommufd";
    public static final String COMPATIBLE = "iommufd-v1";
    /** Cells (u64) per area record: iova, length, ino, offset, prot, pages index. */
    public static final int AREA_CELLS = 6;

    /** Opening a restored context's sysfs file: the kernel installs it as the given file. */
    @FunctionalInterface
    public interface Reopener {
        void publish(int persistentId, IommufdCtx ctx);
    }

    private final PersistentIds ids = new PersistentIds();
    /** Where each restored context's directory was published; it goes when the context does. */
    private final Map<Integer, Sysfs> sysfsOf = new HashMap<>();
    private final Map<Integer, IommufdCtx> live = new TreeMap<>();
    private final Map<Integer, IommufdCtx> restored = new TreeMap<>(); // not reopened yet
    private final KernelLog log;
    private final PhysicalMemory memory;
    private final FrameRefs refs;
    private final IommuCore iommu;
    private final LiveUpdateHandler<Guestmemfs> guestmemfs;
    private final LiveUpdateHandler<? extends IommuDriver.HandoverPlan> iommuDriver;
    private boolean frozen;
    private LiveUpdate core; // set once, at registration

    /**
     * @param guestmemfs  the handler whose plan is the mounted guestmemfs the areas live in
     * @param iommuDriver the handler whose plan holds the restored domains' tables
     */
    public PersistentContexts(final KernelLog log, final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final LiveUpdateHandler<Guestmemfs> guestmemfs, final LiveUpdateHandler<? extends IommuDriver.HandoverPlan> iommuDriver) {
        this.log = log;
        this.memory = memory;
        this.refs = refs;
        this.iommu = iommu;
        this.guestmemfs = guestmemfs;
        this.iommuDriver = iommuDriver;
    }

    @Override
    public synchronized void bind(final LiveUpdate liveUpdate) {
        this.core = liveUpdate;
    }

    private synchronized LiveUpdate core() {
        return core;
    }

    synchronized int register(final IommufdCtx ctx) {
        final int id = ids.allocate();
        live.put(id, ctx);
        return id;
    }

    void unregister(final int id, final IommufdCtx ctx) {
        final Sysfs published;
        synchronized (this) {
            if (!live.remove(id, ctx) && !restored.remove(id, ctx)) {
                return;
            }
            ids.release(id);
            published = sysfsOf.remove(id);
        }
        // Outside this lock: reading an attribute takes sysfs's lock, then this one.
        if (published != null) {
            published.remove(Iommufd.persistedDir(id));
        }
    }

    public synchronized boolean frozen() {
        return frozen;
    }

    void abortFinalize(final String why) {
        log.info("iommufd: %s: aborting the finalize", why);
        if (core() != null) {
            core().abortIfFinalized();
        }
    }

    public synchronized List<Integer> liveIds() {
        return List.copyOf(live.keySet());
    }

    public synchronized List<Integer> restoredIds() {
        return List.copyOf(restored.keySet());
    }

    /** A restored or live context by persistent id, or null. */
    public synchronized IommufdCtx context(final int id) {
        final IommufdCtx c = live.get(id);
        return c != null ? c : restored.get(id);
    }

    // ------------------------------------------------------------------ outgoing

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public synchronized byte[] serialize(final Kho kho) {
        frozen = true;
        final FdtWriter w = new FdtWriter().beginNode("");
        w.propertyString("compatible", COMPATIBLE);
        final Map<Integer, IommufdCtx> all = new TreeMap<>(live);
        all.putAll(restored); // not reopened yet: handed over again, unchanged
        for (Map.Entry<Integer, IommufdCtx> e : all.entrySet()) {
            writeContext(w, e.getKey(), e.getValue());
        }
        return w.endNode().finish();
    }

    private static void writeContext(final FdtWriter w, final int pid, final IommufdCtx ctx) {
        w.beginNode("ctx@" + pid).propertyU32("persistent-id", pid).propertyU32("owner-uid", ctx.ownerUid())
                .propertyU32("account-mode", ctx.accountMode());
        for (IommufdObject o : ctx.objects.objects()) {
            switch (o) {
                case Ioas ioas -> {
                    ioas.iovaLock.readLock().lock();
                    try {
                        // Areas that share an iopt_pages (a copy, a split) share it again after the
                        // update, so the opener is charged what the VMM was charged before.
                        final Map<IoptPages, Integer> pagesIndex = new IdentityHashMap<>();
                        final List<Long> pages = new ArrayList<>();
                        final List<Long> areas = new ArrayList<>();
                        for (Ioas.Area a : ioas.iopt.areas().values()) {
                            final GuestmemFile f = a.pages().guestmem();
                            final Integer known = pagesIndex.get(a.pages());
                            final int index = known != null ? known : pagesIndex.size();
                            if (known == null) {
                                pagesIndex.put(a.pages(), index);
                                pages.add(f.ino());
                                pages.add(a.pages().fileOffset(0));
                                pages.add(a.pages().npages << 12);
                            }
                            areas.add(a.start());
                            areas.add(a.length());
                            areas.add(f.ino());
                            areas.add(a.pages().fileOffset(a.startByte()));
                            areas.add((long) a.prot());
                            areas.add((long) index);
                        }
                        final List<Long> allowed = new ArrayList<>();
                        for (IovaRange r : ioas.iopt.allowedRanges()) {
                            allowed.add(r.start());
                            allowed.add(r.last());
                        }
                        w.beginNode("ioas@" + o.id()).propertyU32("id", o.id())
                                .propertyU64("alignment", ioas.iopt.iovaAlignment())
                                .propertyU32("huge-pages", ioas.iopt.largePagesDisabled() ? 0 : 1)
                                .propertyU64Array("allowed", toArray(allowed))
                                .propertyU64Array("pages", toArray(pages))
                                .propertyU64Array("areas", toArray(areas)).endNode();
                    } finally {
                        ioas.iovaLock.readLock().unlock();
                    }
                }
                case HwptPaging h -> w.beginNode("hwpt@" + o.id()).propertyU32("id", o.id()).propertyU32("ioas", h.ioas.id())
                        .propertyU32("auto", h.auto ? 1 : 0).propertyU64("domain", h.domain.ops().handoverKey()).endNode();
                case IommufdDevice d -> w.beginNode("device@" + o.id()).propertyU32("id", o.id())
                        .propertyU64("device", d.dev.handoverKey())
                        .propertyU32("hwpt", d.hwpt == null ? 0 : d.hwpt.id()).endNode();
                case Access a -> throw new KernelException(Errno.EBUSY,
                        "persistent iommufd " + pid + " has an in-kernel access; accesses are not handed over");
            }
        }
        w.endNode();
    }

    private static long[] toArray(final List<Long> l) {
        final long[] a = new long[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }

    @Override
    public synchronized void abort() {
        frozen = false;
    }

    // ------------------------------------------------------------------ incoming

    /** What {@link #validate} checked, ready to build. */
    public record Plan(List<CtxPlan> contexts) {
    }

    record AreaPlan(long iova, long length, long ino, long offset, int prot, int pages) {
    }

    record PagesPlan(long ino, long offset, long length) {
    }

    record IoasPlan(int id, long alignment, boolean hugePages, List<IovaRange> allowed, List<PagesPlan> pages,
            List<AreaPlan> areas) {
    }

    record HwptPlan(int id, int ioas, boolean auto, long domainKey) {
    }

    record DevicePlan(int id, IommuDevice dev, int hwpt) {
    }

    record CtxPlan(int persistentId, int ownerUid, int accountMode, List<IoasPlan> ioas, List<HwptPlan> hwpts,
            List<DevicePlan> devices) {
    }

    /**
     * Checks the iommufd blob against guestmemfs and the restored domains; touches nothing. An area
     * past its file's end, overlapping areas, a HWPT without its domain, a device its domain does
     * not serve: each is a {@link HandoverFormatException}, and the kernel cold-boots.
     */
    @Override
    public Plan validate(final IncomingHandover in) throws HandoverFormatException {
        return validate(in.kho(), in.plan(guestmemfs), iommu.devices(), in.plan(iommuDriver));
    }

    static Plan validate(final KhoIncoming in, final Guestmemfs fs, final List<IommuDevice> machineDevices,
            final IommuDriver.HandoverPlan tables) throws HandoverFormatException {
        final Map<Long, Set<IommuDevice>> domainsByKey = tables.domains();
        final Map<Long, Long> apertures = tables.apertures();
        final FdtReader blob = in.retrieveSubtree(NAME);
        if (blob == null) {
            return new Plan(List.of());
        }
        if (!COMPATIBLE.equals(blob.string(blob.root(), "compatible"))) {
            throw new HandoverFormatException("iommufd blob is not " + COMPATIBLE);
        }
        final List<CtxPlan> out = new ArrayList<>();
        final Set<Integer> pids = new HashSet<>();
        final Set<IommuDevice> devicesSeen = new HashSet<>();
        final Set<Long> domainsSeen = new HashSet<>();
        for (int cn : blob.children(blob.root())) {
            final int pid = blob.u32(cn, "persistent-id");
            if (pid < 1 || pid >= PersistentIds.MAX || !pids.add(pid)) {
                throw new HandoverFormatException("persistent id " + pid + " is invalid or repeated");
            }
            final Set<Integer> objIds = new HashSet<>();
            final Map<Integer, IoasPlan> ioas = new HashMap<>();
            final List<HwptPlan> hwpts = new ArrayList<>();
            final List<DevicePlan> devices = new ArrayList<>();
            for (int on : blob.children(cn)) {
                final String name = blob.nodeName(on);
                final int id = blob.u32(on, "id");
                if (id < 1 || !objIds.add(id)) {
                    throw new HandoverFormatException("ctx " + pid + ": object id " + id + " is invalid or repeated");
                }
                if (name.startsWith("ioas@")) {
                    ioas.put(id, readIoas(blob, on, id, pid, fs));
                } else if (name.startsWith("hwpt@")) {
                    hwpts.add(new HwptPlan(id, blob.u32(on, "ioas"), blob.u32(on, "auto") != 0, blob.u64(on, "domain")));
                } else if (name.startsWith("device@")) {
                    final long key = blob.u64(on, "device");
                    IommuDevice dev = null;
                    for (IommuDevice d : machineDevices) {
                        if (d.handoverKey() == key) {
                            dev = d;
                        }
                    }
                    if (dev == null || !devicesSeen.add(dev)) {
                        throw new HandoverFormatException(String.format("ctx %d: device 0x%x is unknown or claimed twice", pid, key));
                    }
                    devices.add(new DevicePlan(id, dev, blob.u32(on, "hwpt")));
                } else {
                    throw new HandoverFormatException("ctx " + pid + ": unknown node " + name);
                }
            }
            final Map<Integer, HwptPlan> hwptById = new HashMap<>();
            for (HwptPlan h : hwpts) {
                if (!ioas.containsKey(h.ioas())) {
                    throw new HandoverFormatException("ctx " + pid + ": hwpt " + h.id() + " names no IOAS");
                }
                if (!domainsByKey.containsKey(h.domainKey()) || !domainsSeen.add(h.domainKey())) {
                    throw new HandoverFormatException(String.format("ctx %d: hwpt %d's domain 0x%x was not restored, or is shared",
                            pid, h.id(), h.domainKey()));
                }
                hwptById.put(h.id(), h);
                // What the restore will reserve must be free: areas and allowed ranges inside the
                // aperture, and clear of the interrupt window the attached devices reserve.
                final long last = apertures.getOrDefault(h.domainKey(), -1L);
                final IoasPlan ip = ioas.get(h.ioas());
                for (AreaPlan a : ip.areas()) {
                    final long end = a.iova() + a.length() - 1;
                    if (Long.compareUnsigned(end, last) > 0 || ReservedRegion.INTERRUPT_WINDOW.intersects(a.iova(), end)) {
                        throw new HandoverFormatException(String.format("ctx %d ioas %d: area at 0x%x outside what hwpt %d may map",
                                pid, ip.id(), a.iova(), h.id()));
                    }
                }
                matchTables(pid, ip, h, fs, tables);
                for (IovaRange r : ip.allowed()) {
                    if (Long.compareUnsigned(r.last(), last) > 0 || ReservedRegion.INTERRUPT_WINDOW.intersects(r.start(), r.last())) {
                        throw new HandoverFormatException("ctx " + pid + " ioas " + ip.id() + ": allowed range over a reserved one");
                    }
                }
            }
            for (DevicePlan d : devices) {
                final HwptPlan h = hwptById.get(d.hwpt());
                if (h == null || !domainsByKey.get(h.domainKey()).contains(d.dev())) {
                    throw new HandoverFormatException("ctx " + pid + ": " + d.dev() + " is not translating through hwpt " + d.hwpt());
                }
            }
            out.add(new CtxPlan(pid, blob.u32(cn, "owner-uid"), blob.u32(cn, "account-mode"), List.copyOf(ioas.values()),
                    hwpts, devices));
        }
        return new Plan(out);
    }

    /**
     * The IOAS's areas must be exactly what the HWPT's restored domain maps: every page of every
     * area translates to its file page with the area's permissions, and the domain maps nothing
     * else. Walked a leaf (or a contiguous run of the file) at a time, so 64 GiB of 2 MiB leaves is
     * 32768 steps.
     */
    private static void matchTables(final int pid, final IoasPlan ip, final HwptPlan h, final Guestmemfs fs,
            final IommuDriver.HandoverPlan tables) throws HandoverFormatException {
        long areaBytes = 0;
        final Map<Long, Guestmemfs.FileMap> mapsByIno = new HashMap<>();
        for (AreaPlan a : ip.areas()) {
            final Guestmemfs.FileMap file = fs == null ? null : mapsByIno.computeIfAbsent(a.ino(), fs::mapOfInode);
            final long end = a.iova() + a.length();
            long iova = a.iova();
            while (Long.compareUnsigned(iova, end) < 0) {
                final long off = a.offset() + (iova - a.iova());
                final IommuDriver.Leaf leaf = tables.leaf(h.domainKey(), iova);
                final long filePhys = file == null ? -1 : file.phys(off);
                if (leaf == null || leaf.prot() != a.prot() || filePhys < 0 || leaf.phys() + (iova - leaf.iova()) != filePhys) {
                    throw new HandoverFormatException(String.format(
                            "ctx %d ioas %d: area at 0x%x does not match hwpt %d's table at IOVA 0x%x", pid, ip.id(), a.iova(), h.id(), iova));
                }
                iova = Math.min(Math.min(leaf.iova() + leaf.size(), iova + file.contiguous(off)), end);
            }
            areaBytes += a.length();
        }
        final long mapped = tables.mappedBytes().getOrDefault(h.domainKey(), -1L);
        if (mapped != areaBytes) {
            throw new HandoverFormatException(String.format("ctx %d ioas %d: hwpt %d's domain maps 0x%x bytes, its areas 0x%x",
                    pid, ip.id(), h.id(), mapped, areaBytes));
        }
    }

    private static IoasPlan readIoas(final FdtReader blob, final int on, final int id, final int pid, final Guestmemfs fs)
            throws HandoverFormatException {
        final long[] raw = blob.u64Array(on, "areas");
        final long[] pagesRaw = blob.u64Array(on, "pages");
        final long[] allowedRaw = blob.u64Array(on, "allowed");
        if (raw.length % AREA_CELLS != 0 || pagesRaw.length % 3 != 0 || allowedRaw.length % 2 != 0) {
            throw new HandoverFormatException("ctx " + pid + " ioas " + id + ": malformed arrays");
        }
        final Map<Long, Guestmemfs.Stat> stats = new HashMap<>(); // a VMM's areas name few files
        final List<PagesPlan> pages = new ArrayList<>();
        for (int k = 0; k < pagesRaw.length; k += 3) {
            final PagesPlan p = new PagesPlan(pagesRaw[k], pagesRaw[k + 1], pagesRaw[k + 2]);
            final Guestmemfs.Stat st = stats.computeIfAbsent(p.ino(), ino -> statIno(fs, ino));
            if (p.length() <= 0 || p.offset() < 0 || ((p.offset() | p.length()) & 0xfff) != 0
                    || st == null || p.offset() + p.length() > st.size()) {
                throw new HandoverFormatException(String.format("ctx %d ioas %d: pages %d lie past the end of inode %d",
                        pid, id, k / 3, p.ino()));
            }
            pages.add(p);
        }
        final List<AreaPlan> areas = new ArrayList<>();
        final TreeMap<Long, Long> spans = new TreeMap<>(Long::compareUnsigned);
        for (int k = 0; k < raw.length; k += AREA_CELLS) {
            final AreaPlan a = new AreaPlan(raw[k], raw[k + 1], raw[k + 2], raw[k + 3], (int) raw[k + 4], (int) raw[k + 5]);
            if (a.length() <= 0 || a.offset() < 0 || (a.prot() & ~3) != 0 || a.prot() == 0
                    || Long.compareUnsigned(a.iova() + a.length() - 1, a.iova()) < 0
                    || raw[k + 5] < 0 || raw[k + 5] >= pages.size()) {
                throw new HandoverFormatException("ctx " + pid + " ioas " + id + ": malformed area at 0x" + Long.toHexString(a.iova()));
            }
            final Guestmemfs.Stat st = stats.computeIfAbsent(a.ino(), ino -> statIno(fs, ino));
            if (st == null || a.offset() + a.length() > st.size()) {
                throw new HandoverFormatException(String.format("ctx %d ioas %d: area at 0x%x lies past the end of inode %d",
                        pid, id, a.iova(), a.ino()));
            }
            final PagesPlan p = pages.get(a.pages());
            if (p.ino() != a.ino() || a.offset() < p.offset() || a.offset() + a.length() > p.offset() + p.length()) {
                throw new HandoverFormatException(String.format("ctx %d ioas %d: area at 0x%x lies outside its pages %d",
                        pid, id, a.iova(), a.pages()));
            }
            final Map.Entry<Long, Long> before = spans.floorEntry(a.iova() + a.length() - 1);
            if (before != null && Long.compareUnsigned(before.getValue(), a.iova()) >= 0) {
                throw new HandoverFormatException(String.format("ctx %d ioas %d: areas overlap at 0x%x", pid, id, a.iova()));
            }
            spans.put(a.iova(), a.iova() + a.length() - 1);
            areas.add(a);
        }
        // A loop, not a stream: this runs once per boot, cold, where a first stream costs ~15 ms.
        final boolean[] used = new boolean[pages.size()];
        int distinct = 0;
        for (AreaPlan a : areas) {
            if (!used[a.pages()]) {
                used[a.pages()] = true;
                distinct++;
            }
        }
        if (distinct != pages.size()) {
            throw new HandoverFormatException("ctx " + pid + " ioas " + id + ": pages no area uses");
        }
        final List<IovaRange> allowed = new ArrayList<>();
        for (int k = 0; k < allowedRaw.length; k += 2) {
            if (Long.compareUnsigned(allowedRaw[k], allowedRaw[k + 1]) > 0
                    || (k > 0 && Long.compareUnsigned(allowedRaw[k], allowedRaw[k - 1]) <= 0)) {
                throw new HandoverFormatException("ctx " + pid + " ioas " + id + ": allowed ranges out of order");
            }
            allowed.add(new IovaRange(allowedRaw[k], allowedRaw[k + 1]));
        }
        final long alignment = blob.u64(on, "alignment");
        if (alignment < 1 || Long.bitCount(alignment) != 1) {
            throw new HandoverFormatException("ctx " + pid + " ioas " + id + ": alignment " + alignment);
        }
        return new IoasPlan(id, alignment, blob.u32(on, "huge-pages") != 0, allowed, pages, areas);
    }

    private static Guestmemfs.Stat statIno(final Guestmemfs fs, final long ino) {
        return fs == null ? null : fs.statInode(ino);
    }

    /**
     * Builds the validated contexts: objects keep their ids, areas their (already preserved) pins,
     * HWPTs stand for the restored domains, devices stay attached. The kernel holds each context
     * until its VMM reopens it; {@link #publish} shows them in sysfs.
     */
    @Override
    public synchronized void adopt(final Plan plan, final IncomingHandover in) {
        final Guestmemfs fs = in.plan(guestmemfs);
        for (CtxPlan cp : plan.contexts()) {
            ids.reserve(cp.persistentId());
            final IommufdCtx ctx = IommufdCtx.restored(memory, refs, iommu, this, cp.ownerUid(), cp.persistentId());
            ctx.setAccountMode(cp.accountMode());
            final Map<Integer, Ioas> ioasById = new HashMap<>();
            for (IoasPlan ip : cp.ioas()) {
                final Ioas ioas = new Ioas();
                ioas.iovaLock.writeLock().lock();
                try {
                    ioas.iopt.setIovaAlignment(ip.alignment());
                    ioas.iopt.setLargePagesDisabled(!ip.hugePages());
                    if (!ip.allowed().isEmpty()) {
                        ioas.iopt.setAllowed(ip.allowed());
                    }
                    final List<IoptPages> pages = new ArrayList<>();
                    for (PagesPlan pp : ip.pages()) {
                        pages.add(IoptPages.ofGuestmem(null, fs.openInode(pp.ino()), pp.offset(), pp.length(), refs));
                    }
                    final boolean[] referenced = new boolean[pages.size()];
                    for (AreaPlan ap : ip.areas()) {
                        if (referenced[ap.pages()]) {
                            pages.get(ap.pages()).get(); // each area holds a reference, as after a copy
                        }
                        referenced[ap.pages()] = true;
                        ioas.iopt.insertArea(new Ioas.Area(ap.iova(), ap.iova() + ap.length() - 1, ap.prot(),
                                pages.get(ap.pages()), ap.offset() - ip.pages().get(ap.pages()).offset()));
                    }
                } finally {
                    ioas.iovaLock.writeLock().unlock();
                }
                ctx.objects.insertRestored(ip.id(), ioas);
                ioasById.put(ip.id(), ioas);
            }
            final Map<Integer, HwptPaging> hwptById = new HashMap<>();
            for (HwptPlan hp : cp.hwpts()) {
                final Ioas ioas = ioasById.get(hp.ioas());
                final HwptPaging h = new HwptPaging(ioas, iommu.restoredDomain(hp.domainKey()), hp.auto(), iommu);
                ioas.adoptDomain(h);
                ioas.users.incrementAndGet();
                ctx.objects.insertRestored(hp.id(), h);
                hwptById.put(hp.id(), h);
            }
            for (DevicePlan dp : cp.devices()) {
                iommu.claimDmaOwner(dp.dev(), ctx); // nobody else may bind it until reopen or finish
                final IommufdDevice idev = new IommufdDevice(ctx, dp.dev());
                idev.users.incrementAndGet(); // the binding: the VMM's VFIO cdev adopts it on bind
                idev.users.incrementAndGet(); // the attach
                idev.restored = true;
                final HwptPaging h = hwptById.get(dp.hwpt());
                final List<IovaRange> ranges = new ArrayList<>();
                for (var r : h.domain.reservedRegions()) {
                    ranges.add(new IovaRange(r.start(), r.last()));
                }
                h.ioas.reserveForDevice(idev, ranges);
                h.users.incrementAndGet();
                h.devices++;
                idev.hwpt = h;
                ctx.objects.insertRestored(dp.id(), idev);
                ctx.get(); // a bound device holds its context
            }
            restored.put(cp.persistentId(), ctx);
            log.info("iommufd: restored persistent ctx %d (owner uid %d): %d objects", cp.persistentId(), cp.ownerUid(),
                    ctx.objectCount());
        }
    }

    /**
     * Shows every restored context as {@code /sys/kernel/iommufd_persisted/<id>/}, and lets
     * {@code reopener} install the node whose open hands it over.
     */
    public synchronized void publish(final Sysfs sysfs, final Reopener reopener) {
        for (Map.Entry<Integer, IommufdCtx> e : restored.entrySet()) {
            publishSysfs(sysfs, e.getKey(), e.getValue());
            sysfsOf.put(e.getKey(), sysfs);
            reopener.publish(e.getKey(), e.getValue());
        }
    }

    private void publishSysfs(final Sysfs sysfs, final int pid, final IommufdCtx ctx) {
        final String dir = Iommufd.persistedDir(pid);
        sysfs.mkdirs(dir);
        sysfs.add(dir, SysfsAttribute.readOnly("owner", () -> Integer.toString(ctx.ownerUid())));
        sysfs.add(dir, SysfsAttribute.readOnly("objects", () -> Integer.toString(ctx.objectCount())));
        sysfs.add(dir, SysfsAttribute.readOnly("ioas", () -> Long.toString(count(ctx, ObjectType.IOAS))));
        sysfs.add(dir, SysfsAttribute.readOnly("hwpt", () -> Long.toString(count(ctx, ObjectType.HWPT_PAGING))));
        sysfs.add(dir, SysfsAttribute.readOnly("devices", () -> Long.toString(count(ctx, ObjectType.DEVICE))));
        sysfs.add(dir, SysfsAttribute.readOnly("state", () -> restoredIds().contains(pid) ? "restored" : "reopened"));
        // Listed for ls; open(2) of this path reaches the device node that hands the context over.
        sysfs.add(dir, SysfsAttribute.readOnly("iommufd", () -> "persistent iommufd " + pid));
    }

    private static long count(final IommufdCtx ctx, final ObjectType type) {
        return ctx.objects.objects().stream().filter(o -> o.type() == type).count();
    }

    /**
     * Hands restored context {@code pid} to {@code opener}: only its owner or root (EACCES), once
     * (EBUSY). The pinned-page accounting moves to the opener; ids and attachments stay.
     */
    public IommufdCtx reopen(final int pid, final UserProcess opener) {
        final IommufdCtx ctx;
        final boolean last;
        synchronized (this) {
            ctx = restored.get(pid);
            if (ctx == null) {
                throw new KernelException(live.containsKey(pid) ? Errno.EBUSY : Errno.ENOENT,
                        "persistent iommufd " + pid + (live.containsKey(pid) ? " was reopened already" : " does not exist"));
            }
            if (!opener.root() && opener.uid() != ctx.ownerUid()) {
                throw new KernelException(Errno.EACCES, "persistent iommufd " + pid + " belongs to uid " + ctx.ownerUid());
            }
            restored.remove(pid);
            live.put(pid, ctx);
            last = restored.isEmpty();
        }
        for (IommufdObject o : ctx.objects.objects()) {
            if (o instanceof Ioas ioas) {
                ioas.iovaLock.readLock().lock();
                try {
                    for (Ioas.Area a : ioas.iopt.areas().values()) {
                        a.pages().changeOwner(opener);
                    }
                } finally {
                    ioas.iovaLock.readLock().unlock();
                }
            }
        }
        log.info("iommufd: persistent ctx %d reopened by pid %d", pid, opener.pid());
        if (last && core() != null) {
            log.info("iommufd: every persisted context was reopened: finishing the live update");
            core().finish();
        }
        return ctx;
    }

    /**
     * Finish: every context nobody reopened goes. Its devices are detached (blocked), its domains
     * freed, its areas unpinned; its persistent id is free again.
     */
    @Override
    public void finish() {
        final List<IommufdCtx> left;
        synchronized (this) {
            left = new ArrayList<>(restored.values());
        }
        for (IommufdCtx ctx : left) {
            for (IommufdObject o : ctx.objects.objects()) {
                if (o instanceof IommufdDevice d && d.restored) {
                    DeviceOps.unbind(d); // detaches: the device is blocked from now on
                }
            }
            log.info("iommufd: finish: persistent ctx %d was not reopened; freed", ctx.persistentId());
            ctx.put(); // the kernel's own reference: destroys every object
        }
    }
}
