package org.iopersist.kernel.iommu;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.uapi.Errno;

/**
 * The iommu core (Linux's {@code drivers/iommu/iommu.c}): which domain each device translates
 * through, domain allocation, and attach, detach and replace. Every device starts, and ends up
 * after detach, in the blocking domain. Only paging domains count their devices: that count is what
 * keeps one from being freed, and the blocking domain is never freed.
 *
 * <p>Lock order: this core's monitor, then the driver's per-unit locks.
 */
public final class IommuCore {
    private final IommuDriver driver;
    private final KernelLog log;
    private final IommuDomain blocked = new IommuDomain(IommuDomain.Type.BLOCKED, 0, null, null);
    private final Map<Bdf, IommuDevice> devices = new HashMap<>();
    private final Map<IommuDevice, IommuDomain> attached = new HashMap<>(); // guarded by this
    /** dev_iommu_ops: the driver of every device, the PCI ones' and those probed on another bus. */
    private final Map<IommuDevice, IommuDriver> drivers = new HashMap<>(); // guarded by this
    /** Drivers of non-PCI buses (iommu_device_register_bus), by class; guarded by this. */
    private final List<IommuDriver> busDrivers = new java.util.ArrayList<>();
    private final Map<IommuDevice, DmaOwner> dmaOwners = new HashMap<>(); // guarded by this
    private final Map<Long, IommuDomain> restoredByKey = new HashMap<>(); // guarded by this

    /** Who owns a device's DMA, and how many claims it holds. */
    private record DmaOwner(Object owner, int claims) {
    }

    public IommuCore(final IommuDriver driver, final KernelLog log) {
        this.driver = driver;
        this.log = log;
        for (IommuDevice d : driver.devices()) {
            devices.put(d.bdf(), d);
            attached.put(d, blocked);
            drivers.put(d, driver);
        }
    }

    /**
     * iommu_device_register_bus: a driver for the devices of another bus, probed one by one as they
     * appear ({@link #probeDevice}). The selftest's mock IOMMU is one.
     */
    public synchronized void registerBusDriver(final IommuDriver busDriver) {
        busDrivers.add(busDriver);
    }

    /** The bus driver of class {@code type}, or null if none is registered. */
    public synchronized <T extends IommuDriver> T busDriver(final Class<T> type) {
        for (IommuDriver d : busDrivers) {
            if (type.isInstance(d)) {
                return type.cast(d);
            }
        }
        return null;
    }

    /** iommu_probe_device: {@code dev} appeared on a bus {@code busDriver} serves; it starts blocked. */
    public synchronized void probeDevice(final IommuDevice dev, final IommuDriver busDriver) {
        if (drivers.putIfAbsent(dev, busDriver) != null) {
            throw new KernelException(Errno.EEXIST, dev + " is already probed");
        }
        attached.put(dev, blocked);
    }

    /** iommu_release_device: the device went away; it must be blocked and owned by nobody. */
    public synchronized void releaseDevice(final IommuDevice dev) {
        if (attached.get(dev) != blocked || dmaOwners.containsKey(dev)) {
            throw new IllegalStateException(dev + " removed while attached or owned");
        }
        attached.remove(dev);
        drivers.remove(dev);
    }

    /** dev_iommu_ops: the driver {@code dev} belongs to. */
    public synchronized IommuDriver driverOf(final IommuDevice dev) {
        final IommuDriver d = drivers.get(dev);
        if (d == null) {
            throw new KernelException(Errno.ENODEV, "no iommu driver for " + dev);
        }
        return d;
    }

    /** IOMMU_GET_HW_INFO's answer for {@code dev}, from its own driver. */
    public HwInfo hwInfo(final IommuDevice dev) {
        return driverOf(dev).hwInfo(dev);
    }

    public IommuDriver driver() {
        return driver;
    }

    public List<IommuDevice> devices() {
        return driver.devices();
    }

    /** The device at {@code bdf}; ENODEV if no unit translates for it. */
    public IommuDevice device(final Bdf bdf) {
        final IommuDevice d = devices.get(bdf);
        if (d == null) {
            throw new KernelException(Errno.ENODEV, "no iommu translates for " + bdf);
        }
        return d;
    }

    public IommuDomain blockedDomain() {
        return blocked;
    }

    /** A paging domain that {@code dev} can attach to. */
    public IommuDomain allocPaging(final IommuDevice dev, final int flags) {
        if ((flags & ~IommuDomain.PERSISTENT) != 0) {
            throw new KernelException(Errno.EOPNOTSUPP, "domain flags 0x" + Integer.toHexString(flags));
        }
        final IommuDriver d = driverOf(dev);
        return new IommuDomain(IommuDomain.Type.PAGING, flags, d.allocPaging(dev, flags), d);
    }

    /**
     * ops->domain_alloc_user: a paging domain for {@code dev} with the uAPI's IOMMU_HWPT_ALLOC_*
     * {@code hwptFlags}; a driver that takes none answers EOPNOTSUPP for any.
     */
    public IommuDomain allocUser(final IommuDevice dev, final int hwptFlags) {
        final IommuDriver d = driverOf(dev);
        return new IommuDomain(IommuDomain.Type.PAGING, 0, d.allocUser(dev, hwptFlags), d);
    }

