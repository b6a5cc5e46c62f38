package org.iopersist.kernel.iommufd;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.TreeMap;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.iommu.DomainOps;
import org.iopersist.uapi.Errno;

/**
 * The IOVA space of one IOAS, as Linux's {@code io_pagetable} ({@code io_pagetable.c}): what
 * userspace mapped, which every domain attached mirrors, and every {@code iopt_*} algorithm over
 * it. Three interval sets and an alignment:
 * <ul>
 *   <li><b>areas</b>: mapped ranges ({@link IoptArea}); never overlap each other;</li>
 *   <li><b>reserved</b>: ranges nothing may be mapped at, each with an owner (a domain's aperture
 *       holes, a device's reserved regions such as the interrupt window); they may overlap each
 *       other, and never intersect an area or an allowed range;</li>
 *   <li><b>allowed</b>: if not empty, automatic allocation searches only inside these; they never
 *       overlap each other nor a reserved range.</li>
 * </ul>
 * All comparisons are unsigned: an IOVA can reach U64_MAX.
 *
 * <p>Pages are pinned while any domain is attached (one pin user per area), or while an access
 * pins them; mapping with no domain attached pins nothing, as in Linux.
 *
 * <p>Lock order: {@code domainsLock -> iovaLock -> IoptPages' monitor} (Linux's domains_rwsem ->
 * iova_rwsem -> pages::mutex). The interval-set helpers expect the caller to hold iovaLock (they
 * assert it); the {@code iopt_*} operations take the locks themselves unless they say otherwise.
 */
final class IoPagetable {
    static final long PAGE_SIZE = 4096;
    /** The cap on automatic alignment: HPAGE_SIZE with transparent huge pages on x86. */
    static final long MAX_AUTO_ALIGNMENT = 2L << 20;
    /** How often an unmap asks the accesses pinning an area to let go before it gives up. */
    private static final int UNMAP_ACCESS_RETRIES = 100;

    /** domains_rwsem: written to attach or detach a domain, read to map into the domains. */
    final ReentrantReadWriteLock domainsLock = new ReentrantReadWriteLock();
    /**
     * iopt::liveupdate_immutable: a HWPT over this IOAS is preserved for a live update, so its
     * mappings must stay as the domain holds them: map and unmap answer EBUSY.
     */
    volatile boolean liveupdateImmutable;
    /** iova_rwsem: the interval sets, the alignment and the access list. */
    final ReentrantReadWriteLock iovaLock = new ReentrantReadWriteLock();

    // guarded by domainsLock, then iovaLock for the areas' fill state
    private final List<IoasDomain> domains = new ArrayList<>();
    /** Accesses attached (iopt->access_list); guarded by iovaLock. */
    private final List<Access> accesses = new ArrayList<>();
    // guarded by iovaLock
    private final TreeMap<Long, IoptArea> areas = new TreeMap<>(Long::compareUnsigned);
    private final List<Reserved> reserved = new ArrayList<>();
    private final TreeMap<Long, Long> allowed = new TreeMap<>(Long::compareUnsigned);
    private long iovaAlignment = 1;
    private boolean disableLargePages;
    /** The fail_nth points of the context this IOAS belongs to. */
    private final FailPoints fail;

    /** A bare table with no fault injection (a unit test's). */
    IoPagetable() {
        this(FailPoints.none());
    }

    IoPagetable(final FailPoints fail) {
        this.fail = fail;
    }

    /** A reserved range and who reserved it (struct iopt_reserved; removed by owner). */
    record Reserved(long start, long last, Object owner) {
    }

    /**
     * One element of the list {@link #getPages} fills and {@link #mapPages} consumes (struct
     * iopt_pages_list): the pages, the byte in them where the piece starts, its length. The element
     * holds one pages reference.
     */
    record PagesList(IoptPages pages, long startByte, long length) {
    }

    private void assertIovaHeld() {
        assert iovaLock.isWriteLockedByCurrentThread() || iovaLock.getReadHoldCount() > 0 : "iova_rwsem not held";
    }

    private void assertIovaWriteHeld() {
        assert iovaLock.isWriteLockedByCurrentThread() : "iova_rwsem not held for writing";
    }

    long iovaAlignment() {
        assertIovaHeld();
        return iovaAlignment;
    }

    void setIovaAlignment(final long alignment) {
        assertIovaWriteHeld();
        this.iovaAlignment = alignment;
    }

    boolean largePagesDisabled() {
        assertIovaHeld();
        return disableLargePages;
    }

    void setLargePagesDisabled(final boolean disabled) {
        assertIovaWriteHeld();
        this.disableLargePages = disabled;
    }

    // ------------------------------------------------------------------ the scrub

    /**
     * The check of an adopted domain that boot leaves out: every leaf of {@code ops} lies in one
     * area, maps that area's pages with its prot, and the leaves add up to the pages the areas span,
     * so the domain maps the areas and nothing else. O(leaves + contiguous runs). The caller holds
     * domainsLock and iovaLock for reading, so no map or unmap is half done.
     */
    HwptPaging.ScrubResult checkDomain(final DomainOps ops) {
        assertIovaHeld();
        final LeafCheck check = new LeafCheck();
        ops.forEachLeaf(check);
        long span = 0;
        for (IoptArea a : areas.values()) {
            span += (((a.startByte() + a.length() - 1) >>> 12) - (a.startByte() >>> 12) + 1) << 12;
        }
        String mismatch = check.mismatch;
        if (mismatch == null && check.bytes != span) {
            mismatch = String.format("the domain maps 0x%x bytes, its areas span 0x%x", check.bytes, span);
        }
        return new HwptPaging.ScrubResult(check.leaves, check.bytes, span, mismatch);
    }

