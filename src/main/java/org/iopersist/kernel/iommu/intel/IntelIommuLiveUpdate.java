package org.iopersist.kernel.iommu.intel;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceRegisters;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;

/**
 * The VT-d driver's part in a live update. Outgoing: at finalize it preserves, for every unit,
 * the root table, the context tables and the invalidation ring, and for every persistent domain
 * the chunks its table pages are carved from, and writes {@link VtdHandover}; from then on persistent domains are frozen.
 * At kexec ({@link #quiesce}) it clears and invalidates the context entry of every device that is
 * not attached to a persistent domain and turns its bus mastering off; translation stays on.
 * Incoming: {@link #validate} checks {@code intel-iommu-v3} against the units and the preserved
 * tables ({@link VtdAdoption}); {@link #adopt} takes the live root tables over and hands the
 * persistent domains to the iommu core, under their handover keys.
 */
public final class IntelIommuLiveUpdate implements LiveUpdateHandler<IommuDriver.HandoverPlan> {
    private final IntelIommuDriver driver;
    private final IommuCore core;
    private final KernelLog log;
    private final List<long[]> preserved = new ArrayList<>(); // (phys, order) this finalize preserved
    private Kho kho;

    public IntelIommuLiveUpdate(final IntelIommuDriver driver, final IommuCore core, final KernelLog log) {
        this.driver = driver;
        this.core = core;
        this.log = log;
    }

    @Override
    public String name() {
        return VtdHandover.NAME;
    }

    @Override
    public synchronized byte[] serialize(final Kho kho) {
        this.kho = kho;
        driver.setFrozen(true);
        try {
            final List<VtdHandover.Unit> units = new ArrayList<>();
            for (int i = 0; i < driver.unitCount(); i++) {
                final IntelIommu u = driver.unit(i);
                final long root = u.rootPhys();
                preserve(root);
                final List<Long> contexts = new ArrayList<>();
                for (int bus = 0; bus < RootEntry.ENTRIES; bus++) {
                    final long lo = driver.memory().load64Acquire(RootEntry.address(root, bus));
                    if (RootEntry.present(lo)) {
                        preserve(RootEntry.contextTable(lo));
                        contexts.add((long) bus << 52 | RootEntry.contextTable(lo));
                    }
                }
                preserve(u.queue().ringPhys());
                preserve(u.queue().statusPhys());
                units.add(new VtdHandover.Unit(i, u.capRegister(), u.ecapRegister(), root,
                        contexts.stream().mapToLong(Long::longValue).toArray(), u.queue().ringPhys(), u.queue().statusPhys()));
            }
            final List<VtdHandover.Domain> domains = new ArrayList<>();
            for (DmarDomain d : driver.persistentDomains()) {
                final DmarDomain.TableChunks tables = d.tableChunks();
                for (long c : tables.chunks()) {
                    preserve(c & -PhysicalMemory.FRAME_SIZE, (int) (c & (PhysicalMemory.FRAME_SIZE - 1)));
                }
                final List<Long> dids = new ArrayList<>();
                for (int u = 0; u < driver.unitCount(); u++) {
                    if (d.didOn(u) != 0) {
                        dids.add((long) u << 32 | d.didOn(u));
                    }
                }
                final List<Long> devices = new ArrayList<>();
                for (IommuDevice dev : driver.devices()) {
                    if (driver.domainOf(dev) == d && driver.keeps(dev)) {
                        devices.add(dev.handoverKey());
                    }
                }
                domains.add(new VtdHandover.Domain(d.levels, d.pgd, tables.pages(), tables.chunks(), tables.usage(),
                        dids.stream().mapToLong(Long::longValue).toArray(), devices.stream().mapToLong(Long::longValue).toArray()));
            }
            log.info("DMAR: handover: %d units, %d persistent domains, %d frames preserved", units.size(), domains.size(),
                    preserved.size());
            return VtdHandover.write(new VtdHandover.Image(units, domains));
        } catch (RuntimeException e) {
            abort();
            throw e;
        }
    }

    private void preserve(final long phys) {
        preserve(phys, 0);
    }

    private void preserve(final long phys, final int order) {
        if (kho.preserve(phys, order)) {
            preserved.add(new long[] {phys, order});
        }
    }

    @Override
    public synchronized void abort() {
        for (long[] p : preserved) {
            kho.unpreserve(p[0], (int) p[1]);
        }
        preserved.clear();
        driver.setFrozen(false);
    }

    @Override
    public IommuDriver.HandoverPlan validate(final IncomingHandover in) throws HandoverFormatException {
        return driver.validateHandover(in.kho());
    }

    @Override
    public void adopt(final IommuDriver.HandoverPlan plan, final IncomingHandover in) {
        core.restore(driver.adopt(plan));
    }

    /**
     * At kexec: every device not served by a persistent domain is blocked (context entry cleared,
     * caches invalidated) and loses bus mastering. Devices of persistent domains keep running.
     */
    @Override
    public void shutdown(final boolean handedOver) {
        final MachineConfig platform = driver.board().config();
        int blocked = 0;
        for (IommuDevice dev : driver.devices()) {
            if (handedOver && driver.keeps(dev)) {
                continue; // preserved: it keeps translating through the kexec
            }
            driver.unit(dev.unit()).setContext(dev, -1, 0, 0, driver.frames());
            for (int i = 0; i < platform.devices().size(); i++) {
                if (platform.devices().get(i).bdf().equals(dev.bdf())) {
                    final Mmio.Window bar = driver.board().deviceBar(i);
                    bar.clearBits32(DeviceRegisters.COMMAND, DeviceRegisters.COMMAND_BME);
                }
            }
            blocked++;
        }
        log.info("DMAR: kexec: %d devices blocked and bus mastering off; persistent domains keep translating", blocked);
    }
}
