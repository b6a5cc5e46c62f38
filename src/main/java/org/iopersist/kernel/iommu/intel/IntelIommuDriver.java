package org.iopersist.kernel.iommu.intel;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.iommu.DomainOps;
import org.iopersist.kernel.iommu.HwInfo;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.iommu.IommuDriver.HandoverPlan;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuHwInfoVtd;

/**
 * The VT-d driver (Linux's {@code drivers/iommu/intel/iommu.c}) in legacy mode: one
 * {@link IntelIommu} per remapping unit of the platform description, paging domains as
 * {@link DmarDomain}s, and blocking as a cleared context entry.
 */
public final class IntelIommuDriver implements IommuDriver {
    private final PhysicalMemory memory;
    private final FrameAllocator frames;
    private final KernelLog log;
    private final IntelIommu[] units;
    private final List<IommuDevice> devices;
    private final Map<IommuDevice, DmarDomain> current = new HashMap<>();
    private final java.util.Set<DmarDomain> persistent = new java.util.LinkedHashSet<>(); // guarded by this
    /**
     * Persistent domains preserved device by device (LUO: a HWPT of a preserved iommufd), not for
     * every device attached (the RFC: every domain of a persistent context); guarded by this.
     */
    private final java.util.Set<DmarDomain> byDevice = new java.util.HashSet<>();
    /** Devices preserved by LUO (their VFIO cdev is in a session); guarded by this. */
    private final java.util.Set<IommuDevice> preservedDevices = new java.util.HashSet<>();
    private final Board board;
    private volatile boolean frozen;

    public IntelIommuDriver(final Board board, final FrameAllocator frames, final KernelLog log) {
        this.board = board;
        this.memory = board.memory();
        this.frames = frames;
        this.log = log;
        final MachineConfig platform = board.config();
        this.units = new IntelIommu[platform.units().size()];
        for (int i = 0; i < units.length; i++) {
            units[i] = new IntelIommu(i, memory, board.unitRegisters(i), platform.units().get(i), log);
        }
        final List<IommuDevice> list = new ArrayList<>();
        for (MachineConfig.DeviceConfig d : platform.devices()) {
            list.add(new IommuDevice(d.bdf(), d.unit()));
        }
        list.sort(null);
        this.devices = List.copyOf(list);
    }

    @Override
    public String name() {
        return "intel-iommu";
    }

    @Override
    public List<IommuDevice> devices() {
        return devices;
    }

    PhysicalMemory memory() {
        return memory;
    }

    FrameAllocator frames() {
        return frames;
    }

    int unitCount() {
        return units.length;
    }

    IntelIommu unit(final int index) {
        return units[index];
    }

    /** Root table of unit {@code index}, for tests and the handover. */
    public long rootTable(final int index) {
        return units[index].rootPhys();
    }

    /** Domain ids in use on unit {@code index}. */
    public int domainIdsInUse(final int index) {
        return units[index].didsInUse();
    }

    /**
     * Frames the units allocated this boot for context tables: a bus's table stays once a device on
     * it was attached (as Linux's do), bounded by the buses, so the accounting check leaves it out.
     */
    public long contextTableFrames() {
        long n = 0;
        for (IntelIommu u : units) {
            n += u.contextTablesAllocated();
        }
        return n;
    }

    /** The domain id {@code domain} has on {@code unit} (0 if not attached there). */
    public int domainId(final DomainOps domain, final int unit) {
        return ((DmarDomain) domain).didOn(unit);
    }

    @Override
    public void init(final FrameSource early) {
        for (IntelIommu u : units) {
            u.init(early);
        }
    }

    @Override
    public void lateInit() {
        for (IntelIommu u : units) {
            u.relocate(frames);
        }
        log.info("DMAR: root tables and invalidation queues moved out of early memory");
    }

    @Override
    public DomainOps allocPaging(final IommuDevice dev, final int flags) {
        if (frozen && (flags & org.iopersist.kernel.iommu.IommuDomain.PERSISTENT) != 0) {
            throw new KernelException(Errno.EBUSY, "no new persistent domains while frozen for live update");
        }
        final DmarDomain d = new DmarDomain(this, units[dev.unit()], flags);
        if (d.persistent()) {
            synchronized (this) {
                persistent.add(d);
            }
        }
        return d;
    }

    synchronized void forget(final DmarDomain d) {
        persistent.remove(d);
        byDevice.remove(d);
    }

    /**
     * LUO's preservation of one domain: its tables go into the next handover, and only the devices
     * {@link #setDevicePreserved} names keep translating through it at the kexec. Off: an ordinary
     * domain again (a session closed, or finished after the update).
     */
    @Override
    public synchronized void setDomainPreserved(final DomainOps domain, final boolean on) {
        final DmarDomain d = (DmarDomain) domain;
        if (on) {
            if (frozen) {
                throw new KernelException(Errno.EBUSY, "no new persistent domains while frozen for live update");
            }
            persistent.add(d);
            byDevice.add(d);
        } else {
            persistent.remove(d);
            byDevice.remove(d);
        }
        d.persistent(on);
    }

    /** LUO's preservation of one device: with its domain preserved, it keeps translating through the kexec. */
    @Override
    public synchronized void setDevicePreserved(final IommuDevice dev, final boolean on) {
        if (on) {
            preservedDevices.add(dev);
        } else {
            preservedDevices.remove(dev);
        }
    }