    /**
     * The scrub's visitor. Leaves come in IOVA order, so it keeps the area and the contiguous run of
     * its pages the last leaf fell in: a leaf inside them costs a compare, not a lookup.
     */
    private final class LeafCheck implements DomainOps.LeafVisitor {
        long leaves;
        long bytes;
        String mismatch;
        private IoptArea area;
        private long areaBase; // IOVA of the area's first page
        private boolean haveRun; // [runIova, runLast] translates to runPhys + (iova - runIova)
        private long runIova;
        private long runLast;
        private long runPhys;

        private boolean outsideArea(final long iova, final long size) {
            return area == null || IovaMath.lt(iova, areaBase) || IovaMath.lt(area.last() | (PAGE_SIZE - 1), iova + size - 1);
        }

        @Override
        public void leaf(final long iova, final long phys, final long size, final int prot) {
            leaves++;
            bytes += size;
            if (mismatch != null) {
                return;
            }
            if (outsideArea(iova, size)) {
                final Map.Entry<Long, IoptArea> e = areas.floorEntry(iova + PAGE_SIZE - 1);
                area = e == null ? null : e.getValue();
                areaBase = area == null ? 0 : area.start() - (area.startByte() & (PAGE_SIZE - 1));
                haveRun = false;
                if (outsideArea(iova, size)) {
                    mismatch = String.format("a leaf maps IOVA 0x%x+0x%x outside every area", iova, size);
                    return;
                }
            }
            if (prot != area.prot()) {
                mismatch = String.format("the leaf at IOVA 0x%x allows 0x%x, its area 0x%x", iova, prot, area.prot());
                return;
            }
            for (long done = 0; done < size; ) {
                final long at = iova + done;
                if (!haveRun || IovaMath.lt(at, runIova) || IovaMath.lt(runLast, at)) {
                    final long index = (area.startByte() >>> 12) + ((at - areaBase) >>> 12);
                    final long pagesLeft = ((area.last() | (PAGE_SIZE - 1)) - at + 1) >>> 12;
                    runIova = at;
                    runPhys = area.pages().frame(index);
                    runLast = at + (area.pages().contiguousPages(index, pagesLeft) << 12) - 1;
                    haveRun = true;
                }
                if (phys + done != runPhys + (at - runIova)) {
                    mismatch = String.format("IOVA 0x%x translates to 0x%x, its area's page is at 0x%x", at, phys + done,
                            runPhys + (at - runIova));
                    return;
                }
                done += Math.min(size - done, runLast - at + 1);
            }
        }
    }

    // ------------------------------------------------------------------ areas

    NavigableMap<Long, IoptArea> areas() {
        assertIovaHeld();
        return areas;
    }

    /** Areas intersecting {@code [start, last]}, ascending. */
    List<IoptArea> areasIn(final long start, final long last) {
        assertIovaHeld();
        final List<IoptArea> out = new ArrayList<>();
        final Map.Entry<Long, IoptArea> floor = areas.floorEntry(start);
        final long from = floor != null && IovaMath.le(start, floor.getValue().last()) ? floor.getKey() : start;
        for (IoptArea a : areas.subMap(from, true, last, true).values()) {
            out.add(a);
        }
        return out;
    }

    boolean areaIntersects(final long start, final long last) {
        return !areasIn(start, last).isEmpty();
    }

    void insertArea(final IoptArea area) {
        assertIovaWriteHeld();
        areas.put(area.start(), area);
    }

    void removeArea(final IoptArea area) {
        assertIovaWriteHeld();
        areas.remove(area.start(), area);
    }

    // ------------------------------------------------------------------ reserved

    boolean reservedIntersects(final long start, final long last) {
        assertIovaHeld();
        for (Reserved r : reserved) {
            if (IovaMath.le(r.start(), last) && IovaMath.le(start, r.last())) {
                return true;
            }
        }
        return false;
    }

    private boolean allowedIntersects(final long start, final long last) {
        for (Map.Entry<Long, Long> e : allowed.entrySet()) {
            if (IovaMath.le(e.getKey(), last) && IovaMath.le(start, e.getValue())) {
                return true;
            }
        }
        return false;
    }

    /**
     * iopt_reserve_iova: reserves {@code [start, last]} for {@code owner}.
     *
     * @throws KernelException EADDRINUSE if an area or an allowed range is there
     */
    void reserve(final long start, final long last, final Object owner) {
        assertIovaWriteHeld();
        if (areaIntersects(start, last) || allowedIntersects(start, last)) {
            throw new KernelException(Errno.EADDRINUSE,
                    String.format("reserve [0x%x, 0x%x]: an area or allowed range is there", start, last));
        }
        fail.kzalloc("iopt_reserved");
        reserved.add(new Reserved(start, last, owner));
        reserved.sort((a, b) -> Long.compareUnsigned(a.start(), b.start()));
    }

