package org.iopersist.kernel.iommu.intel;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.SlPte;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;

/**
 * The VT-d driver's side of a live update, incoming: check the handover against the hardware and
 * the tables in memory, and only if every check passes, claim the frames and adopt the live root
 * table and the persistent domains. Nothing is written to memory or registers before the last
 * check, so a handover that fails leaves everything for a cold boot to reset.
 */
final class VtdAdoption {
    /** A domain re-hydrated, with the devices it serves (already translating through it). */
    record Adopted(DmarDomain domain, List<IommuDevice> devices) {
    }

    private final IntelIommuDriver driver;
    private final KhoIncoming in;
    private final PhysicalMemory memory;
    /**
     * Every block validation found, {@code phys | order}: root, context and queue frames, and the
     * chunks of the domains' table pages; disjoint once validated.
     */
    private long[] claims = new long[64];
    private int claimCount;
    /** Per handed-over domain, its table-page pool as {@code table-usage} lists the pages in use. */
    private final List<TablePagePool.Incoming> pools = new ArrayList<>();

    VtdAdoption(final IntelIommuDriver driver, final KhoIncoming in) {
        this.driver = driver;
        this.in = in;
        this.memory = driver.memory();
    }

    private void frame(final long phys, final String what) throws HandoverFormatException {
        block(phys, 0, what);
    }

    private void block(final long phys, final int order, final String what) throws HandoverFormatException {
        final long size = PhysicalMemory.FRAME_SIZE << order;
        if ((phys & (size - 1)) != 0 || !memory.contains(phys, size)) {
            throw new HandoverFormatException(String.format("%s 0x%x order %d is not an aligned block of memory", what, phys, order));
        }
        switch (in.plan(phys, order)) {
            case NOT_PRESERVED -> throw new HandoverFormatException(String.format("%s 0x%x is not preserved as a block of order %d",
                    what, phys, order));
            case CLAIMED_TWICE -> throw new HandoverFormatException(String.format("%s 0x%x order %d is claimed twice", what, phys, order));
            case PLANNED -> { }
        }
        if (claimCount == claims.length) {
            claims = java.util.Arrays.copyOf(claims, claimCount * 2);
        }
        claims[claimCount++] = phys | order;
    }

    int mgaw(final int unit) {
        return driver.unit(unit).cap.mgaw();
    }

