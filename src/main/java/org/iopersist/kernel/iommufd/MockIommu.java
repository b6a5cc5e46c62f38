package org.iopersist.kernel.iommufd;

import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.iommu.DomainOps;
import org.iopersist.kernel.iommu.HwInfo;
import org.iopersist.kernel.iommu.IommuCore;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.iommu.RestoredDomain;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import org.iopersist.kernel.mm.FrameSource;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.IommuTestCmd;

/**
 * The selftest's mock IOMMU driver ({@code mock_ops} in {@code selftest.c}), registered with the
 * iommu core for the {@code iommufd_mock} bus when the kernel boots with {@code iommufd.selftest=1}.
 * Its devices appear one per IOMMU_TEST_OP_MOCK_DOMAIN and are probed into the core like any other,
 * so binding, attaching and mapping run through the real iommu core and iommufd paths; only the
 * domain behind them ({@link MockDomain}) has no hardware. It also holds the selftest's module state:
 * the temporary memory limit, and the count of WARNs the mock raised (a test expects none).
 */
public final class MockIommu implements IommuDriver {
    /** IOMMU_HW_CAP_DIRTY_TRACKING in {@code out_capabilities}. */
    static final long IOMMU_HW_CAP_DIRTY_TRACKING = 1;
    /** iommufd_test_memory_limit's default. */
    static final int DEFAULT_MEMORY_LIMIT = 65536;

    private final KernelLog log;
    /** The kernel's fail_nth, for the driver's kzallocs and its map_pages point. */
    private final FailPoints fail;
    private IommuCore core; // set once by register
    private final Map<IommuDevice, Integer> deviceFlags = new HashMap<>(); // guarded by this
    private final BitSet ids = new BitSet(); // guarded by this (mock_dev_ida)
    private final AtomicLong warnings = new AtomicLong();
    private volatile int memoryLimit = DEFAULT_MEMORY_LIMIT;

    public MockIommu(final KernelLog log, final FaultInjection faultsOrNull) {
        this.log = log;
        this.fail = new FailPoints(faultsOrNull, this::memoryLimit);
    }

    FailPoints fail() {
        return fail;
    }

    /** iommufd_test_init: registers the mock for its bus. */
    public void register(final IommuCore iommuCore) {
        this.core = iommuCore;
        iommuCore.registerBusDriver(this);
    }

    IommuCore core() {
        return core;
    }

    /** A WARN_ON the mock hit: logged and counted, never fatal. */
    void warn(final String what) {
        warnings.incrementAndGet();
        log.info("WARNING: iommufd selftest: %s", what);
    }

    /** WARNs raised since boot. */
    public long warnings() {
        return warnings.get();
    }

    int memoryLimit() {
        return memoryLimit;
    }

    void memoryLimit(final int limit) {
        memoryLimit = limit;
    }

    // ------------------------------------------------------------------ devices

    /**
     * mock_dev_create + device_add: a new device on the mock bus (EINVAL for an unknown flag), probed
     * into the core. Its fail_nth sites: the mock_dev's kzalloc, dev_set_name's, and device_add's
     * first (device_private_init); the driver core's later ones (kobject, sysfs) are not modelled.
     */
    IommuDevice createDevice(final int flags) {
        if ((flags & ~(IommuTestCmd.MOCK_FLAGS_DEVICE_NO_DIRTY | IommuTestCmd.MOCK_FLAGS_DEVICE_HUGE_IOVA)) != 0) {
            throw new KernelException(Errno.EINVAL, "mock device flags 0x" + Integer.toHexString(flags));
        }
        fail.kzalloc("mock_dev");
        fail.kzalloc("the mock device's name");
        fail.kzalloc("device_private");
        final IommuDevice dev;
        synchronized (this) {
            final int id = ids.nextClearBit(0);
            if (id > 0xFFFF) {
                throw new KernelException(Errno.ENOSPC, "mock device ids exhausted");
            }
            ids.set(id);
            dev = IommuDevice.virtual(id);
            deviceFlags.put(dev, flags);
        }
        core.probeDevice(dev, this);
        return dev;
    }

