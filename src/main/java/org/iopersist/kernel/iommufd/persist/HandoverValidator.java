package org.iopersist.kernel.iommufd.persist;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.iopersist.kernel.guestmemfs.Guestmemfs;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommu.IommuDriver;
import org.iopersist.kernel.iommu.ReservedRegion;
import org.iopersist.kernel.iommufd.IovaInterval;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.AreaPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.CtxPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.DevicePlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.HwptPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.IoasPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.PagesPlan;
import org.iopersist.kernel.iommufd.persist.IommufdHandover.Plan;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;

/**
 * validate: reads the {@link IommufdHandover iommufd-v1} blob into a {@link Plan}, checking it against
 * guestmemfs and the restored domains; touches nothing. An area past its file's end, overlapping
 * areas, a HWPT without its domain, a device its domain does not serve: each is a
 * {@link HandoverFormatException}, and the kernel cold-boots.
 */
final class HandoverValidator {
    private HandoverValidator() {
    }

    /**
     * @param fs             the guestmemfs the previous kernel's areas live in (null: none mounted)
     * @param machineDevices the devices of this machine, to resolve handover keys
     * @param tables         the VT-d driver's plan: the restored domains' tables
     */
    static Plan validate(final KhoIncoming in, final Guestmemfs fs, final List<IommuDevice> machineDevices,
            final IommuDriver.HandoverPlan tables) throws HandoverFormatException {
        final Map<Long, Set<IommuDevice>> domainsByKey = tables.domains();
        final Map<Long, Long> apertures = tables.apertures();
        final FdtReader blob = in.retrieveSubtree(IommufdHandover.NAME);
        if (blob == null) {
            return new Plan(List.of());
        }
        if (!IommufdHandover.COMPATIBLE.equals(blob.string(blob.root(), "compatible"))) {
            throw new HandoverFormatException("iommufd blob is not " + IommufdHandover.COMPATIBLE);
        }
        final List<CtxPlan> out = new ArrayList<>();
        final Set<Integer> pids = new HashSet<>();
        final Set<IommuDevice> devicesSeen = new HashSet<>();
        final Set<Long> domainsSeen = new HashSet<>();
        for (int cn : blob.children(blob.root())) {
            final int pid = blob.u32(cn, "persistent-id");
            if (pid < 1 || pid >= PersistentIds.MAX || !pids.add(pid)) {
                throw new HandoverFormatException("persistent id " + pid + " is invalid or repeated");
            }
            final Set<Integer> objIds = new HashSet<>();
            final Map<Integer, IoasPlan> ioas = new HashMap<>();
            final List<HwptPlan> hwpts = new ArrayList<>();
            final List<DevicePlan> devices = new ArrayList<>();
            for (int on : blob.children(cn)) {
                final String name = blob.nodeName(on);
                final int id = blob.u32(on, "id");
                if (id < 1 || !objIds.add(id)) {
                    throw new HandoverFormatException("ctx " + pid + ": object id " + id + " is invalid or repeated");
                }
                if (name.startsWith("ioas@")) {
                    ioas.put(id, readIoas(blob, on, id, pid, fs));
                } else if (name.startsWith("hwpt@")) {
                    hwpts.add(new HwptPlan(id, blob.u32(on, "ioas"), blob.u32(on, "auto") != 0, blob.u64(on, "domain")));
                } else if (name.startsWith("device@")) {
                    final long key = blob.u64(on, "device");
                    IommuDevice dev = null;
                    for (IommuDevice d : machineDevices) {
                        if (d.handoverKey() == key) {
                            dev = d;
                        }
                    }
                    if (dev == null || !devicesSeen.add(dev)) {
                        throw new HandoverFormatException(String.format("ctx %d: device 0x%x is unknown or claimed twice", pid, key));
                    }
                    devices.add(new DevicePlan(id, dev, blob.u32(on, "hwpt")));
                } else {
                    throw new HandoverFormatException("ctx " + pid + ": unknown node " + name);
                }
            }
            final Map<Integer, HwptPlan> hwptById = new HashMap<>();
            for (HwptPlan h : hwpts) {
                if (!ioas.containsKey(h.ioas())) {
                    throw new HandoverFormatException("ctx " + pid + ": hwpt " + h.id() + " names no IOAS");
                }
                if (!domainsByKey.containsKey(h.domainKey()) || !domainsSeen.add(h.domainKey())) {
                    throw new HandoverFormatException(String.format("ctx %d: hwpt %d's domain 0x%x was not restored, or is shared",
                            pid, h.id(), h.domainKey()));
                }
                hwptById.put(h.id(), h);
                if (ioas.get(h.ioas()).alignment() < 4096) {
                    // A domain raised the IOAS's alignment to its page size when it was added.
                    throw new HandoverFormatException("ctx " + pid + " ioas " + h.ioas() + ": alignment below the domain's page");
                }
                checkFits("ctx " + pid, ioas.get(h.ioas()), h.id(), apertures.getOrDefault(h.domainKey(), -1L));
            }
            for (DevicePlan d : devices) {
                final HwptPlan h = hwptById.get(d.hwpt());
                if (h == null || !domainsByKey.get(h.domainKey()).contains(d.dev())) {
                    throw new HandoverFormatException("ctx " + pid + ": " + d.dev() + " is not translating through hwpt " + d.hwpt());
                }
            }
            out.add(new CtxPlan(pid, blob.u32(cn, "owner-uid"), blob.u32(cn, "account-mode"), List.copyOf(ioas.values()),
                    hwpts, devices));
        }
        return new Plan(out);
    }