    /** Reserves every range for {@code owner}, or none of them (EADDRINUSE). */
    private void reserveAll(final List<IovaInterval> ranges, final Object owner) {
        try {
            for (IovaInterval r : ranges) {
                reserve(r.start(), r.last(), owner);
            }
        } catch (RuntimeException e) {
            unreserve(owner);
            throw e;
        }
    }

    /** iopt_remove_reserved_iova: drops every range {@code owner} reserved. */
    void unreserve(final Object owner) {
        assertIovaWriteHeld();
        reserved.removeIf(r -> r.owner() == owner);
    }

    // ------------------------------------------------------------------ allowed

    /**
     * iopt_set_allow_iova: replaces the allowed list atomically.
     *
     * @throws KernelException EINVAL for an empty or inverted range or two overlapping ranges,
     *                         EADDRINUSE if a range intersects a reserved one (the old list stays)
     */
    void setAllowed(final List<IovaInterval> ranges) {
        assertIovaWriteHeld();
        final TreeMap<Long, Long> next = new TreeMap<>(Long::compareUnsigned);
        for (IovaInterval r : ranges) {
            for (Map.Entry<Long, Long> e : next.entrySet()) {
                if (IovaMath.le(e.getKey(), r.last()) && IovaMath.le(r.start(), e.getValue())) {
                    throw new KernelException(Errno.EINVAL, "allowed ranges overlap: " + r);
                }
            }
            next.put(r.start(), r.last());
        }
        for (Map.Entry<Long, Long> e : next.entrySet()) {
            if (reservedIntersects(e.getKey(), e.getValue())) {
                throw new KernelException(Errno.EADDRINUSE, "allowed range intersects a reserved range");
            }
        }
        allowed.clear();
        allowed.putAll(next);
    }

    List<IovaInterval> allowedRanges() {
        assertIovaHeld();
        return allowed.entrySet().stream().map(e -> new IovaInterval(e.getKey(), e.getValue())).toList();
    }

    /** What IOVA_RANGES reports: the holes of the reserved set over [0, U64_MAX], ascending. */
    List<IovaInterval> usableRanges() {
        assertIovaHeld();
        final List<IovaInterval> out = new ArrayList<>();
        long next = 0;
        boolean wrapped = false;
        for (IovaInterval used : merged(reservedAsRanges())) {
            if (IovaMath.lt(next, used.start())) {
                out.add(new IovaInterval(next, used.start() - 1));
            }
            if (used.last() == IovaInterval.ULONG_MAX) {
                wrapped = true;
                break;
            }
            if (IovaMath.le(next, used.last())) {
                next = used.last() + 1;
            }
        }
        if (!wrapped) {
            out.add(new IovaInterval(next, IovaInterval.ULONG_MAX));
        }
        return out;
    }

    private List<IovaInterval> reservedAsRanges() {
        final List<IovaInterval> out = new ArrayList<>();
        for (Reserved r : reserved) {
            out.add(new IovaInterval(r.start(), r.last()));
        }
        return out;
    }

    /** Sorts and merges overlapping or touching ranges. */
    private static List<IovaInterval> merged(final List<IovaInterval> in) {
        final List<IovaInterval> sorted = new ArrayList<>(in);
        sorted.sort((a, b) -> Long.compareUnsigned(a.start(), b.start()));
        final List<IovaInterval> out = new ArrayList<>();
        for (IovaInterval r : sorted) {
            if (!out.isEmpty()) {
                final IovaInterval prev = out.get(out.size() - 1);
                if (prev.last() == IovaInterval.ULONG_MAX || IovaMath.le(r.start(), prev.last() + 1)) {
                    if (IovaMath.lt(prev.last(), r.last())) {
                        out.set(out.size() - 1, new IovaInterval(prev.start(), r.last()));
                    }
                    continue;
                }
            }
            out.add(r);
        }
        return out;
    }

    // ------------------------------------------------------------------ placement

    /**
     * Checks a fixed IOVA for a new area of {@code length} bytes, as iopt_alloc_area_pages does.
     *
     * @throws KernelException EINVAL misaligned or reserved; EOVERFLOW wrap; EEXIST an area is there
     */
    void checkFixed(final long iova, final long length) {
        assertIovaHeld();
        if (Long.remainderUnsigned(iova, iovaAlignment) != 0) {
            throw new KernelException(Errno.EINVAL, String.format("iova=0x%x not aligned to 0x%x", iova, iovaAlignment));
        }
        final long last = IovaMath.lastOf(iova, length);
        if (reservedIntersects(iova, last)) {
            throw new KernelException(Errno.EINVAL, String.format("[0x%x, 0x%x] intersects a reserved range", iova, last));
        }
        if (areaIntersects(iova, last)) {
            throw new KernelException(Errno.EEXIST, String.format("[0x%x, 0x%x] intersects an area", iova, last));
        }
    }

