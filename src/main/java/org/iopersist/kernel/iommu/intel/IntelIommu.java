package org.iopersist.kernel.iommu.intel;

import java.util.BitSet;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.Capability;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.ExtCapability;
import org.iopersist.hw.vtd.InvDesc;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.uapi.Errno;

/**
 * One VT-d remapping unit as the driver sees it (Linux's {@code struct intel_iommu}): its
 * registers, capabilities, root table, invalidation queue and domain-id space.
 *
 * <p>Context entries change only under {@link #contextLock}, and always as clear, invalidate, then
 * publish: a present entry is never rewritten in place.
 */
final class IntelIommu {
    /** DIDs 0 and 1 stay unused, as Linux reserves them (IDA_START_DID). */
    static final int FIRST_DID = 2;
    private static final long TIMEOUT_NANOS = 10_000_000_000L;

    final int index;
    final Capability cap;
    final ExtCapability ecap;
    /** Host address width from the platform description (ACPI DMAR's HAW). */
    final int haw;
    /** The deepest table this unit walks that Linux would pick: levels from SAGAW, capped by MGAW. */
    final int levels;
    private final PhysicalMemory memory;
    private final Mmio.Window regs;
    private final KernelLog log;
    private final QueuedInvalidation qi;
    private final BitSet dids = new BitSet();
    private final Object contextLock = new Object();
    private final ContextEntry context = new ContextEntry();
    private final RootEntry root = new RootEntry();
    private long rootPhys = -1;
    /** Context tables this boot allocated on a bus's first attach; kept until the next kexec, as Linux keeps them. */
    private int contextTablesAllocated; // guarded by contextLock

    IntelIommu(final int index, final PhysicalMemory memory, final Mmio.Window regs, final UnitConfig platform,
            final KernelLog log) {
        this.index = index;
        this.memory = memory;
        this.regs = regs;
        this.log = log;
        this.cap = Capability.decode(regs.read64(VtdRegisters.CAP));
        this.ecap = ExtCapability.decode(regs.read64(VtdRegisters.ECAP));
        this.haw = platform.haw();
        this.levels = chooseLevels(cap);
        this.qi = new QueuedInvalidation(index, memory, regs);
    }

    /**
     * Linux's {@code iommu_calculate_agaw}: the largest AGAW in SAGAW whose width does not exceed
     * the 57-bit default, so a unit with 4- and 5-level support walks 5 levels.
     */
    static int chooseLevels(final Capability cap) {
        for (int levels = 5; levels >= 3; levels--) {
            if (cap.supportsLevels(levels)) {
                return levels;
            }
        }
        throw new KernelException(Errno.ENODEV, "SAGAW 0x" + Integer.toHexString(cap.sagaw()) + " supports no 3-, 4- or 5-level table");
    }

    /** Input address width of a domain on this unit: the AGAW's width capped by MGAW. */
    int addressWidth() {
        return Math.min(12 + 9 * levels, cap.mgaw());
    }

    Mmio.Window registers() {
        return regs;
    }

    /** An adopted unit keeps its live root table; only the queue moves at late init. */
    private boolean adopted;
    private long oldRing = -1;
    private long oldStatus = -1;

    /**
     * Takes over a unit the previous kernel left translating: the live root table stays (no SRTP,
     * no global invalidation), and so does the old kernel's queue until late init, when this
     * kernel's ring replaces it in one restart, as Linux's {@code dmar_enable_qi} does once the
     * page allocator is up. Nothing is invalidated in between: adoption changes no entry.
     */
    void adoptLive(final long root, final long oldRingPhys, final long oldStatusPhys) {
        this.rootPhys = root;
        this.adopted = true;
        this.oldRing = oldRingPhys;
        this.oldStatus = oldStatusPhys;
        log.info("DMAR: unit %d: adopted the live root table at 0x%x", index, root);
    }

    synchronized void reserveDid(final int did) {
        dids.set(did);
    }

    long capRegister() {
        return regs.read64(VtdRegisters.CAP);
    }

    long ecapRegister() {
        return regs.read64(VtdRegisters.ECAP);
    }

    long rootPhys() {
        return rootPhys;
    }

    QueuedInvalidation queue() {
        return qi;
    }

