package org.iopersist.kernel.iommufd.persist;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.guestmemfs.GuestmemFile;
import org.iopersist.kernel.guestmemfs.GuestmemfsLuoHandler;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.iommufd.HwptPaging;
import org.iopersist.kernel.iommufd.Ioas;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdDevice;
import org.iopersist.kernel.iommufd.IommufdFile;
import org.iopersist.kernel.iommufd.IommufdObject;
import org.iopersist.kernel.iommufd.IoptArea;
import org.iopersist.kernel.iommufd.IoptPages;
import org.iopersist.kernel.iommufd.PersistentIommufds;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.HwptPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.IoasPlan;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.luo.LuoFileHandler;
import org.iopersist.kernel.liveupdate.luo.LuoSession;
import org.iopersist.kernel.liveupdate.luo.MemfdLuoHandler;
import org.iopersist.kernel.mm.FrameRefs;
import org.iopersist.kernel.mm.memfd.MemFd;
import org.iopersist.uapi.Errno;

/**
 * An iommufd in a LUO session ({@code drivers/iommu/iommufd/liveupdate.c} of the IOMMU series,
 * compatible {@code iommufd-v1}). Preserve follows {@code iommufd_liveupdate_preserve}: every HWPT
 * marked with IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE is preserved, its IOAS made immutable (map and
 * unmap answer EBUSY), and each area of that IOAS must be an IOMMU_IOAS_MAP_FILE mapping (EINVAL)
 * of a memfd sealed with F_SEAL_SEAL, F_SEAL_GROW and F_SEAL_SHRINK when it was mapped (EINVAL), or
 * of a guestmemfs file, and that file must be preserved in the same session (ENOENT). The HWPT's
 * domain then goes into the VT-d handover, its tables kept in place.
 *
 * <p>Beyond the series, whose retrieve answers EOPNOTSUPP: the record also names each preserved
 * HWPT's IOAS and areas (by the session token of their file), so the next kernel rebuilds the
 * context around the adopted domains, and RETRIEVE_FD gives back a working iommufd: same object
 * ids, each HWPT marked with its token again, its IOAS immutable until the session finishes, after
 * which it maps, unmaps and attaches as any other. Objects that were not marked are not handed over.
 *
 * <pre>
 * file@F { compatible = "iommufd-v1"; token = &lt;u64&gt;; owner-uid = &lt;u32&gt;; account-mode = &lt;u32&gt;;
 *          #address-cells = &lt;1&gt;; #size-cells = &lt;0&gt;;
 *          ioas@N { reg; id; alignment; huge-pages; allowed; pages = &lt;file-token offset length ...&gt;;
 *                   areas = &lt;iova length file-token offset prot pages-index ...&gt; };   as iommufd-v1 of the RFC
 *          hwpt@N { reg; id; ioas; auto; hwpt-token = &lt;u64&gt;; domain = &lt;VT-d pgd&gt; };
 * }
 * </pre>
 */
public final class IommufdLuoHandler implements LuoFileHandler {
    public static final String COMPATIBLE = "iommufd-v1";
    /** The seals check_iopt_pages_preserved asks of a memfd. */
    public static final int REQUIRED_SEALS = MemFd.F_SEAL_SEAL | MemFd.F_SEAL_GROW | MemFd.F_SEAL_SHRINK;

    private final KernelLog log;
    private final PhysicalMemory memory;
    private final FrameRefs refs;
    private final IommuCore iommu;
    private final IommufdLiveUpdate rfc;
    private final LiveUpdateHandler<? extends IommuDriver.HandoverPlan> iommuDriver;
    /** Domains LUO restores in this boot, by handover key: each stands for one HWPT. Validate only. */
    private final Set<Long> claimedDomains = new HashSet<>();

    /**
     * @param rfc         the RFC's iommufd handler: a domain either flow restores is not the other's
     * @param iommuDriver the handler whose plan holds the restored domains
     */
    public IommufdLuoHandler(final KernelLog log, final PhysicalMemory memory, final FrameRefs refs, final IommuCore iommu,
            final IommufdLiveUpdate rfc, final LiveUpdateHandler<? extends IommuDriver.HandoverPlan> iommuDriver) {
        this.log = log;
        this.memory = memory;
        this.refs = refs;
        this.iommu = iommu;
        this.rfc = rfc;
        this.iommuDriver = iommuDriver;
    }

    @Override
    public String compatible() {
        return COMPATIBLE;
    }

    @Override
    public boolean canPreserve(final KernelFile file) {
        return file instanceof IommufdFile;
    }

    // ------------------------------------------------------------------ this boot