    /** Validates everything; returns the adoption plan (devices per domain, by domain index). */
    List<List<IommuDevice>> validate(final VtdHandover.Image img) throws HandoverFormatException {
        if (img.units().size() != driver.unitCount()) {
            throw new HandoverFormatException(img.units().size() + " units handed over, the machine has " + driver.unitCount());
        }
        final Map<Long, IommuDevice> devicesByKey = new HashMap<>();
        for (IommuDevice d : driver.devices()) {
            devicesByKey.put(d.handoverKey(), d);
        }
        // Every present context entry, (unit, sid) -> (lo, hi); checked against the domains below.
        final Map<Long, long[]> entries = new HashMap<>();
        for (VtdHandover.Unit hu : img.units()) {
            final IntelIommu u = driver.unit(hu.index());
            final Mmio.Window regs = u.registers();
            if (hu.cap() != u.capRegister() || hu.ecap() != u.ecapRegister()) {
                throw new HandoverFormatException("unit " + hu.index() + ": CAP/ECAP differ from the hardware's");
            }
            final int gsts = regs.read32(VtdRegisters.GSTS);
            if ((gsts & VtdRegisters.GSTS_TES) == 0 || (gsts & VtdRegisters.GSTS_RTPS) == 0
                    || (regs.read64(VtdRegisters.RTADDR) & VtdRegisters.RTADDR_ADDR_MASK) != hu.rootTable()) {
                throw new HandoverFormatException(String.format("unit %d: the live root table is not 0x%x with translation on",
                        hu.index(), hu.rootTable()));
            }
            frame(hu.rootTable(), "root table");
            frame(hu.qiRing(), "invalidation ring");
            frame(hu.qiStatus(), "invalidation status page");
            final Map<Integer, Long> listed = new HashMap<>();
            for (long packed : hu.contextTables()) {
                listed.put((int) (packed >>> 52), packed & ((1L << 52) - 1));
            }
            for (int bus = 0; bus < RootEntry.ENTRIES; bus++) {
                final long lo = memory.load64(RootEntry.address(hu.rootTable(), bus));
                final Long ctp = listed.remove(bus);
                if (!RootEntry.present(lo)) {
                    if (ctp != null) {
                        throw new HandoverFormatException("unit " + hu.index() + " bus " + bus + ": listed context table has no root entry");
                    }
                    continue;
                }
                if (ctp == null || RootEntry.contextTable(lo) != ctp) {
                    throw new HandoverFormatException(String.format("unit %d bus %d: root entry points at 0x%x, not at a handed-over context table",
                            hu.index(), bus, RootEntry.contextTable(lo)));
                }
                frame(ctp, "context table");
                for (int devfn = 0; devfn < ContextEntry.ENTRIES; devfn++) {
                    final long ce = ContextEntry.address(ctp, devfn);
                    final long clo = memory.load64(ce);
                    if (ContextEntry.present(clo)) {
                        entries.put((long) hu.index() << 32 | bus << 8 | devfn, new long[] {clo, memory.load64(ce + 8)});
                    }
                }
            }
            if (!listed.isEmpty()) {
                throw new HandoverFormatException("unit " + hu.index() + ": context tables listed for buses without root entries");
            }
        }
        final List<List<IommuDevice>> plan = new ArrayList<>();
        final Set<Long> didsTaken = new HashSet<>();
        final Set<IommuDevice> served = new HashSet<>();
        for (VtdHandover.Domain hd : img.domains()) {
            final int[] dids = new int[driver.unitCount()];
            for (long packed : hd.dids()) {
                final int unit = (int) (packed >>> 32);
                final int did = (int) packed;
                if (unit < 0 || unit >= driver.unitCount()) {
                    throw new HandoverFormatException("domain names unit " + unit);
                }
                final IntelIommu u = driver.unit(unit);
                if (did < IntelIommu.FIRST_DID || did >= u.cap.domains()) {
                    throw new HandoverFormatException("DID " + did + " outside " + IntelIommu.FIRST_DID + ".." + (u.cap.domains() - 1));
                }
                if (!u.cap.supportsLevels(hd.levels())) {
                    throw new HandoverFormatException("unit " + unit + " does not walk " + hd.levels() + "-level tables");
                }
                if (!didsTaken.add(packed)) {
                    throw new HandoverFormatException("DID " + did + " on unit " + unit + " claimed by two domains");
                }
                dids[unit] = did;
            }
            // The chunks are claimed whole, and table-usage says which of their pages are tables: the
            // pool is rebuilt from the handover in O(chunks), without reading a table. That a walk
            // from the pgd reaches exactly those pages, and what the leaves map, is the scrub's to
            // check after the rebind: the devices have been translating through these tables since
            // before this kernel ran, so reading them here would protect nothing.
            final long[] chunks = hd.tableChunks();
            for (long c : chunks) {
                final int order = (int) (c & PhysicalMemory.FRAME_MASK);
                if (order > TablePagePool.MAX_CHUNK_ORDER) {
                    throw new HandoverFormatException(String.format("domain at 0x%x: table chunk of order %d", hd.pgd(), order));
                }
                block(c & ~PhysicalMemory.FRAME_MASK, order, "table chunk");
            }
            final TablePagePool.Incoming pool = TablePagePool.Incoming.of(memory, chunks); // block() planned them: none overlaps
            final String usage = pool.load(hd.tableUsage());
            if (usage != null) {
                throw new HandoverFormatException(String.format("domain at 0x%x: %s", hd.pgd(), usage));
            }
            if (pool.pages() != hd.tablePages()) {
                throw new HandoverFormatException(String.format("domain at 0x%x: table-usage marks %d table pages, %d handed over",
                        hd.pgd(), pool.pages(), hd.tablePages()));
            }
            if (!pool.inUse(hd.pgd())) {
                throw new HandoverFormatException(String.format("domain pgd 0x%x is not a table page in use in its domain's chunks",
                        hd.pgd()));
            }
            final int idle = pool.idleChunk();
            if (idle >= 0) {
                throw new HandoverFormatException(String.format("domain at 0x%x: table chunk 0x%x holds no table page",
                        hd.pgd(), pool.chunk(idle) & ~PhysicalMemory.FRAME_MASK));
            }
            pools.add(pool);
            final List<IommuDevice> devs = new ArrayList<>();
            for (long key : hd.devices()) {
                final IommuDevice dev = devicesByKey.get(key);
                if (dev == null) {
                    throw new HandoverFormatException(String.format("domain serves device 0x%x the machine lacks", key));
                }
                if (!served.add(dev)) {
                    throw new HandoverFormatException(dev + " is claimed by two domains");
                }
                final long[] e = entries.remove((long) dev.unit() << 32 | dev.sourceId());
                if (e == null || ContextEntry.slptptr(e[0]) != hd.pgd() || ContextEntry.domainId(e[1]) != dids[dev.unit()]
                        || ContextEntry.levels(ContextEntry.addressWidth(e[1])) != hd.levels()
                        || ContextEntry.translationType(e[0]) != ContextEntry.TT_MULTI_LEVEL) {
                    throw new HandoverFormatException(dev + ": its context entry does not point at its domain");
                }
                devs.add(dev);
            }
            plan.add(devs);
        }
        if (!entries.isEmpty()) {
            throw new HandoverFormatException(entries.size() + " present context entries belong to no preserved domain");
        }
        // Two blocks that overlap (a context table inside a table chunk, two domains' chunks sharing
        // frames) were refused as each was planned (KhoIncoming.plan), as across subsystems.
        return plan;
    }

