package org.iopersist.hw.vtd;

import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * One VT-d DMA-remapping unit: the hardware side of a register window.
 *
 * <p>It translates {@code (source-id, iova, access)} to a physical address through the root table,
 * a legacy-mode context entry and a 3-, 4- or 5-level second-level table, all read from physical
 * memory with acquire loads in the specification's bit layout. Results are cached in a context cache
 * and a DID-tagged IOTLB, and served from there until software invalidates them through the queued
 * invalidation interface, as hardware does. A failed translation records a fault and returns a
 * negative reason: the DMA is aborted and never touches memory.
 *
 * <p><b>Commands.</b> {@link #service()} is the hardware's poll of its command registers (GCMD and
 * IQT). The machine's poller thread calls it; tests without a poller may call it directly.
 *
 * <p><b>Invalidation completes only when no request can still use what it removed.</b> Each DMA runs
 * between {@link #begin} and {@link #end}, which publish the requester's in-flight generation. An
 * invalidation descriptor bumps the generation, purges the caches, and before the next wait
 * descriptor writes its status the unit bumps again and drains every requester that entered under an
 * older generation. An insert into a cache re-reads the generation afterwards and withdraws its entry
 * if it changed, so a walk that began before the table change cannot leave a stale entry behind.
 * Together: after a wait descriptor completes, no device reaches a page the preceding invalidations
 * removed, which is what lets the kernel free table pages.
 */
public final class RemappingUnit {
    /** The x86 interrupt window: a DMA write here is an interrupt request, not a memory access. */
    public static final long INTERRUPT_BASE = 0xFEE0_0000L;
    public static final long INTERRUPT_LAST = 0xFEEF_FFFFL;

    private final int index;
    private final PhysicalMemory memory;
    private final Mmio.Window regs;
    private final UnitConfig config;
    private final Capability cap;
    private final ExtCapability ecap;
    private final long hawMask;
    private final Iotlb iotlb;
    private final PagingStructureCache psc;
    private final ContextCache contextCache;
    private final CopyOnWriteArrayList<Requester> requesters = new CopyOnWriteArrayList<>();
    private final AtomicLong generation = new AtomicLong(1);
    private final Object faultLock = new Object();

    // Hardware-internal state: what the unit latched; guarded by "this" (service) except where volatile.
    private volatile long rootTable;
    private volatile boolean translationEnabled;
    private boolean queueEnabled;
    private long queueBase;
    private int queueSlots;
    private int nextFaultRecord; // guarded by faultLock

    private final LongAdder iotlbHits = new LongAdder();
    private final LongAdder iotlbMisses = new LongAdder();
    private final LongAdder pscHits = new LongAdder();
    private final LongAdder faultCount = new LongAdder();
    private final LongAdder descriptorsDone = new LongAdder();

    public RemappingUnit(final int index, final PhysicalMemory memory, final Mmio.Window regs, final UnitConfig config) {
        this.index = index;
        this.memory = memory;
        this.regs = regs;
        this.config = config;
        this.cap = config.capability();
        this.ecap = config.extCapability();
        this.hawMask = (1L << config.haw()) - 1;
        this.iotlb = new Iotlb(config.iotlbSize());
        this.psc = new PagingStructureCache(Math.max(TagCache.WAYS, config.iotlbSize() / 4));
        this.contextCache = new ContextCache(config.contextCacheSize());
    }

    /** Power-on reset: identification registers written, everything else zero, caches empty. */
    public synchronized void powerOn() {
        for (long off = 0; off < Mmio.WINDOW_SIZE; off += 8) {
            regs.write64(off, 0);
        }
        regs.write32(VtdRegisters.VER, VtdRegisters.VERSION);
        regs.write64(VtdRegisters.CAP, cap.encode());
        regs.write64(VtdRegisters.ECAP, ecap.encode());
        rootTable = 0;
        translationEnabled = false;
        queueEnabled = false;
        iotlb.invalidateGlobal();
        psc.invalidateGlobal();
        contextCache.invalidateGlobal();
        synchronized (faultLock) {
            nextFaultRecord = 0;
        }
    }

    /**
     * Takes over a unit whose registers are already live (a machine process reattaching to the MMIO
     * file): latch what GSTS says is in effect.
     */
    public synchronized void resume() {
        final int gsts = regs.read32(VtdRegisters.GSTS);
        if ((gsts & VtdRegisters.GSTS_RTPS) != 0) {
            rootTable = regs.read64(VtdRegisters.RTADDR) & VtdRegisters.RTADDR_ADDR_MASK;
        }
        translationEnabled = (gsts & VtdRegisters.GSTS_TES) != 0;
        if ((gsts & VtdRegisters.GSTS_QIES) != 0) {
            latchQueue();
        }
    }

    public int index() {
        return index;
    }

    public UnitConfig config() {
        return config;
    }

    public Capability capability() {
        return cap;
    }

    public Mmio.Window registers() {
        return regs;
    }

    public Iotlb iotlb() {
        return iotlb;
    }

    public ContextCache contextCache() {
        return contextCache;
    }

    public void attach(final Requester requester) {
        requesters.addIfAbsent(requester);
    }

    public void detach(final Requester requester) {
        requesters.remove(requester);
    }

    public boolean translationEnabled() {
        return translationEnabled;
    }

    /** The root table the unit latched at its last SRTP. */
    public long rootTable() {
        return rootTable;
    }

    // ---------------------------------------------------------------- commands

    /**
     * Polls GCMD and the invalidation queue once and acts on what changed. Returns true if it did
     * anything, so a poller can back off when idle.
     */
    public synchronized boolean service() {
        boolean worked = serviceGlobalCommand();
        worked |= serviceQueue();
        serviceFaultStatus();
        return worked;
    }

    private boolean serviceGlobalCommand() {
        final int gcmd = regs.read32(VtdRegisters.GCMD);
        int gsts = regs.read32(VtdRegisters.GSTS);
        final int before = gsts;
        int consumed = 0;
        if ((gcmd & VtdRegisters.GCMD_SRTP) != 0) {
            // Latching a root pointer does not flush caches: software must invalidate globally.
            rootTable = regs.read64(VtdRegisters.RTADDR) & VtdRegisters.RTADDR_ADDR_MASK;
            gsts |= VtdRegisters.GSTS_RTPS;
            consumed |= VtdRegisters.GCMD_SRTP;
        }
        if ((gcmd & VtdRegisters.GCMD_WBF) != 0) {
            consumed |= VtdRegisters.GCMD_WBF; // coherent model: nothing buffered
        }
        if ((gcmd & (VtdRegisters.GCMD_SFL | VtdRegisters.GCMD_SIRTP)) != 0) {
            consumed |= gcmd & (VtdRegisters.GCMD_SFL | VtdRegisters.GCMD_SIRTP);
        }
        final boolean te = (gcmd & VtdRegisters.GCMD_TE) != 0;
        if (te != translationEnabled) {
            translationEnabled = te;
            gsts = te ? gsts | VtdRegisters.GSTS_TES : gsts & ~VtdRegisters.GSTS_TES;
        }
        final boolean qie = (gcmd & VtdRegisters.GCMD_QIE) != 0;
        if (qie != queueEnabled) {
            if (qie) {
                regs.write64(VtdRegisters.IQH, 0);
                latchQueue();
                gsts |= VtdRegisters.GSTS_QIES;
            } else {
                queueEnabled = false;
                gsts &= ~VtdRegisters.GSTS_QIES;
            }
        }
        if (gsts != before) {
            regs.write32(VtdRegisters.GSTS, gsts);
        }
        if (consumed != 0) {
            regs.clearBits32(VtdRegisters.GCMD, consumed);
        }
        return gsts != before || consumed != 0;
    }

    private void latchQueue() {
        final long iqa = regs.read64(VtdRegisters.IQA);
        queueBase = iqa & VtdRegisters.IQA_ADDR_MASK;
        queueSlots = VtdRegisters.queueSlots(iqa);
        queueEnabled = true;
    }

    /** The ring the unit reads while queued invalidation is on (base, or -1 when off). */
    public synchronized long queueBase() {
        return queueEnabled ? queueBase : -1;
    }

    private boolean serviceQueue() {
        if (!queueEnabled || (regs.read32(VtdRegisters.FSTS) & VtdRegisters.FSTS_IQE) != 0) {
            return false;
        }
        final long ringBytes = queueSlots * InvDesc.SIZE;
        final long tail = regs.read64(VtdRegisters.IQT);
        long head = regs.read64(VtdRegisters.IQH);
        if (head == tail) {
            return false;
        }
        if ((tail & 0xF) != 0 || tail >= ringBytes || !memory.contains(queueBase, ringBytes)) {
            regs.setBits32(VtdRegisters.FSTS, VtdRegisters.FSTS_IQE);
            return true;
        }
        boolean purged = false;
        while (head != tail) {
            final long qw0 = memory.load64Acquire(queueBase + head);
            final long qw1 = memory.load64Acquire(queueBase + head + 8);
            final int outcome = execute(qw0, qw1, purged);
            if (outcome < 0) {
                // Malformed: stop here; IQH keeps pointing at the bad descriptor.
                regs.write64(VtdRegisters.IQERCD, head >>> 4);
                regs.setBits32(VtdRegisters.FSTS, VtdRegisters.FSTS_IQE);
                break;
            }
            purged = outcome == 1;
            descriptorsDone.increment();
            head = (head + InvDesc.SIZE) % ringBytes;
            regs.write64(VtdRegisters.IQH, head);
        }
        if (purged) {
            drain();
        }
        return true;
    }

    /** Executes one descriptor: -1 malformed, 1 purged a cache (drain owed), 0 otherwise. */
    private int execute(final long qw0, final long qw1, final boolean drainOwed) {
        switch (InvDesc.type(qw0)) {
            case InvDesc.TYPE_CONTEXT -> {
                if ((qw0 & InvDesc.CC_RESERVED_QW0) != 0 || qw1 != 0) {
                    return -1;
                }
                final int g = InvDesc.granularity(qw0);
                if (g == 0) {
                    return -1;
                }
                generation.incrementAndGet();
                switch (g) {
                    case InvDesc.G_GLOBAL -> contextCache.invalidateGlobal();
                    case InvDesc.G_DOMAIN -> contextCache.invalidateDomain(InvDesc.did(qw0));
                    default -> contextCache.invalidateDevice(InvDesc.sid(qw0), InvDesc.fm(qw0));
                }
                return 1;
            }
            case InvDesc.TYPE_IOTLB -> {
                if ((qw0 & InvDesc.IOTLB_RESERVED_QW0) != 0 || (qw1 & InvDesc.IOTLB_RESERVED_QW1) != 0) {
                    return -1;
                }
                final int g = InvDesc.granularity(qw0);
                final int am = (int) (qw1 & 0x3F);
                if (g == 0 || (g == InvDesc.G_PAGE && (!cap.psi() || am > cap.mamv()))) {
                    return -1;
                }
                generation.incrementAndGet();
                switch (g) {
                    case InvDesc.G_GLOBAL -> {
                        iotlb.invalidateGlobal();
                        psc.invalidateGlobal();
                    }
                    case InvDesc.G_DOMAIN -> {
                        iotlb.invalidateDomain(InvDesc.did(qw0));
                        psc.invalidateDomain(InvDesc.did(qw0));
                    }
                    default -> {
                        iotlb.invalidatePages(InvDesc.did(qw0), qw1 & ~0xFFFL, am);
                        if ((qw1 & InvDesc.IOTLB_IH) == 0) {
                            // Without the hint, directory entries in the range may have changed too.
                            psc.invalidatePages(InvDesc.did(qw0), qw1 & ~0xFFFL, am);
                        }
                    }
                }
                return 1;
            }
            case InvDesc.TYPE_WAIT -> {
                if ((qw0 & InvDesc.WAIT_RESERVED_QW0) != 0 || (qw1 & InvDesc.WAIT_RESERVED_QW1) != 0) {
                    return -1;
                }
                if ((qw0 & InvDesc.WAIT_SW) != 0 && !memory.contains(qw1, 4)) {
                    return -1;
                }
                if (drainOwed) {
                    drain();
                }
                if ((qw0 & InvDesc.WAIT_SW) != 0) {
                    memory.store32Release(qw1, (int) (qw0 >>> 32));
                }
                if ((qw0 & InvDesc.WAIT_IF) != 0) {
                    regs.setBits32(VtdRegisters.ICS, VtdRegisters.ICS_IWC);
                }
                return 0;
            }
            default -> {
                return -1;
            }
        }
    }

    /** Waits until no requester is still in flight under a generation older than now. */
    private void drain() {
        final long target = generation.incrementAndGet();
        for (Requester r : requesters) {
            int spins = 0;
            while (r.active() < target) {
                if (++spins < 1000) {
                    Thread.onSpinWait();
                } else {
                    Thread.yield();
                }
            }
        }
    }

    private void serviceFaultStatus() {
        final int fsts = regs.read32(VtdRegisters.FSTS);
        if ((fsts & VtdRegisters.FSTS_PPF) == 0) {
            return;
        }
        synchronized (faultLock) {
            for (int i = 0; i < cap.nfr(); i++) {
                if ((regs.read64(VtdRegisters.frcd(i) + 8) & VtdRegisters.FRCD_HI_F) != 0) {
                    return;
                }
            }
            regs.clearBits32(VtdRegisters.FSTS, VtdRegisters.FSTS_PPF);
        }
    }

    // ---------------------------------------------------------------- translation

    /** Marks {@code r} in flight; every translate and memory access of one DMA happens before {@link #end}. */
    public void begin(final Requester r) {
        r.enter(generation.get());
    }

    public void end(final Requester r) {
        r.exit();
    }

    public static boolean isInterruptWindow(final long iova) {
        return iova >= INTERRUPT_BASE && iova <= INTERRUPT_LAST;
    }

    /**
     * Translates one access of requester {@code r} (between {@link #begin} and {@link #end}).
     *
     * @return the physical address, or {@code -reason} ({@link FaultReason#code}) after recording
     *         the fault; never allocates
     */
    public long translate(final Requester r, final long iova, final boolean write) {
        if (!translationEnabled) {
            return memory.contains(iova, 1) ? iova : fault(r, iova, write, FaultReason.PAGING_ENTRY_INVALID, false);
        }
        final int sid = r.sid();
        final long[] ctx = r.scratch;
        if (!contextCache.lookup(sid, ctx)) {
            final long reason = readContext(sid, ctx);
            if (reason != 0) {
                return fault(r, iova, write, FaultReason.ofCode((int) reason), false);
            }
            final int way = contextCache.insert(sid, ctx[0], ctx[1]);
            if (way >= 0 && generation.get() != r.generation) {
                contextCache.remove(way, sid);
            }
        }
        final long lo = ctx[0];
        final long hi = ctx[1];
        final boolean fpd = ContextEntry.faultProcessingDisabled(lo);
        final int did = ContextEntry.domainId(hi);
        final long cached = iotlb.lookup(did, iova);
        if (cached != Iotlb.NO_ENTRY) {
            iotlbHits.increment();
            if ((cached & (write ? SlPte.W : SlPte.R)) == 0) {
                return fault(r, iova, write, write ? FaultReason.WRITE : FaultReason.READ, fpd);
            }
            final long size = SlPte.levelSize(Iotlb.levelOfValue(cached));
            return (cached & ~(size - 1) & SlPte.ADDR_MASK_52) | (iova & (size - 1));
        }
        iotlbMisses.increment();
        return walk(r, iova, write, lo, hi, did, fpd);
    }

    /** Reads root and context entry for {@code sid} into {@code out}; returns 0 or a fault reason code. */
    private long readContext(final int sid, final long[] out) {
        final long root = rootTable;
        final int bus = sid >>> 8;
        final long rootEntry = RootEntry.address(root, bus);
        if (!memory.contains(rootEntry, RootEntry.SIZE)) {
            return FaultReason.ROOT_TABLE_INVALID.code;
        }
        final long rootLo = memory.load64Acquire(rootEntry);
        final long rootHi = memory.load64(rootEntry + 8);
        final int rootFault = rootEntryFault(rootLo, rootHi, hawMask);
        if (rootFault != 0) {
            return rootFault;
        }
        final long ctxEntry = ContextEntry.address(RootEntry.contextTable(rootLo), sid & 0xFF);
        if (!memory.contains(ctxEntry, ContextEntry.SIZE)) {
            return FaultReason.CONTEXT_TABLE_INVALID.code;
        }
        final long lo = memory.load64Acquire(ctxEntry);
        final long hi = memory.load64(ctxEntry + 8);
        final int ctxFault = contextEntryFault(lo, hi, hawMask, cap);
        if (ctxFault != 0) {
            return ctxFault;
        }
        out[0] = lo;
        out[1] = hi;
        return 0;
    }

    /** The fault a root entry raises (not present, reserved bits, a context table above HAW), or 0. */
    static int rootEntryFault(final long lo, final long hi, final long hawMask) {
        if (!RootEntry.present(lo)) {
            return FaultReason.ROOT_NOT_PRESENT.code;
        }
        if ((lo & RootEntry.LO_RESERVED) != 0 || hi != 0 || (RootEntry.contextTable(lo) & ~hawMask) != 0) {
            return FaultReason.ROOT_RESERVED.code;
        }
        return 0;
    }

    /**
     * The fault a legacy-mode context entry raises (not present, reserved bits, a table above HAW,
     * a translation type, width or DID this unit does not take), or 0.
     */
    static int contextEntryFault(final long lo, final long hi, final long hawMask, final Capability cap) {
        if (!ContextEntry.present(lo)) {
            return FaultReason.CONTEXT_NOT_PRESENT.code;
        }
        if ((lo & ContextEntry.LO_RESERVED) != 0 || (hi & ContextEntry.HI_RESERVED) != 0
                || (ContextEntry.slptptr(lo) & ~hawMask) != 0) {
            return FaultReason.CONTEXT_RESERVED.code;
        }
        final int tt = ContextEntry.translationType(lo);
        final int aw = ContextEntry.addressWidth(hi);
        if (tt != ContextEntry.TT_MULTI_LEVEL || aw < 1 || aw > 3 || !cap.supportsLevels(ContextEntry.levels(aw))
                || ContextEntry.domainId(hi) >= cap.domains()) {
            return FaultReason.CONTEXT_INVALID.code;
        }
        return 0;
    }

    /** Input address bits a context entry with AW {@code aw} translates on this unit: beyond them is a fault. */
    static int inputWidth(final int aw, final Capability cap) {
        return Math.min(30 + 9 * aw, cap.mgaw());
    }

    /** True if the present entry {@code pte} at {@code level} is a leaf: level 1, or PS at level 2 or 3. */
    static boolean isLeaf(final long pte, final int level) {
        return level == 1 || (SlPte.largeLeaf(pte) && level <= 3);
    }

    /** True if the present entry {@code pte} at {@code level} has a reserved bit set, or PS of a size SLLPS lacks. */
    static boolean pagingEntryReserved(final long pte, final int level, final int haw, final Capability cap) {
        final boolean ps = SlPte.largeLeaf(pte);
        return (pte & SlPte.reservedMask(level, haw, isLeaf(pte, level))) != 0
                || (ps && level == 2 && !cap.supports2M()) || (ps && level == 3 && !cap.supports1G());
    }

    private long walk(final Requester r, final long iova, final boolean write, final long lo, final long hi,
                      final int did, final boolean fpd) {
        final int aw = ContextEntry.addressWidth(hi);
        final int levels = ContextEntry.levels(aw);
        final int width = inputWidth(aw, cap);
        if ((iova >>> width) != 0) {
            return fault(r, iova, write, FaultReason.ADDRESS_BEYOND_MGAW, fpd);
        }
        long table = ContextEntry.slptptr(lo);
        boolean readable = true;
        boolean writable = true;
        int start = levels;
        // The deepest cached directory entry covering iova: the walk goes on below it.
        for (int l = 2; l <= levels; l++) {
            final long cached = psc.lookup(did, l, iova);
            if (cached != PagingStructureCache.NO_ENTRY) {
                pscHits.increment();
                table = cached & SlPte.ADDR_MASK_52;
                readable = (cached & SlPte.R) != 0;
                writable = (cached & SlPte.W) != 0;
                start = l - 1;
                break;
            }
        }
        for (int level = start; level >= 1; level--) {
            final long pteAddr = table + (long) SlPte.index(iova, level) * SlPte.SIZE;
            if (!memory.contains(pteAddr, SlPte.SIZE)) {
                return fault(r, iova, write, FaultReason.PAGING_ENTRY_INVALID, fpd);
            }
            final long pte = memory.load64Acquire(pteAddr);
            if (!SlPte.present(pte)) {
                return fault(r, iova, write, write ? FaultReason.WRITE : FaultReason.READ, fpd);
            }
            final boolean leaf = isLeaf(pte, level);
            if (pagingEntryReserved(pte, level, config.haw(), cap)) {
                return fault(r, iova, write, FaultReason.PAGING_RESERVED, fpd);
            }
            readable &= (pte & SlPte.R) != 0;
            writable &= (pte & SlPte.W) != 0;
            if (leaf) {
                final long size = SlPte.levelSize(level);
                final long page = SlPte.address(pte);
                if (!memory.contains(page, size)) {
                    return fault(r, iova, write, FaultReason.PAGING_ENTRY_INVALID, fpd);
                }
                final int way = iotlb.insert(did, level, iova, page, readable, writable);
                if (way >= 0 && generation.get() != r.generation) {
                    iotlb.remove(way, did, level, iova);
                }
                if (write ? !writable : !readable) {
                    return fault(r, iova, write, write ? FaultReason.WRITE : FaultReason.READ, fpd);
                }
                return page | (iova & (size - 1));
            }
            table = SlPte.address(pte);
            final int way = psc.insert(did, level, iova, table, readable, writable);
            if (way >= 0 && generation.get() != r.generation) {
                psc.remove(way, did, level, iova); // an invalidation ran during the walk: do not keep it
            }
        }
        throw new AssertionError("walk ended without a leaf");
    }

    private long fault(final Requester r, final long iova, final boolean write, final FaultReason reason,
                       final boolean suppressed) {
        faultCount.increment();
        if (!suppressed) {
            recordFault(r.sid(), iova, write, reason);
        }
        return -reason.code;
    }

    /**
     * Records a primary fault in the next fault recording register. If that register still holds an
     * unserviced fault (F set), the fault is dropped and FSTS.PFO set, as the specification says.
     */
    private void recordFault(final int sid, final long iova, final boolean write, final FaultReason reason) {
        synchronized (faultLock) {
            final long frcd = VtdRegisters.frcd(nextFaultRecord);
            if ((regs.read64(frcd + 8) & VtdRegisters.FRCD_HI_F) != 0) {
                regs.setBits32(VtdRegisters.FSTS, VtdRegisters.FSTS_PFO);
                return;
            }
            regs.write64(frcd, iova & ~0xFFFL);
            regs.write64(frcd + 8, VtdRegisters.FRCD_HI_F | (write ? 0 : VtdRegisters.FRCD_HI_T_READ)
                    | ((long) reason.code << VtdRegisters.FRCD_HI_FR_SHIFT) | (sid & VtdRegisters.FRCD_HI_SID_MASK));
            // FRI points at the first pending record; keep it if one is already pending.
            while (true) {
                final int fsts = regs.read32(VtdRegisters.FSTS);
                final int next = (fsts & VtdRegisters.FSTS_PPF) != 0 ? fsts | VtdRegisters.FSTS_PPF
                        : (fsts & ~VtdRegisters.FSTS_FRI_MASK) | VtdRegisters.FSTS_PPF
                          | (nextFaultRecord << VtdRegisters.FSTS_FRI_SHIFT);
                if (regs.cas32(VtdRegisters.FSTS, fsts, next)) {
                    break;
                }
            }
            nextFaultRecord = (nextFaultRecord + 1) % cap.nfr();
        }
    }

    // ---------------------------------------------------------------- statistics

    public long iotlbHits() {
        return iotlbHits.sum();
    }

    /** Walks that started below the top from a cached directory entry. */
    public long pagingStructureHits() {
        return pscHits.sum();
    }

    public PagingStructureCache pagingStructureCache() {
        return psc;
    }

    public long iotlbMisses() {
        return iotlbMisses.sum();
    }

    public long faults() {
        return faultCount.sum();
    }

    public long descriptorsProcessed() {
        return descriptorsDone.sum();
    }
}