    /**
     * What the restore will reserve must be free: every area and allowed range of {@code ip} inside
     * the aperture ({@code last}) of HWPT {@code hwpt}, and clear of the interrupt window the
     * attached devices reserve. Whether the domain maps exactly these areas, leaf by leaf, is the
     * scrub's job after the devices are rebound (TableScrub): it is O(leaves), and the devices were
     * translating through these tables before this kernel ran.
     */
    static void checkFits(final String where, final IoasPlan ip, final int hwpt, final long last) throws HandoverFormatException {
        for (AreaPlan a : ip.areas()) {
            final long end = a.iova() + a.length() - 1;
            if (Long.compareUnsigned(end, last) > 0 || ReservedRegion.INTERRUPT_WINDOW.intersects(a.iova(), end)) {
                throw new HandoverFormatException(String.format("%s ioas %d: area at 0x%x outside what hwpt %d may map",
                        where, ip.id(), a.iova(), hwpt));
            }
        }
        for (IovaInterval r : ip.allowed()) {
            if (Long.compareUnsigned(r.last(), last) > 0 || ReservedRegion.INTERRUPT_WINDOW.intersects(r.start(), r.last())) {
                throw new HandoverFormatException(where + " ioas " + ip.id() + ": allowed range over a reserved one");
            }
        }
    }

    private static IoasPlan readIoas(final FdtReader blob, final int on, final int id, final int pid, final Guestmemfs fs)
            throws HandoverFormatException {
        final Map<Long, Guestmemfs.Stat> stats = new HashMap<>(); // a VMM's areas name few files
        return readIoas(blob, on, id, "ctx " + pid, ino -> {
            final Guestmemfs.Stat st = stats.computeIfAbsent(ino, i -> statIno(fs, i));
            return st == null ? -1 : st.size();
        }, "inode");
    }