    /** After {@link #validate}: claims every frame and builds the domains. Cannot fail on a validated image. */
    List<Adopted> adopt(final VtdHandover.Image img, final List<List<IommuDevice>> plan) {
        for (int i = 0; i < claimCount; i++) {
            final long phys = claims[i] & ~PhysicalMemory.FRAME_MASK;
            if (!in.claim(phys, (int) (claims[i] & PhysicalMemory.FRAME_MASK))) {
                throw new IllegalStateException("validated block 0x" + Long.toHexString(phys) + " could not be claimed");
            }
        }
        final List<Adopted> out = new ArrayList<>();
        for (int k = 0; k < img.domains().size(); k++) {
            final VtdHandover.Domain hd = img.domains().get(k);
            final int[] dids = new int[driver.unitCount()];
            final int[] users = new int[driver.unitCount()];
            for (long packed : hd.dids()) {
                dids[(int) (packed >>> 32)] = (int) packed;
                driver.unit((int) (packed >>> 32)).reserveDid((int) packed);
            }
            for (IommuDevice dev : plan.get(k)) {
                users[dev.unit()]++;
            }
            final IntelIommu home = driver.unit(plan.get(k).isEmpty() ? firstUnit(hd) : plan.get(k).get(0).unit());
            out.add(new Adopted(DmarDomain.adopt(driver, home, IommuDomain.PERSISTENT, hd.levels(), hd.pgd(),
                    pools.get(k).adopt(driver.frames()), dids, users),
                    plan.get(k)));
        }
        for (VtdHandover.Unit hu : img.units()) {
            driver.unit(hu.index()).adoptLive(hu.rootTable(), hu.qiRing(), hu.qiStatus());
        }
        return out;
    }

    private static int firstUnit(final VtdHandover.Domain hd) {
        return hd.dids().length == 0 ? 0 : (int) (hd.dids()[0] >>> 32);
    }
}