    /**
     * iommu_device_claim_dma_owner: a device has one DMA owner at a time (an iommufd context);
     * the same owner may claim again (counted), another gets EBUSY.
     */
    public synchronized void claimDmaOwner(final IommuDevice dev, final Object owner) {
        final DmaOwner now = dmaOwners.get(dev);
        if (now != null && now.owner() != owner) {
            throw new org.iopersist.kernel.KernelException(org.iopersist.uapi.Errno.EBUSY, dev + " is owned by another iommufd context");
        }
        dmaOwners.put(dev, new DmaOwner(owner, now == null ? 1 : now.claims() + 1));
    }

    /** iommu_device_release_dma_owner. */
    public synchronized void releaseDmaOwner(final IommuDevice dev, final Object owner) {
        final DmaOwner now = dmaOwners.get(dev);
        if (now == null || now.owner() != owner) {
            throw new IllegalStateException(dev + ": released by a context that does not own it");
        }
        if (now.claims() == 1) {
            dmaOwners.remove(dev);
        } else {
            dmaOwners.put(dev, new DmaOwner(owner, now.claims() - 1));
        }
    }

    /** Devices whose DMA an iommufd context owns now. */
    public synchronized int dmaOwned() {
        return dmaOwners.size();
    }

    /** Devices translating through a paging domain now (the rest are blocked). */
    public synchronized int devicesAttached() {
        int n = 0;
        for (IommuDomain d : attached.values()) {
            n += d == blocked ? 0 : 1;
        }
        return n;
    }

    public synchronized IommuDomain domainOf(final IommuDevice dev) {
        return attached.get(dev);
    }

    /** Attaches a blocked device; EBUSY if it already translates through another domain. */
    public synchronized void attach(final IommuDevice dev, final IommuDomain domain) {
        checkOwner(dev, domain);
        final IommuDomain old = attached.get(dev);
        if (old != blocked && old != domain) {
            throw new KernelException(Errno.EBUSY, dev + " is attached to another domain");
        }
        if (old != domain) {
            set(dev, old, domain);
        }
    }

    /** Moves a device to {@code domain} whatever it was attached to. */
    public synchronized void replace(final IommuDevice dev, final IommuDomain domain) {
        checkOwner(dev, domain);
        final IommuDomain old = attached.get(dev);
        if (old != domain) {
            set(dev, old, domain);
        }
    }

    /** Blocks the device. */
    public synchronized void detach(final IommuDevice dev) {
        replace(dev, blocked);
    }

    /** __iommu_attach_group: a domain attaches only to devices of the driver that made it (EINVAL). */
    private void checkOwner(final IommuDevice dev, final IommuDomain domain) {
        if (domain != blocked && domain.owner() != driverOf(dev)) {
            throw new KernelException(Errno.EINVAL, dev + " is not served by the driver of this domain");
        }
    }

    private void set(final IommuDevice dev, final IommuDomain old, final IommuDomain domain) {
        driverOf(dev).setDomain(dev, domain == blocked ? null : domain.ops());
        attached.put(dev, domain);
        if (old != blocked) {
            old.removeUser();
        }
        if (domain != blocked) {
            domain.addUser();
        }
        log.info("iommu: %s: %s -> %s", dev, old, domain);
    }

    /** Registers domains a driver adopted: their devices already translate through them. */
    public synchronized java.util.List<IommuDomain> restore(final java.util.List<RestoredDomain> restored) {
        final java.util.List<IommuDomain> out = new java.util.ArrayList<>();
        for (RestoredDomain r : restored) {
            final IommuDomain d = new IommuDomain(IommuDomain.Type.PAGING, r.flags(), r.ops(), driver);
            for (IommuDevice dev : r.devices()) {
                attached.put(dev, d);
                d.addUser();
            }
            out.add(d);
            restoredByKey.put(r.ops().handoverKey(), d);
        }
        return out;
    }

    /** The domain restored under the driver's handover {@code key} (the VT-d pgd), or null. */
    public synchronized IommuDomain restoredDomain(final long key) {
        return restoredByKey.get(key);
    }

    /** iommu_domain_preserve / _unpreserve (the IOMMU series): see {@link IommuDriver#setDomainPreserved}. */
    public void preserveDomain(final IommuDomain domain, final boolean on) {
        driver.setDomainPreserved(domain.ops(), on);
    }

    /** iommu_preserve_device / _unpreserve_device: see {@link IommuDriver#setDevicePreserved}. */
    public void preserveDevice(final IommuDevice dev, final boolean on) {
        driver.setDevicePreserved(dev, on);
    }

    /** Frees a paging domain; EBUSY while any device is attached to it. */
    public synchronized void free(final IommuDomain domain) {
        if (domain == blocked) {
            return;
        }
        if (domain.users() != 0) {
            throw new KernelException(Errno.EBUSY, "domain has " + domain.users() + " devices attached");
        }
        domain.markFreed();
        domain.ops().free();
    }
}