    /**
     * Chooses an IOVA for {@code length} bytes starting at user address (or file offset) {@code addr},
     * exactly as Linux's iopt_alloc_iova: first fit, IOVA 0 and the last page never returned, the
     * result aligned to min(roundup_pow_of_two(length), lowest set bit of addr) capped at 2 MiB, and
     * keeping addr's offset within its page.
     *
     * @throws KernelException EOVERFLOW for a length of 0 or at least U64_MAX / 2; EINVAL if the
     *                         natural alignment is below the IOAS's; ENOSPC if no hole fits
     */
    long allocIova(final long addr, final long length) {
        assertIovaHeld();
        if (length == 0 || Long.compareUnsigned(length, IovaInterval.ULONG_MAX >>> 1) >= 0) {
            throw new KernelException(Errno.EOVERFLOW, "length=0x" + Long.toHexString(length));
        }
        final long pageOffset = addr & (PAGE_SIZE - 1);
        long align = IovaMath.roundupPowerOfTwo(length);
        if (addr != 0) {
            align = Math.min(align, Long.lowestOneBit(addr));
        }
        if (Long.compareUnsigned(align, MAX_AUTO_ALIGNMENT) >= 0) {
            align = MAX_AUTO_ALIGNMENT;
        }
        if (Long.compareUnsigned(align, iovaAlignment) < 0) {
            throw new KernelException(Errno.EINVAL,
                    "natural alignment 0x" + Long.toHexString(align) + " below the IOAS's 0x" + Long.toHexString(iovaAlignment));
        }
        final List<IovaInterval> spans = allowed.isEmpty()
                ? List.of(new IovaInterval(PAGE_SIZE, IovaInterval.ULONG_MAX - PAGE_SIZE))
                : clip(allowedRanges(), PAGE_SIZE, IovaInterval.ULONG_MAX - PAGE_SIZE);
        for (IovaInterval span : spans) {
            final List<IovaInterval> used = new ArrayList<>(reservedAsRanges());
            for (IoptArea a : areasIn(span.start(), span.last())) {
                used.add(new IovaInterval(a.start(), a.last()));
            }
            long holeStart = span.start();
            for (IovaInterval u : merged(used)) {
                if (IovaMath.lt(u.last(), span.start())) {
                    continue;
                }
                if (IovaMath.lt(span.last(), u.start())) {
                    break;
                }
                if (IovaMath.lt(holeStart, u.start())) {
                    final long found = fit(holeStart, u.start() - 1, length, align, pageOffset);
                    if (found != -1) {
                        return found;
                    }
                }
                if (IovaMath.le(span.last(), u.last())) {
                    holeStart = -1;
                    break;
                }
                holeStart = IovaMath.lt(holeStart, u.last() + 1) ? u.last() + 1 : holeStart;
            }
            if (holeStart != -1) {
                final long found = fit(holeStart, span.last(), length, align, pageOffset);
                if (found != -1) {
                    return found;
                }
            }
        }
        throw new KernelException(Errno.ENOSPC, "no IOVA hole for length=0x" + Long.toHexString(length));
    }

    /** __alloc_iova_check_range: the aligned start in {@code [start, last]}, or -1. */
    private static long fit(final long start, final long last, final long length, final long align, final long pageOffset) {
        final long bumped = start + (align - 1);
        if (Long.compareUnsigned(bumped, start) < 0) {
            return -1;
        }
        final long aligned = (bumped & ~(align - 1)) | pageOffset;
        if (Long.compareUnsigned(aligned, last) >= 0 || Long.compareUnsigned(last - aligned, length - 1) < 0) {
            return -1;
        }
        return aligned;
    }

    private static List<IovaInterval> clip(final List<IovaInterval> ranges, final long lo, final long hi) {
        final List<IovaInterval> out = new ArrayList<>();
        for (IovaInterval r : ranges) {
            final long s = IovaMath.lt(r.start(), lo) ? lo : r.start();
            final long l = IovaMath.lt(hi, r.last()) ? hi : r.last();
            if (IovaMath.le(s, l)) {
                out.add(new IovaInterval(s, l));
            }
        }
        return out;
    }

    // ------------------------------------------------------------------ alignment

    /**
     * IOMMU_OPTION_HUGE_PAGES (iopt_enable_large_pages / iopt_disable_large_pages): disabling is
     * refused (EINVAL) while the IOAS has both domains and areas, and raises the alignment to
     * PAGE_SIZE, failing with EADDRINUSE if an area is not aligned to it. Caller holds iovaLock for
     * writing.
     */
    void setLargePages(final boolean enabled) {
        assertIovaWriteHeld();
        if (enabled == !disableLargePages) {
            return;
        }
        if (!enabled && !domains.isEmpty() && !areas.isEmpty()) {
            throw new KernelException(Errno.EINVAL, "cannot disable large pages with domains and areas");
        }
        final long alignment = calculateIovaAlignment(!enabled);
        if (alignment > iovaAlignment) {
            final IoptArea a = firstMisaligned(alignment);
            if (a != null) {
                throw new KernelException(Errno.EADDRINUSE,
                        "area " + Long.toHexString(a.start()) + " not aligned to 0x" + Long.toHexString(alignment));
            }
        }
        disableLargePages = !enabled;
        iovaAlignment = alignment;
    }

