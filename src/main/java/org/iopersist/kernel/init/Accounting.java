package org.iopersist.kernel.init;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdDevice;
import org.iopersist.kernel.iommufd.IommufdFile;
import org.iopersist.kernel.vfio.VfioDeviceFile;

/**
 * The kernel's books at one moment, for the check every reliability test ends with: what it has
 * handed out (frames, user frames with a reference count, DIDs, DMA ownership, attached devices,
 * guestmemfs pins, persistent contexts) and whether every process is charged exactly the pages
 * its contexts' areas pin. A run leaks nothing when, after its last process has exited, each count
 * is back at the baseline taken before it started; {@link #leaksAgainst} says what is not.
 *
 * <p>Taken while the kernel is quiet (no syscall in flight), or the numbers may be mid-change.
 *
 * @param allocatedFrames   frames the allocator has handed out, less the preserved-memory tracker's
 *                          bitmaps (a bitmap stays once its range and order were used, as mainline
 *                          KHO's do: bounded by memory, not a leak of one run) and the VT-d context
 *                          tables (one stays per bus once a device on it was attached: bounded by
 *                          the buses)
 * @param userFrames        anonymous and memfd frames with a reference count (mapped or pinned)
 * @param didsInUse         domain ids in use, every remapping unit together
 * @param dmaOwned          devices whose DMA an iommufd context owns
 * @param devicesAttached   devices translating through a paging domain (the others are blocked)
 * @param guestmemfsPins    pins summed over every guestmemfs block
 * @param persistentContexts persistent iommufd contexts (live, reopened or restored)
 * @param poisonViolations  freed frames found written to when handed out again
 * @param pinMismatches     one line per process whose charged pinned pages differ from what its areas pin
 */
public record Accounting(long allocatedFrames, long userFrames, long didsInUse, long dmaOwned, long devicesAttached,
        long guestmemfsPins, long persistentContexts, long poisonViolations, List<String> pinMismatches) {

    static Accounting of(final Kernel k, final List<UserProcess> processes) {
        // Every context a process reaches: by its iommufd fds, and by the devices it bound.
        final Map<UserProcess, Long> charged = new HashMap<>();
        final Set<Object> seen = new HashSet<>();
        for (UserProcess p : processes) {
            for (KernelFile f : p.fds().files()) {
                final IommufdCtx ctx = switch (f) {
                    case IommufdFile i -> i.ctx();
                    case VfioDeviceFile v -> {
                        final IommufdDevice d = v.iommufdDevice();
                        yield d == null ? null : d.ctx();
                    }
                    default -> null;
                };
                if (ctx != null) {
                    ctx.sumPinned(charged, seen);
                }
            }
        }
        for (IommufdCtx ctx : k.persistedContexts().persistentContexts()) {
            ctx.sumPinned(charged, seen);
        }
        final List<String> mismatches = new ArrayList<>();
        for (UserProcess p : processes) {
            final long want = charged.getOrDefault(p, 0L);
            if (p.pinnedPages() != want) {
                mismatches.add(String.format("pid %d is charged %d pinned pages, its contexts' areas pin %d", p.pid(),
                        p.pinnedPages(), want));
            }
        }
        for (Map.Entry<UserProcess, Long> e : charged.entrySet()) {
            if (!processes.contains(e.getKey())) {
                mismatches.add(String.format("pid %d has exited, and areas still charge it %d pinned pages", e.getKey().pid(),
                        e.getValue()));
            }
        }
        long dids = 0;
        for (int u = 0; u < k.board().config().units().size(); u++) {
            dids += k.intelIommu().domainIdsInUse(u);
        }
        return new Accounting(k.frames().stats().allocatedFrames() - k.liveUpdate().kho().trackerFrames()
                - k.intelIommu().contextTableFrames(),
                k.frameRefs().frames(), dids, k.iommu().dmaOwned(),
                k.iommu().devicesAttached(), k.guestmemfs() == null ? 0 : k.guestmemfs().pinnedBlocks(),
                k.persistedContexts().persistentContexts().size(), k.frames().stats().poisonViolations(),
                List.copyOf(mismatches));
    }

    /** What differs from {@code baseline} (the books before a run), one line each; empty if nothing leaked. */
    public List<String> leaksAgainst(final Accounting baseline) {
        final List<String> out = new ArrayList<>(pinMismatches);
        diff(out, "allocated frames", allocatedFrames, baseline.allocatedFrames);
        diff(out, "user frames", userFrames, baseline.userFrames);
        diff(out, "DIDs in use", didsInUse, baseline.didsInUse);
        diff(out, "devices with a DMA owner", dmaOwned, baseline.dmaOwned);
        diff(out, "devices attached", devicesAttached, baseline.devicesAttached);
        diff(out, "guestmemfs pins", guestmemfsPins, baseline.guestmemfsPins);
        diff(out, "persistent contexts", persistentContexts, baseline.persistentContexts);
        diff(out, "poison violations", poisonViolations, baseline.poisonViolations);
        return out;
    }

    private static void diff(final List<String> out, final String what, final long now, final long before) {
        if (now != before) {
            out.add(String.format("%s: %d, %d before (%+d)", what, now, before, now - before));
        }
    }
}