    @Override
    public Preserved preserve(final OpenFile file, final long token, final LuoSession session) {
        final IommufdCtx ctx = ((IommufdFile) file.file()).ctx();
        if (ctx.persistent()) {
            throw new KernelException(Errno.EINVAL, "persistent iommufd " + ctx.persistentId()
                    + " goes the RFC's way (finalize, sysfs reopen), not through a session");
        }
        synchronized (ctx.attachLock()) {
            final List<HwptPaging> marked = new ArrayList<>();
            for (IommufdObject o : ctx.objects()) {
                if (o instanceof HwptPaging h && h.liveupdateMarked()) {
                    marked.add(h);
                }
            }
            final List<Ioas> immutable = new ArrayList<>();
            final Map<IoptPages, Long> fileTokens = new IdentityHashMap<>();
            final List<HwptPaging> preserved = new ArrayList<>();
            try {
                for (HwptPaging h : marked) {
                    if (!h.ioas().liveupdateImmutable()) {
                        // iommufd_preserve_hwpt: immutable first, so nothing changes under the check.
                        h.ioas().liveupdateImmutable(true);
                        immutable.add(h.ioas());
                        checkPagesPreserved(h, session, fileTokens);
                    }
                }
                for (HwptPaging h : marked) {
                    iommu.preserveDomain(h.domain(), true); // iommu_domain_preserve: its tables in the handover
                    h.liveupdatePreserved(true);
                    preserved.add(h);
                }
            } catch (RuntimeException e) {
                for (HwptPaging h : preserved) {
                    h.liveupdatePreserved(false);
                    iommu.preserveDomain(h.domain(), false);
                }
                for (Ioas ioas : immutable) {
                    ioas.liveupdateImmutable(false);
                }
                throw e;
            }
            ctx.liveupdatePreserved(true);
            log.info("iommufd: preserved as token 0x%x: %d marked HWPTs, %d IOAS made immutable", token, marked.size(),
                    immutable.size());
            return new Out(ctx, token, marked, immutable, fileTokens);
        }
    }

    /**
     * check_iopt_pages_preserved, over every area of the HWPT's IOAS: file pages only (EINVAL), a
     * memfd sealed as {@link #REQUIRED_SEALS} when mapped (EINVAL), preserved in this session (ENOENT).
     */
    private static void checkPagesPreserved(final HwptPaging h, final LuoSession session, final Map<IoptPages, Long> tokens) {
        for (IoptArea a : h.ioas().state().areas()) {
            final IoptPages p = a.pages();
            if (!p.byFile()) {
                throw new KernelException(Errno.EINVAL, String.format("IOAS %d: the area at 0x%x is not an IOMMU_IOAS_MAP_FILE mapping",
                        h.ioas().id(), a.start()));
            }
            final Long token;
            if (p.memfd() != null) {
                if ((p.seals() & REQUIRED_SEALS) != REQUIRED_SEALS) {
                    throw new KernelException(Errno.EINVAL, String.format(
                            "IOAS %d: the memfd behind 0x%x was not sealed against growing, shrinking and new seals when mapped",
                            h.ioas().id(), a.start()));
                }
                token = session.tokenOf(p.memfd());
            } else {
                final long ino = p.guestmem().ino();
                token = session.tokenOf(f -> f instanceof GuestmemFile g && g.ino() == ino);
            }
            if (token == null) {
                throw new KernelException(Errno.ENOENT, String.format("IOAS %d: the file behind 0x%x is not preserved in %s",
                        h.ioas().id(), a.start(), session));
            }
            tokens.put(p, token);
        }
    }

    /** A preserved iommufd of this boot. */
    public final class Out implements Preserved {
        private final IommufdCtx ctx;
        private final long token;
        private final List<HwptPaging> hwpts;
        private final List<Ioas> ioases;
        private final Map<IoptPages, Long> fileTokens;

        Out(final IommufdCtx ctx, final long token, final List<HwptPaging> hwpts, final List<Ioas> ioases,
                final Map<IoptPages, Long> fileTokens) {
            this.ctx = ctx;
            this.token = token;
            this.hwpts = List.copyOf(hwpts);
            this.ioases = List.copyOf(ioases);
            this.fileTokens = fileTokens;
        }

        public IommufdCtx ctx() {
            return ctx;
        }

        /** Its token in the session: what a device's record names. */
        public long token() {
            return token;
        }

        @Override
        public void serialize(final FdtWriter w) {
            w.propertyU32("owner-uid", ctx.ownerUid()).propertyU32("account-mode", ctx.accountMode())
                    .propertyU32("#address-cells", 1).propertyU32("#size-cells", 0);
            for (Ioas ioas : ioases) {
                HandoverWriter.writeIoas(w, ioas, fileTokens::get);
            }
            for (HwptPaging h : hwpts) {
                w.beginNode("hwpt@" + h.id()).propertyU32("reg", h.id()).propertyU32("id", h.id()).propertyU32("ioas", h.ioas().id())
                        .propertyU32("auto", h.auto() ? 1 : 0).propertyU64("hwpt-token", h.liveupdateToken())
                        .propertyU64("domain", h.domain().ops().handoverKey()).endNode();
            }
        }

