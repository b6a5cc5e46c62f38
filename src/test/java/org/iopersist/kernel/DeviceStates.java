package org.iopersist.kernel;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDomain;

/**
 * Whether each device is in one of the two states a device may be in, and the hardware agrees with
 * the kernel: blocked (no present context entry) or translating through the paging domain the iommu
 * core has it attached to (a present entry with that domain's table and DID). Anything else, such as
 * an entry left behind by a failed attach, is a half state.
 */
public final class DeviceStates {
    private DeviceStates() {
    }

    /** One line per device whose hardware state is not the kernel's; empty if all agree. */
    public static List<String> halfStates(final Kernel k) {
        final List<String> out = new ArrayList<>();
        final PhysicalMemory mem = k.board().memory();
        for (IommuDevice d : k.iommu().devices()) {
            final IommuDomain dom = k.iommu().domainOf(d);
            final long rootLo = mem.load64(RootEntry.address(k.intelIommu().rootTable(d.unit()), d.bdf().bus()));
            final int devfn = d.bdf().device() << 3 | d.bdf().function();
            final long ctx = RootEntry.present(rootLo) ? ContextEntry.address(RootEntry.contextTable(rootLo), devfn) : -1;
            final long lo = ctx < 0 ? 0 : mem.load64(ctx);
            final long hi = ctx < 0 ? 0 : mem.load64(ctx + 8);
            if (dom == k.iommu().blockedDomain()) {
                if (ContextEntry.present(lo)) {
                    out.add(d + ": blocked in the kernel, yet its context entry is present (table 0x"
                            + Long.toHexString(ContextEntry.slptptr(lo)) + ")");
                }
            } else if (!ContextEntry.present(lo)) {
                out.add(d + ": attached in the kernel, yet no context entry is present");
            } else if (ContextEntry.slptptr(lo) != dom.ops().handoverKey()
                    || ContextEntry.domainId(hi) != k.intelIommu().domainId(dom.ops(), d.unit())) {
                out.add(String.format("%s: attached to table 0x%x DID %d, the hardware walks 0x%x DID %d", d,
                        dom.ops().handoverKey(), k.intelIommu().domainId(dom.ops(), d.unit()), ContextEntry.slptptr(lo),
                        ContextEntry.domainId(hi)));
            }
        }
        return out;
    }
}