    /** mock_dev_destroy (device_unregister): the device leaves the core and its id is free again. */
    void destroyDevice(final IommuDevice dev) {
        core.releaseDevice(dev);
        synchronized (this) {
            deviceFlags.remove(dev);
            ids.clear(dev.bdf().bus() << 8 | dev.bdf().devfn());
        }
    }

    private synchronized int flagsOf(final IommuDevice dev) {
        final Integer f = deviceFlags.get(dev);
        if (f == null) {
            throw new KernelException(Errno.ENODEV, dev + " is not a mock device");
        }
        return f;
    }

    // ------------------------------------------------------------------ IommuDriver

    @Override
    public String name() {
        return "iommufd_mock";
    }

    /** Mock devices are probed as they are created, not listed at boot. */
    @Override
    public List<IommuDevice> devices() {
        return List.of();
    }

    @Override
    public void init(final FrameSource early) {
    }

    @Override
    public void lateInit() {
    }

    /** mock_domain_alloc_paging: a 1 MiB page size as well for a HUGE_IOVA device. */
    @Override
    public DomainOps allocPaging(final IommuDevice dev, final int flags) {
        final boolean huge = (flagsOf(dev) & IommuTestCmd.MOCK_FLAGS_DEVICE_HUGE_IOVA) != 0;
        fail.kzalloc("mock_iommu_domain");
        return new MockDomain(this, huge, false);
    }

    /**
     * mock_domain_alloc_user (no parent): NEST_PARENT and DIRTY_TRACKING are the flags it takes
     * (EOPNOTSUPP otherwise, and for DIRTY_TRACKING on a NO_DIRTY device).
     */
    @Override
    public DomainOps allocUser(final IommuDevice dev, final int hwptFlags) {
        final int flags = flagsOf(dev);
        final boolean dirty = (hwptFlags & Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING) != 0;
        if ((hwptFlags & ~(Iommufd.IOMMU_HWPT_ALLOC_NEST_PARENT | Iommufd.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)) != 0
                || dirty && (flags & IommuTestCmd.MOCK_FLAGS_DEVICE_NO_DIRTY) != 0) {
            throw new KernelException(Errno.EOPNOTSUPP, "mock domain flags 0x" + Integer.toHexString(hwptFlags));
        }
        fail.kzalloc("mock_iommu_domain");
        return new MockDomain(this, (flags & IommuTestCmd.MOCK_FLAGS_DEVICE_HUGE_IOVA) != 0, dirty);
    }

    /** mock_domain_nop_attach: a NO_DIRTY device refuses a domain with dirty tracking (EINVAL). */
    @Override
    public void setDomain(final IommuDevice dev, final DomainOps domainOrNull) {
        if (domainOrNull != null && domainOrNull.dirtyOps() != null
                && (flagsOf(dev) & IommuTestCmd.MOCK_FLAGS_DEVICE_NO_DIRTY) != 0) {
            throw new KernelException(Errno.EINVAL, dev + " cannot attach to a domain that tracks dirty pages");
        }
    }

    /** mock_domain_hw_info: struct iommu_test_hw_info {flags 0, test_reg 0xdeadbeef}; dirty tracking unless NO_DIRTY. */
    @Override
    public HwInfo hwInfo(final IommuDevice dev) {
        final byte[] data = new byte[8];
        java.nio.ByteBuffer.wrap(data).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(4, IommuTestCmd.IOMMU_HW_INFO_SELFTEST_REGVAL);
        final long caps = (flagsOf(dev) & IommuTestCmd.MOCK_FLAGS_DEVICE_NO_DIRTY) != 0 ? 0 : IOMMU_HW_CAP_DIRTY_TRACKING;
        return new HwInfo(IommuTestCmd.IOMMU_HW_INFO_TYPE_SELFTEST, data, caps);
    }

    /** The mock has nothing to hand over: its devices and domains live only as long as one boot. */
    @Override
    public HandoverPlan validateHandover(final KhoIncoming incoming) {
        throw new UnsupportedOperationException("the mock IOMMU takes part in no live update");
    }

    @Override
    public List<RestoredDomain> adopt(final HandoverPlan plan) {
        throw new UnsupportedOperationException("the mock IOMMU takes part in no live update");
    }
}