    /**
     * One {@code ioas@N} node: its pages and areas, each inside the file {@code fileSize} sizes (-1:
     * no such file; {@code fileWord} names the file reference in messages), areas not overlapping,
     * every pages entry used, allowed ranges in order, a power-of-two alignment.
     */
    static IoasPlan readIoas(final FdtReader blob, final int on, final int id, final String where,
            final java.util.function.LongUnaryOperator fileSize, final String fileWord) throws HandoverFormatException {
        final long[] raw = blob.u64Array(on, "areas");
        final long[] pagesRaw = blob.u64Array(on, "pages");
        final long[] allowedRaw = blob.u64Array(on, "allowed");
        if (raw.length % IommufdHandover.AREA_CELLS != 0 || pagesRaw.length % IommufdHandover.PAGES_CELLS != 0
                || allowedRaw.length % 2 != 0) {
            throw new HandoverFormatException(where + " ioas " + id + ": malformed arrays");
        }
        final List<PagesPlan> pages = new ArrayList<>();
        for (int k = 0; k < pagesRaw.length; k += IommufdHandover.PAGES_CELLS) {
            final PagesPlan p = new PagesPlan(pagesRaw[k], pagesRaw[k + 1], pagesRaw[k + 2]);
            final long size = fileSize.applyAsLong(p.ino());
            // A memfd's last page may be partial: its pages end at the page-aligned end of the file.
            if (p.length() <= 0 || p.offset() < 0 || ((p.offset() | p.length()) & 0xfff) != 0
                    || size < 0 || p.offset() + p.length() > ((size + 0xfff) & ~0xfffL)) {
                throw new HandoverFormatException(String.format("%s ioas %d: pages %d lie past the end of %s 0x%x",
                        where, id, k / IommufdHandover.PAGES_CELLS, fileWord, p.ino()));
            }
            pages.add(p);
        }
        final List<AreaPlan> areas = new ArrayList<>();
        final TreeMap<Long, Long> spans = new TreeMap<>(Long::compareUnsigned);
        for (int k = 0; k < raw.length; k += IommufdHandover.AREA_CELLS) {
            final AreaPlan a = new AreaPlan(raw[k], raw[k + 1], raw[k + 2], raw[k + 3], (int) raw[k + 4], (int) raw[k + 5]);
            if (a.length() <= 0 || a.offset() < 0 || (a.prot() & ~3) != 0 || a.prot() == 0
                    || Long.compareUnsigned(a.iova() + a.length() - 1, a.iova()) < 0
                    || raw[k + 5] < 0 || raw[k + 5] >= pages.size()) {
                throw new HandoverFormatException(where + " ioas " + id + ": malformed area at 0x" + Long.toHexString(a.iova()));
            }
            final long size = fileSize.applyAsLong(a.ino());
            if (size < 0 || a.offset() + a.length() > size) {
                throw new HandoverFormatException(String.format("%s ioas %d: area at 0x%x lies past the end of %s 0x%x",
                        where, id, a.iova(), fileWord, a.ino()));
            }
            final PagesPlan p = pages.get(a.pages());
            if (p.ino() != a.ino() || a.offset() < p.offset() || a.offset() + a.length() > p.offset() + p.length()) {
                throw new HandoverFormatException(String.format("%s ioas %d: area at 0x%x lies outside its pages %d",
                        where, id, a.iova(), a.pages()));
            }
            final Map.Entry<Long, Long> before = spans.floorEntry(a.iova() + a.length() - 1);
            if (before != null && Long.compareUnsigned(before.getValue(), a.iova()) >= 0) {
                throw new HandoverFormatException(String.format("%s ioas %d: areas overlap at 0x%x", where, id, a.iova()));
            }
            spans.put(a.iova(), a.iova() + a.length() - 1);
            areas.add(a);
        }
        // A loop, not a stream: this runs once per boot, cold, where a first stream costs ~15 ms.
        final boolean[] used = new boolean[pages.size()];
        int distinct = 0;
        for (AreaPlan a : areas) {
            if (!used[a.pages()]) {
                used[a.pages()] = true;
                distinct++;
            }
        }
        if (distinct != pages.size()) {
            throw new HandoverFormatException(where + " ioas " + id + ": pages no area uses");
        }
        final List<IovaInterval> allowed = new ArrayList<>();
        for (int k = 0; k < allowedRaw.length; k += 2) {
            if (Long.compareUnsigned(allowedRaw[k], allowedRaw[k + 1]) > 0
                    || (k > 0 && Long.compareUnsigned(allowedRaw[k], allowedRaw[k - 1]) <= 0)) {
                throw new HandoverFormatException(where + " ioas " + id + ": allowed ranges out of order");
            }
            allowed.add(new IovaInterval(allowedRaw[k], allowedRaw[k + 1]));
        }
        final long alignment = blob.u64(on, "alignment");
        if (alignment < 1 || Long.bitCount(alignment) != 1) {
            throw new HandoverFormatException(where + " ioas " + id + ": alignment " + alignment);
        }
        for (AreaPlan a : areas) {
            // As iopt_alloc_area_pages admitted it: the IOVA and length on the IOAS's alignment, and
            // the IOVA at the same offset in its page as the file byte it maps.
            if (((a.iova() | a.length()) & (alignment - 1)) != 0 || ((a.iova() ^ a.offset()) & 0xfff) != 0) {
                throw new HandoverFormatException(String.format("%s ioas %d: area at 0x%x+0x%x (file offset 0x%x) is not "
                        + "aligned as the IOAS's 0x%x requires", where, id, a.iova(), a.length(), a.offset(), alignment));
            }
        }
        return new IoasPlan(id, alignment, blob.u32(on, "huge-pages") != 0, allowed, pages, areas);
    }

    private static Guestmemfs.Stat statIno(final Guestmemfs fs, final long ino) {
        return fs == null ? null : fs.statInode(ino);
    }
}