    /** Root table, queue, global invalidation, translation on; every device ends up blocked. */
    void init(final FrameSource early) {
        if (!ecap.queuedInval()) {
            throw new KernelException(Errno.ENODEV, "VT-d unit " + index + " has no queued invalidation");
        }
        final long newRoot = early.allocZeroedFrame();
        qi.start(early.allocZeroedFrame(), early.allocZeroedFrame());
        setRootTable(newRoot);
        invalidateAll();
        if ((regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_TES) == 0) {
            regs.setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_TE);
            await("TES", () -> (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_TES) != 0);
        }
        log.info("DMAR: unit %d: %d-level tables, MGAW %d, HAW %d, ND %d domains, SLLPS 0x%x, root table at 0x%x, "
                + "translation on", index, levels, cap.mgaw(), haw, cap.domains(), cap.sllps(), rootPhys);
    }

    /** Moves the root table and the queue out of early memory; contents carry over. */
    void relocate(final FrameSource frames) {
        if (adopted) {
            // The root table is the preserved live one: only the queue is this kernel's own, then
            // the old kernel's ring and status page go back to the allocator.
            qi.start(frames.allocZeroedFrame(), frames.allocZeroedFrame());
            frames.freeFrame(oldRing);
            frames.freeFrame(oldStatus);
            return;
        }
        synchronized (contextLock) {
            final long newRoot = frames.allocZeroedFrame();
            memory.copy(rootPhys, newRoot, PhysicalMemory.FRAME_SIZE);
            setRootTable(newRoot);
            qi.start(frames.allocZeroedFrame(), frames.allocZeroedFrame());
            invalidateAll();
        }
    }

    /** Latches {@code phys} as the root table (SRTP) and waits for the hardware to take it. */
    private void setRootTable(final long phys) {
        regs.write64(VtdRegisters.RTADDR, phys);
        regs.setBits32(VtdRegisters.GCMD, VtdRegisters.GCMD_SRTP);
        await("RTPS", () -> (regs.read32(VtdRegisters.GCMD) & VtdRegisters.GCMD_SRTP) == 0
                && (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_RTPS) != 0);
        rootPhys = phys;
    }

    /** Global context-cache and IOTLB invalidation, completed. */
    void invalidateAll() {
        qi.submitSync(InvDesc.contextGlobal(), 0, InvDesc.iotlbGlobal(), 0);
    }

    // ------------------------------------------------------------------ domain ids

    synchronized int allocDid() {
        final int did = dids.nextClearBit(FIRST_DID);
        if (did >= cap.domains()) {
            throw new KernelException(Errno.ENOSPC, "VT-d unit " + index + ": all " + cap.domains() + " domain ids in use");
        }
        dids.set(did);
        return did;
    }

    synchronized void freeDid(final int did) {
        dids.clear(did);
    }

    synchronized int didsInUse() {
        return dids.cardinality();
    }

    /** Frames this boot allocated for context tables (never freed while the unit runs). */
    int contextTablesAllocated() {
        synchronized (contextLock) {
            return contextTablesAllocated;
        }
    }

    // ------------------------------------------------------------------ context entries

    /**
     * Points {@code dev} at the table {@code pgd} under domain id {@code did}, or blocks it when
     * {@code pgd} is -1. A present entry is cleared and its caches invalidated first.
     */
    void setContext(final IommuDevice dev, final long pgd, final int did, final int aw, final FrameSource frames) {
        synchronized (contextLock) {
            final int bus = dev.bdf().bus();
            root.wrap(memory.segment(), RootEntry.address(rootPhys, bus));
            if (!root.present()) {
                if (pgd < 0) {
                    return; // no context table: the whole bus is blocked already
                }
                root.publish(frames.allocZeroedFrame());
                contextTablesAllocated++;
            }
            context.wrap(memory.segment(), ContextEntry.address(root.contextTable(), dev.bdf().devfn()));
            if (context.present()) {
                final int oldDid = context.domainId();
                context.clear();
                // Device-selective context flush, then the old domain's IOTLB: the spec's order.
                qi.submitSync(InvDesc.contextDevice(oldDid, dev.sourceId(), 0), 0, InvDesc.iotlbDomain(oldDid), 0);
            }
            if (pgd >= 0) {
                // Caching mode is off, so a not-present to present change needs no invalidation.
                context.publish(ContextEntry.encodeLo(pgd, ContextEntry.TT_MULTI_LEVEL, false), ContextEntry.encodeHi(did, aw));
            }
        }
    }

    /**
     * Page-selective IOTLB invalidation of {@code [start, last]} for {@code did} where PSI and the
     * mask allow, else domain-selective (Linux's {@code calculate_psi_aligned_address}).
     */
    void flushIotlb(final int did, final long start, final long last, final boolean leafOnly) {
        final long pages = (last - start + 1) >>> 12;
        long alignedPages = Long.highestOneBit(pages) == pages ? pages : Long.highestOneBit(pages) << 1;
        int mask = Long.numberOfTrailingZeros(alignedPages);
        final long pfn = start >>> 12;
        if ((pfn & (alignedPages - 1)) != 0) {
            final long endPfn = pfn + pages - 1;
            final long shared = ~(pfn ^ endPfn) & ~(alignedPages - 1);
            mask = shared != 0 ? Long.numberOfTrailingZeros(shared) : 64;
        }
        if (!cap.psi() || mask > cap.mamv()) {
            qi.submitSync(InvDesc.iotlbDomain(did), 0);
        } else {
            final long addr = (pfn >>> mask) << (mask + 12);
            qi.submitSync(InvDesc.iotlbPage(did), InvDesc.iotlbPageQw1(addr, mask, leafOnly));
        }
    }

    private void await(final String what, final java.util.function.BooleanSupplier done) {
        final long deadline = System.nanoTime() + TIMEOUT_NANOS;
        int spins = 0;
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new KernelException(Errno.ETIMEDOUT, "VT-d unit " + index + ": timed out waiting for " + what
                        + " (is the machine running?)");
            }
            QueuedInvalidation.spin(++spins);
        }
    }
}