    /** iopt_disable_large_pages, taking the locks: VFIO_SET_IOMMU(VFIO_TYPE1_IOMMU). @see #setLargePages */
    void disableLargePages() {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            setLargePages(false);
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    /** READ_ONCE(iopt->disable_large_pages), for a caller holding no lock. */
    boolean largePagesDisabledNow() {
        iovaLock.readLock().lock();
        try {
            return disableLargePages;
        } finally {
            iovaLock.readLock().unlock();
        }
    }

    /**
     * iopt_check_iova_alignment: the first area whose IOVA, length or page offset (where it starts
     * in its first page) is not aligned to {@code alignment}, or null. A page offset a domain cannot
     * express would map the wrong bytes.
     */
    private IoptArea firstMisaligned(final long alignment) {
        final long mask = alignment - 1;
        for (IoptArea a : areas.values()) {
            if ((a.start() & mask) != 0 || (a.length() & mask) != 0 || (a.startByte() & (PAGE_SIZE - 1) & mask) != 0) {
                return a;
            }
        }
        return null;
    }

    /** iopt_calculate_iova_alignment: the largest minimum page size of domains and accesses. */
    private long calculateIovaAlignment(final boolean largePagesDisabled) {
        long alignment = 1;
        for (IoasDomain d : domains) {
            alignment = Math.max(alignment, d.minPageSize());
        }
        for (Access a : accesses) {
            alignment = Math.max(alignment, a.alignment());
        }
        if (largePagesDisabled) {
            alignment = Math.max(alignment, PAGE_SIZE);
        }
        return alignment;
    }

    // ------------------------------------------------------------------ map and unmap

    /**
     * iopt_map_pages: chooses ({@code allocIova}) or checks the IOVA, inserts one area per
     * element and fills the domains. The elements' pages references move into the areas; on
     * failure they are dropped.
     *
     * @param addrHint the user address (or file offset) an automatic IOVA aligns to
     * @return the IOVA of the first byte
     */
    long mapPages(final List<PagesList> pagesList, final long length, final long fixedIova, final boolean allocIova,
            final int prot, final long addrHint) {
        try {
            for (int i = 0; i < pagesList.size(); i++) {
                fail.kzalloc("iopt_area"); // iopt_alloc_area_pages: every area before any check
            }
        } catch (RuntimeException e) {
            pagesList.forEach(p -> p.pages().put());
            throw e;
        }
        domainsLock.readLock().lock();
        iovaLock.writeLock().lock();
        final List<IoptArea> added = new ArrayList<>();
        try {
            if (length == 0 || Long.remainderUnsigned(length, iovaAlignment) != 0) {
                throw new KernelException(Errno.EINVAL, "length 0x" + Long.toHexString(length) + " not aligned to 0x"
                        + Long.toHexString(iovaAlignment));
            }
            final long iova;
            if (!allocIova) {
                checkFixed(fixedIova, length);
                iova = fixedIova;
            } else {
                iova = allocIova(addrHint, length);
            }
            long at = iova;
            for (PagesList p : pagesList) {
                if ((prot & IoasDomain.IOMMU_WRITE) != 0 && !p.pages().writable) {
                    throw new KernelException(Errno.EPERM, "pages are not writable");
                }
                if (Long.remainderUnsigned(p.startByte() & (PAGE_SIZE - 1), iovaAlignment) != 0) {
                    throw new KernelException(Errno.EINVAL, "page offset not aligned to the IOAS");
                }
                final IoptArea a = new IoptArea(at, at + p.length() - 1, prot, p.pages(), p.startByte());
                addArea(a);
                added.add(a);
                at += p.length();
            }
            return iova;
        } catch (RuntimeException e) {
            for (IoptArea a : added) {
                unmapArea(a); // drops the reference the element moved into it
            }
            for (int i = added.size(); i < pagesList.size(); i++) {
                pagesList.get(i).pages().put();
            }
            throw e;
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.readLock().unlock();
        }
    }

    /**
     * iopt_map_common: maps all of {@code pages} from byte offset {@code addr}'s offset within its
     * page, where {@code addr} is the user address or file offset they start at (the hint an
     * automatic IOVA aligns to). The pages reference moves into the area.
     */
    long mapCommon(final IoptPages pages, final long addr, final long length, final long fixedIova, final boolean allocIova,
            final int prot) {
        return mapPages(List.of(new PagesList(pages, IoptPages.pageOffset(addr), length)), length, fixedIova, allocIova, prot,
                addr);
    }

    /**
     * Publishes a new area: pins its pages if any domain needs them and fills every domain; on
     * failure nothing of it stays. Caller holds domainsLock (read) and iovaLock (write).
     */
    private void addArea(final IoptArea a) {
        if (a.pages().guestmem() != null) {
            // Each area pins exactly the file range it maps, whatever domains come and go.
            a.pages().guestmem().pin(a.pages().fileOffset(a.startByte()), a.length());
        }
        try {
            fillDomains(a);
        } catch (RuntimeException e) {
            if (a.pages().guestmem() != null) {
                a.pages().guestmem().unpin(a.pages().fileOffset(a.startByte()), a.length());
            }
            throw e;
        }
    }

    /** iopt_area_fill_domains: inserts the area and maps it into every domain, pinning if there are any. */
    private void fillDomains(final IoptArea a) {
        insertArea(a);
        if (domains.isEmpty()) {
            return;
        }
        final boolean pins;
        try {
            pins = readerPin(a);
        } catch (RuntimeException e) {
            removeArea(a);
            throw e;
        }
        int filled = 0;
        try {
            for (; filled < domains.size(); filled++) {
                a.fill(domains.get(filled), disableLargePages);
            }
            if (pins) {
                fail.updatePinned();
            }
        } catch (RuntimeException e) {
            // The failing domain may hold part of the area: unmap tolerates holes.
            for (int i = 0; i <= filled && i < domains.size(); i++) {
                a.unfill(domains.get(i));
            }
            a.pages().unpin();
            removeArea(a);
            throw e;
        }
    }

    /**
     * The pfn reader's start for filling domains with {@code a} (pfn_reader_first), and the area's
     * pin user: the batch, and the user pin's points when nobody holds the pages yet (otherwise
     * Linux reads them from a domain or the access xarray). Returns whether this pinned them, so
     * the caller's update of the pinned count is a point too.
     */
    private boolean readerPin(final IoptArea a) {
        fail.batchInit();
        final boolean pins = !a.pages().pinnedNow();
        if (pins) {
            fail.userPin(((a.startByte() + a.length() - 1) >>> 12) - (a.startByte() >>> 12) + 1, false);
        }
        a.pages().pin();
        return pins;
    }

    /**
     * iopt_area_unfill_domains + iopt_abort_area: removes an area from every domain and the tree,
     * dropping its pin and pages reference. Caller holds iovaLock for writing.
     */
    private void unmapArea(final IoptArea a) {
        if (!domains.isEmpty()) {
            for (IoasDomain d : domains) {
                a.unfill(d);
            }
            a.pages().unpin();
        }
        removeArea(a);
        if (a.pages().guestmem() != null) {
            a.pages().guestmem().unpin(a.pages().fileOffset(a.startByte()), a.length());
        }
        a.pages().put();
    }

    /**
     * iopt_get_pages: the pages under {@code [iova, iova + length)}, which contiguous areas must
     * cover without a gap (ENOENT otherwise); each element takes a pages reference.
     */
    List<PagesList> getPages(final long iova, final long length) {
        final long last = IovaMath.lastOf(iova, length);
        iovaLock.readLock().lock();
        try {
            final List<PagesList> out = new ArrayList<>();
            long cur = iova;
            for (IoptArea a : areasIn(iova, last)) {
                if (a.start() != cur && !(out.isEmpty() && Long.compareUnsigned(a.start(), cur) < 0)) {
                    break;
                }
                final long end = Long.compareUnsigned(a.last(), last) < 0 ? a.last() : last;
                fail.kzalloc("iopt_pages_list"); // no reference taken yet: nothing to undo
                out.add(new PagesList(a.pages(), a.startByte() + (cur - a.start()), end - cur + 1));
                if (end == last) {
                    out.forEach(p -> p.pages().get()); // move into areas by mapPages, or put by the caller
                    return out;
                }
                cur = end + 1;
            }
            throw new KernelException(Errno.ENOENT, String.format("[0x%x, 0x%x] is not covered by areas", iova, last));
        } finally {
            iovaLock.readLock().unlock();
        }
    }

    /**
     * iopt_unmap_iova_range: every area intersecting [start, last] must lie inside it (ENOENT),
     * removed in ascending order (those before a failure stay removed); nothing found is ENOENT,
     * except for unmap-all ({@code all}, iopt_unmap_all), which succeeds on an empty IOAS. An area an
     * access pins is asked back (iommufd_access_notify_unmap) and retried.
     *
     * @return bytes unmapped
     */
    long unmapIovaRange(final long start, final long last, final boolean all) {
        long unmapped = 0;
        for (int tries = 0; ; tries++) {
            final List<Access> pinning;
            domainsLock.readLock().lock();
            iovaLock.writeLock().lock();
            try {
                IoptArea blocked = null;
                for (IoptArea a : areasIn(start, last)) {
                    if (Long.compareUnsigned(a.start(), start) < 0 || Long.compareUnsigned(a.last(), last) > 0) {
                        throw new KernelException(Errno.ENOENT, String.format("area [0x%x, 0x%x] is not inside the range",
                                a.start(), a.last()));
                    }
                    if (!accessesPinning(a.start(), a.last()).isEmpty()) {
                        blocked = a;
                        break;
                    }
                    unmapArea(a);
                    unmapped += a.length();
                }
                if (blocked == null) {
                    if (unmapped == 0 && !all) {
                        throw new KernelException(Errno.ENOENT, String.format("nothing mapped in [0x%x, 0x%x]", start, last));
                    }
                    return unmapped;
                }
                if (tries >= UNMAP_ACCESS_RETRIES) {
                    throw new KernelException(Errno.EDEADLK, String.format("an access keeps [0x%x, 0x%x] pinned",
                            blocked.start(), blocked.last()));
                }
                pinning = accessesPinning(blocked.start(), blocked.last());
                // Ask the accesses to let go, outside the locks (their unpin takes them), then retry.
                final long from = blocked.start();
                final long len = blocked.length();
                iovaLock.writeLock().unlock();
                domainsLock.readLock().unlock();
                try {
                    for (Access a : pinning) {
                        a.ops.unmap(from, len);
                    }
                } finally {
                    domainsLock.readLock().lock();
                    iovaLock.writeLock().lock();
                }
            } finally {
                iovaLock.writeLock().unlock();
                domainsLock.readLock().unlock();
            }
        }
    }

    /**
     * iopt_cut_iova: each IOVA in {@code iovas} that lies inside an area becomes the last IOVA of
     * the left part of a split (VFIO type1's unmap in the middle of a mapping). Stops at the first
     * split that fails.
     *
     * @throws KernelException EINVAL (see {@link #splitArea})
     */
    void cutIova(final long... iovas) {
        iovaLock.writeLock().lock();
        try {
            for (long iova : iovas) {
                final List<IoptArea> hit = areasIn(iova, iova);
                if (!hit.isEmpty()) {
                    splitArea(hit.get(0), iova);
                }
            }
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    /**
     * iopt_area_split: {@code area} becomes two areas over the same pages, the first ending at
     * {@code iova}. Refused (EINVAL) where the cut is not aligned to the IOAS, an access pins the
     * area, or a domain may hold it in large pages. Nothing in any domain changes: with large pages
     * disabled every page was mapped on its own. Caller holds iovaLock for writing.
     */
    private void splitArea(final IoptArea area, final long iova) {
        assertIovaWriteHeld();
        if (iova == area.start() || iova == area.last()) {
            return;
        }
        final long newStart = iova + 1;
        final long mask = iovaAlignment - 1;
        final long rhsStartByte = area.startByte() + (newStart - area.start());
        if ((newStart & mask) != 0 || (rhsStartByte & mask) != 0) {
            throw new KernelException(Errno.EINVAL, String.format("cut at 0x%x is not aligned to 0x%x", newStart, iovaAlignment));
        }
        if (!accessesPinning(area.start(), area.last()).isEmpty()) {
            throw new KernelException(Errno.EINVAL, String.format("an access pins the area at 0x%x", area.start()));
        }
        if (!domains.isEmpty() && !disableLargePages) {
            throw new KernelException(Errno.EINVAL, String.format("the area at 0x%x may be mapped with large pages", area.start()));
        }
        final IoptArea lhs = new IoptArea(area.start(), iova, area.prot(), area.pages(), area.startByte());
        final IoptArea rhs = new IoptArea(newStart, area.last(), area.prot(), area.pages(), rhsStartByte);
        area.pages().get(); // the second area's reference; dropped when rhs is unmapped
        if (!domains.isEmpty()) {
            area.pages().pin(); // each area holds one pin user while domains exist; released by unmapArea(rhs)
        }
        final GuestmemPin g = GuestmemPin.of(area);
        if (g != null) {
            g.pin(lhs);
            g.pin(rhs);
            g.unpin(area);
        }
        removeArea(area);
        insertArea(lhs);
        insertArea(rhs);
    }

    /** The guestmemfs file range an area pins (each area pins exactly its own), or null for other pages. */
    private record GuestmemPin(org.iopersist.kernel.guestmemfs.GuestmemFile file) {
        static GuestmemPin of(final IoptArea a) {
            return a.pages().guestmem() == null ? null : new GuestmemPin(a.pages().guestmem());
        }

        void pin(final IoptArea a) {
            file.pin(a.pages().fileOffset(a.startByte()), a.length());
        }

        void unpin(final IoptArea a) {
            file.unpin(a.pages().fileOffset(a.startByte()), a.length());
        }
    }

    /**
     * iommufd_get_pagesizes (VFIO_IOMMU_GET_INFO's iova_pgsizes): the page sizes every domain
     * supports, with those below PAGE_SIZE folded into PAGE_SIZE, and never below the IOAS's
     * alignment.
     */
    long pagesizes() {
        domainsLock.readLock().lock();
        try {
            long bitmap = -1L;
            for (IoasDomain d : domains) {
                bitmap &= d.pgsizeBitmap();
            }
            if ((bitmap & (PAGE_SIZE - 1)) != 0) {
                bitmap &= ~(PAGE_SIZE - 1);
                bitmap |= PAGE_SIZE;
            }
            iovaLock.readLock().lock();
            try {
                return Long.compareUnsigned(bitmap, iovaAlignment) >= 0 ? bitmap : iovaAlignment;
            } finally {
                iovaLock.readLock().unlock();
            }
        } finally {
            domainsLock.readLock().unlock();
        }
    }

    /** Whether a domain is attached; caller holds iovaLock (domains change only under both locks). */
    boolean hasDomains() {
        assertIovaHeld();
        return !domains.isEmpty();
    }

    /** Every domain attached (the HWPTs over this IOAS); caller holds domainsLock. */
    List<IoasDomain> domains() {
        return List.copyOf(domains);
    }

    /** iopt_destroy_table: every area goes, its pages are unpinned and released. Never fails. */
    void destroyTable() {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            for (IoptArea a : areas.values().toArray(new IoptArea[0])) {
                unmapArea(a);
            }
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    // ------------------------------------------------------------------ domains

    /**
     * iopt_table_add_domain: reserves what the domain cannot translate, raises the alignment to its
     * smallest page (EADDRINUSE if an area is not aligned to it), pins every area if this is the
     * first domain, and fills it. On failure nothing changes.
     */
    void addDomain(final IoasDomain d) {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            final long alignment = Math.max(calculateIovaAlignment(disableLargePages), d.minPageSize());
            final IoptArea misaligned = firstMisaligned(alignment);
            if (misaligned != null) {
                throw new KernelException(Errno.EADDRINUSE, String.format("area [0x%x, 0x%x] is not aligned to the domain's "
                        + "page size 0x%x", misaligned.start(), misaligned.last(), alignment));
            }
            reserveAll(d.reservedRanges(), d);
            final List<IoptArea> filled = new ArrayList<>();
            try {
                for (IoptArea a : areas.values()) {
                    boolean pins = false;
                    if (domains.isEmpty()) {
                        pins = readerPin(a);
                    } else {
                        fail.batchInit(); // iopt_area_fill_domain's reader, reading another domain
                    }
                    filled.add(a);
                    a.fill(d, disableLargePages);
                    if (pins) {
                        fail.updatePinned();
                    }
                }
            } catch (RuntimeException e) {
                for (IoptArea a : filled) {
                    a.unfill(d);
                    if (domains.isEmpty()) {
                        a.pages().unpin();
                    }
                }
                unreserve(d);
                throw e;
            }
            domains.add(d);
            iovaAlignment = alignment;
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    /**
     * A restored domain that already maps every area (its tables survived the kexec): reserve and
     * account as {@link #addDomain} does, but map nothing.
     */
    void adoptDomain(final IoasDomain d) {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            reserveAll(d.reservedRanges(), d);
            if (domains.isEmpty()) {
                for (IoptArea a : areas.values()) {
                    a.pages().pin();
                }
            }
            domains.add(d);
            iovaAlignment = Math.max(iovaAlignment, d.minPageSize());
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    /** iopt_table_remove_domain: empties the domain, unpins when it was the last, drops its reservations. */
    void removeDomain(final IoasDomain d) {
        domainsLock.writeLock().lock();
        iovaLock.writeLock().lock();
        try {
            if (!domains.remove(d)) {
                return;
            }
            for (IoptArea a : areas.values()) {
                a.unfill(d);
                if (domains.isEmpty()) {
                    a.pages().unpin();
                }
            }
            unreserve(d);
            iovaAlignment = calculateIovaAlignment(disableLargePages);
        } finally {
            iovaLock.writeLock().unlock();
            domainsLock.writeLock().unlock();
        }
    }

    /**
     * iopt_table_enforce_dev_resv_regions: reserves a device's regions for as long as it is
     * attached here (owner = the device); on failure none stays.
     */
    void enforceDeviceReservedRegions(final Object device, final List<IovaInterval> ranges) {
        fail.point(Errno.EINVAL, "iopt_table_enforce_dev_resv_regions");
        iovaLock.writeLock().lock();
        try {
            reserveAll(ranges, device);
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    /** iopt_remove_reserved_iova for a device leaving. */
    void removeReservedIova(final Object owner) {
        iovaLock.writeLock().lock();
        try {
            unreserve(owner);
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    // ------------------------------------------------------------------ accesses

    /** iopt_add_access: raises the alignment if the access pins pages (EADDRINUSE if an area is not aligned). */
    void addAccess(final Access a) {
        iovaLock.writeLock().lock();
        try {
            final long alignment = Math.max(calculateIovaAlignment(disableLargePages), a.alignment());
            final IoptArea misaligned = firstMisaligned(alignment);
            if (misaligned != null) {
                throw new KernelException(Errno.EADDRINUSE,
                        "area 0x" + Long.toHexString(misaligned.start()) + " is not aligned for a pinning access");
            }
            accesses.add(a);
            iovaAlignment = alignment;
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    /** iopt_remove_access. */
    void removeAccess(final Access a) {
        iovaLock.writeLock().lock();
        try {
            accesses.remove(a);
            iovaAlignment = calculateIovaAlignment(disableLargePages);
        } finally {
            iovaLock.writeLock().unlock();
        }
    }

    /** Accesses pinning part of {@code [start, last]}. Caller holds iovaLock. */
    private List<Access> accessesPinning(final long start, final long last) {
        assertIovaHeld();
        final List<Access> out = new ArrayList<>();
        for (Access a : accesses) {
            if (a.pins(start, last)) {
                out.add(a);
            }
        }
        return out;
    }

    // ------------------------------------------------------------------ live update

    /** The pages accounting moves to {@code next} (IOMMU_IOAS_CHANGE_PROCESS, or a reopen). */
    /**
     * The accounting check's sum: pages charged to each process by the pinned pages of this
     * table's areas, each shared {@code iopt_pages} counted once across {@code seen}.
     */
    void sumPinned(final java.util.Map<UserProcess, Long> byOwner, final java.util.Set<Object> seen) {
        iovaLock.readLock().lock();
        try {
            for (IoptArea a : areas.values()) {
                if (seen.add(a.pages())) {
                    final UserProcess owner = a.pages().chargedTo();
                    if (owner != null) {
                        byOwner.merge(owner, a.pages().npages(), Long::sum);
                    }
                }
            }
        } finally {
            iovaLock.readLock().unlock();
        }
    }

    void changeProcess(final UserProcess next) {
        iovaLock.readLock().lock();
        try {
            for (IoptArea a : areas.values()) {
                a.pages().changeOwner(next);
            }
        } finally {
            iovaLock.readLock().unlock();
        }
    }
}