        /** The session closed before the kexec: the domains are ordinary again, the IOAS mutable. */
        @Override
        public void unpreserve() {
            synchronized (ctx.attachLock()) {
                for (HwptPaging h : hwpts) {
                    h.liveupdatePreserved(false);
                    iommu.preserveDomain(h.domain(), false);
                }
                for (Ioas ioas : ioases) {
                    ioas.liveupdateImmutable(false);
                }
                ctx.liveupdatePreserved(false);
            }
        }
    }

    // ------------------------------------------------------------------ the next boot

    @Override
    public Restorable validate(final FdtReader blob, final int node, final LuoSession session, final IncomingHandover in)
            throws HandoverFormatException {
        final String where = "iommufd in session '" + session.name() + "'";
        final IommuDriver.HandoverPlan tables = in.plan(iommuDriver);
        final Set<Long> rfcDomains = new HashSet<>();
        for (IommufdHandover.CtxPlan cp : in.plan(rfc).contexts()) {
            for (HwptPlan h : cp.hwpts()) {
                rfcDomains.add(h.domainKey());
            }
        }
        final Map<Integer, IoasPlan> ioas = new HashMap<>();
        final Map<Long, HwptPlan> hwpts = new LinkedHashMap<>();
        final Set<Integer> ids = new HashSet<>();
        for (int on : blob.children(node)) {
            final String name = blob.nodeName(on);
            final int id = blob.u32(on, "id");
            if (id < 1 || !ids.add(id)) {
                throw new HandoverFormatException(where + ": object id " + id + " is invalid or repeated");
            }
            if (name.startsWith("ioas@")) {
                ioas.put(id, HandoverValidator.readIoas(blob, on, id, where, t -> fileSize(session, t), "file token"));
            } else if (name.startsWith("hwpt@")) {
                final long hwptToken = blob.u64(on, "hwpt-token");
                final HwptPlan h = new HwptPlan(id, blob.u32(on, "ioas"), blob.u32(on, "auto") != 0, blob.u64(on, "domain"));
                if (hwpts.put(hwptToken, h) != null) {
                    throw new HandoverFormatException(String.format("%s: hwpt token 0x%x repeats", where, hwptToken));
                }
            } else {
                throw new HandoverFormatException(where + ": unknown node " + name);
            }
        }
        for (HwptPlan h : hwpts.values()) {
            final IoasPlan ip = ioas.get(h.ioas());
            if (ip == null) {
                throw new HandoverFormatException(where + ": hwpt " + h.id() + " names no IOAS");
            }
            if (!tables.domains().containsKey(h.domainKey()) || rfcDomains.contains(h.domainKey())
                    || !claimedDomains.add(h.domainKey())) {
                throw new HandoverFormatException(String.format("%s: hwpt %d's domain 0x%x was not restored, or is another's",
                        where, h.id(), h.domainKey()));
            }
            HandoverValidator.checkFits(where, ip, h.id(), tables.apertures().getOrDefault(h.domainKey(), -1L));
        }
        return new In(session, blob.u32(node, "owner-uid"), blob.u32(node, "account-mode"), List.copyOf(ioas.values()), hwpts,
                tables.domains());
    }

    /** The size of the file preserved under {@code token} in {@code session} (a memfd or a guestmemfs file), or -1. */
    private static long fileSize(final LuoSession session, final long token) {
        final MemfdLuoHandler.In m = session.restorable(token, MemfdLuoHandler.In.class);
        if (m != null) {
            return m.size();
        }
        final GuestmemfsLuoHandler.In g = session.restorable(token, GuestmemfsLuoHandler.In.class);
        return g != null ? g.size() : -1;
    }

    /**
     * An iommufd handed over: kernel-held from adopt (its HWPTs standing for the adopted domains,
     * the devices still translating through them) until retrieve hands it to the caller.
     */
    public final class In implements Restorable {
        private final LuoSession session;
        private final int ownerUid;
        private final int accountMode;
        private final List<IoasPlan> ioasPlans;
        private final Map<Long, HwptPlan> hwptPlans;
        private final Map<Long, java.util.Set<IommuDevice>> servedBy;
        private final Map<Long, HwptPaging> hwpts = new HashMap<>();
        private final List<Ioas> ioases = new ArrayList<>();
        /** Device ids the VFIO records took (validate only). */
        private final Set<Integer> deviceIds = new HashSet<>();
        private IommufdCtx ctx;
        private boolean preserved;