    /**
     * Whether {@code dev} keeps translating through a kexec: its domain is persistent, and either
     * preserved whole (the RFC's) or with this device named (LUO's).
     */
    synchronized boolean keeps(final IommuDevice dev) {
        final DmarDomain d = current.get(dev);
        return d != null && d.persistent() && (!byDevice.contains(d) || preservedDevices.contains(dev));
    }

    boolean frozen() {
        return frozen;
    }

    void setFrozen(final boolean value) {
        frozen = value;
    }

    synchronized java.util.List<DmarDomain> persistentDomains() {
        return java.util.List.copyOf(persistent);
    }

    /** Devices and the domain each translates through (null: blocked). */
    synchronized DmarDomain domainOf(final IommuDevice dev) {
        return current.get(dev);
    }

    Board board() {
        return board;
    }

    @Override
    public synchronized void setDomain(final IommuDevice dev, final DomainOps domainOrNull) {
        if (domainOrNull != null && !(domainOrNull instanceof DmarDomain)) {
            throw new KernelException(Errno.EINVAL, "domain belongs to another driver");
        }
        final IntelIommu unit = units[dev.unit()];
        final DmarDomain next = (DmarDomain) domainOrNull;
        final DmarDomain old = current.get(dev);
        if (frozen && ((old != null && old.persistent()) || (next != null && next.persistent()))) {
            throw new KernelException(Errno.EBUSY, dev + ": attachment of a persistent domain is frozen for live update");
        }
        final int did = next == null ? 0 : next.acquireDid(unit);
        try {
            unit.setContext(dev, next == null ? -1 : next.pgd, did, next == null ? 0 : next.aw(), frames);
        } catch (RuntimeException e) {
            if (next != null) {
                next.releaseDid(unit);
            }
            throw e;
        }
        if (old != null) {
            old.releaseDid(unit); // its entry is gone and its IOTLB entries invalidated
        }
        if (next == null) {
            current.remove(dev);
        } else {
            current.put(dev, next);
        }
    }

    /** struct iommu_hw_info_vtd: flags (no errata), reserved, the unit's CAP and ECAP registers. */
    @Override
    public HwInfo hwInfo(final IommuDevice dev) {
        final IntelIommu u = units[dev.unit()];
        final byte[] data = new byte[(int) IommuHwInfoVtd.SIZE];
        final MemorySegment s = MemorySegment.ofArray(data);
        IommuHwInfoVtd.capReg(s, u.capRegister());
        IommuHwInfoVtd.ecapReg(s, u.ecapRegister());
        return new HwInfo(org.iopersist.uapi.Iommufd.IOMMU_HW_INFO_TYPE_INTEL_VTD, data, 0);
    }

    private record Plan(VtdHandover.Image image, VtdAdoption adoption, java.util.List<java.util.List<IommuDevice>> devices)
            implements HandoverPlan {
        @Override
        public java.util.Map<Long, java.util.Set<IommuDevice>> domains() {
            final java.util.Map<Long, java.util.Set<IommuDevice>> out = new java.util.HashMap<>();
            for (int k = 0; k < image.domains().size(); k++) {
                out.put(image.domains().get(k).pgd(), java.util.Set.copyOf(devices.get(k)));
            }
            return out;
        }

        @Override
        public java.util.Map<Long, Long> apertures() {
            final java.util.Map<Long, Long> out = new java.util.HashMap<>();
            for (VtdHandover.Domain d : image.domains()) {
                final long[] dids = d.dids();
                final int unit = dids.length == 0 ? 0 : (int) (dids[0] >>> 32);
                out.put(d.pgd(), (1L << Math.min(12 + 9 * d.levels(), adoption.mgaw(unit))) - 1);
            }
            return out;
        }
    }

    @Override
    public HandoverPlan validateHandover(final org.iopersist.kernel.liveupdate.kho.KhoIncoming incoming)
            throws org.iopersist.kernel.liveupdate.kho.HandoverFormatException {
        final org.iopersist.kernel.liveupdate.kho.FdtReader blob = incoming.retrieveSubtree(VtdHandover.NAME);
        if (blob == null) {
            throw new org.iopersist.kernel.liveupdate.kho.HandoverFormatException("the handover has no " + VtdHandover.NAME + " subtree");
        }
        final VtdHandover.Image image = VtdHandover.read(blob);
        final VtdAdoption adoption = new VtdAdoption(this, incoming);
        return new Plan(image, adoption, adoption.validate(image));
    }

    @Override
    public java.util.List<org.iopersist.kernel.iommu.RestoredDomain> adopt(final HandoverPlan handoverPlan) {
        final Plan plan = (Plan) handoverPlan;
        final java.util.List<org.iopersist.kernel.iommu.RestoredDomain> out = new java.util.ArrayList<>();
        synchronized (this) {
            for (VtdAdoption.Adopted a : plan.adoption().adopt(plan.image(), plan.devices())) {
                persistent.add(a.domain());
                for (IommuDevice dev : a.devices()) {
                    current.put(dev, a.domain());
                }
                out.add(new org.iopersist.kernel.iommu.RestoredDomain(a.domain(), org.iopersist.kernel.iommu.IommuDomain.PERSISTENT,
                        a.devices()));
            }
        }
        log.info("DMAR: live update: adopted %d units and %d persistent domains", units.length, out.size());
        return out;
    }
}