        In(final LuoSession session, final int ownerUid, final int accountMode, final List<IoasPlan> ioasPlans,
                final Map<Long, HwptPlan> hwptPlans, final Map<Long, java.util.Set<IommuDevice>> servedBy) {
            this.session = session;
            this.ownerUid = ownerUid;
            this.accountMode = accountMode;
            this.ioasPlans = ioasPlans;
            this.hwptPlans = hwptPlans;
            this.servedBy = servedBy;
        }

        /**
         * Validate only: takes {@code id} for a device record of this iommufd, if it is a valid
         * object id (≥ 1) no IOAS, HWPT or other device of the context holds.
         */
        public boolean claimDeviceId(final int id) {
            if (id < 1 || !deviceIds.add(id)) {
                return false;
            }
            for (IoasPlan ip : ioasPlans) {
                if (ip.id() == id) {
                    return false;
                }
            }
            for (HwptPlan hp : hwptPlans.values()) {
                if (hp.id() == id) {
                    return false;
                }
            }
            return true;
        }

        /** Whether the HWPT under {@code hwptToken} was handed over and its domain serves {@code dev}. */
        public boolean serves(final long hwptToken, final IommuDevice dev) {
            final HwptPlan h = hwptPlans.get(hwptToken);
            return h != null && servedBy.getOrDefault(h.domainKey(), Set.of()).contains(dev);
        }

        @Override
        public void adopt(final IncomingHandover in) {
            final PersistentIommufds registry = rfc.contexts();
            ctx = IommufdCtx.restore(memory, refs, iommu, registry, ownerUid, 0, accountMode); // the kernel's reference
            final Map<Integer, Ioas> ioasById = new HashMap<>();
            for (IoasPlan ip : ioasPlans) {
                final Ioas ioas = Ioas.restore(ctx, ip.id(), Restorer.ioasState(ip, pp -> open(pp.ino(), pp.offset(), pp.length())));
                ioasById.put(ip.id(), ioas);
                ioases.add(ioas);
            }
            synchronized (ctx.attachLock()) {
                for (Map.Entry<Long, HwptPlan> e : hwptPlans.entrySet()) {
                    final HwptPlan hp = e.getValue();
                    final HwptPaging h = HwptPaging.restore(ctx, hp.id(), ioasById.get(hp.ioas()), hp.domainKey(), hp.auto());
                    h.liveupdateMark(e.getKey());
                    h.liveupdatePreserved(true);
                    iommu.preserveDomain(h.domain(), true); // preserved device by device from now on
                    hwpts.put(e.getKey(), h);
                }
                for (Ioas ioas : ioases) {
                    ioas.liveupdateImmutable(true);
                }
                ctx.liveupdatePreserved(true);
                preserved = true;
            }
            log.info("iommufd: restored from session '%s': %d HWPTs, %d IOAS", session.name(), hwpts.size(), ioases.size());
        }

        private IoptPages open(final long fileToken, final long offset, final long length) {
            final MemfdLuoHandler.In m = session.restorable(fileToken, MemfdLuoHandler.In.class);
            if (m != null) {
                return IoptPages.restoreFile(m.memfd(), offset, length);
            }
            return IoptPages.restoreGuestmemByFile(session.restorable(fileToken, GuestmemfsLuoHandler.In.class).file(), offset,
                    length, refs);
        }

        /** The restored context. */
        public IommufdCtx ctx() {
            return ctx;
        }

        /** A device of this context restored by its VFIO record, attached to the HWPT under {@code hwptToken}. */
        public IommufdDevice restoreDevice(final int id, final IommuDevice dev, final long hwptToken) {
            return IommufdDevice.restoreForRetrieve(ctx, id, dev, hwpts.get(hwptToken));
        }

        /** The kernel's reference moves into the new file; the pinned-page charge moves to the caller. */
        @Override
        public OpenFile retrieve(final UserProcess caller) {
            ctx.changeProcess(caller);
            return new OpenFile(new IommufdFile(ctx));
        }

        /** The session finished: the context is an ordinary one again (never retrieved: freed). */
        @Override
        public void finish(final boolean retrieved) {
            dropped();
            if (!retrieved) {
                ctx.put(); // the kernel's reference: destroys what no bound device holds
            }
        }

        /** The domains are no longer preserved, the IOAS mutable again; the marks stay. */
        @Override
        public void dropped() {
            synchronized (ctx.attachLock()) {
                if (!preserved) {
                    return;
                }
                preserved = false;
                for (HwptPaging h : hwpts.values()) {
                    h.liveupdatePreserved(false);
                    iommu.preserveDomain(h.domain(), false);
                }
                for (Ioas ioas : ioases) {
                    ioas.liveupdateImmutable(false);
                }
                ctx.liveupdatePreserved(false);
            }
        }
    }
}
