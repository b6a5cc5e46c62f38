package org.iopersist.kernel.iommufd;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.TreeMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * The IOVA space of one IOAS, as Linux's {@code io_pagetable}: three interval sets and an alignment.
 * <ul>
 *   <li><b>areas</b>: mapped ranges; never overlap each other;</li>
 *   <li><b>reserved</b>: ranges nothing may be mapped at, each with an owner (a domain's aperture
 *       holes, a device's reserved regions such as the interrupt window); they may overlap each
 *       other, and never intersect an area or an allowed range;</li>
 *   <li><b>allowed</b>: if not empty, automatic allocation searches only inside these; they never
 *       overlap each other nor a reserved range.</li>
 * </ul>
 * All comparisons are unsigned: an IOVA can reach U64_MAX.
 *
 * <p>Not thread safe: its IOAS holds the lock (Linux's iova_rwsem).
 *
 * @param <A> what an area carries besides its range
 */
final class IoPagetable<A extends IoPagetable.Span> {
    /** What lives in the area tree: anything with an inclusive range. */
    interface Span {
        long start();

        long last();
    }

    static final long PAGE_SIZE = 4096;
    /** The cap on automatic alignment: HPAGE_SIZE with transparent huge pages on x86. */
    static final long MAX_AUTO_ALIGNMENT = 2L << 20;

    private final TreeMap<Long, A> areas = new TreeMap<>(Long::compareUnsigned);
    private final List<Reserved> reserved = new ArrayList<>();
    private final TreeMap<Long, Long> allowed = new TreeMap<>(Long::compareUnsigned);
    private long iovaAlignment = 1;
    private boolean disableLargePages;

    /** A reserved range and who reserved it (removed by owner). */
    record Reserved(long start, long last, Object owner) {
    }

    long iovaAlignment() {
        return iovaAlignment;
    }

    void setIovaAlignment(final long alignment) {
        this.iovaAlignment = alignment;
    }

    boolean largePagesDisabled() {
        return disableLargePages;
    }

    void setLargePagesDisabled(final boolean disabled) {
        this.disableLargePages = disabled;
    }

    // ------------------------------------------------------------------ areas

    NavigableMap<Long, A> areas() {
        return areas;
    }

    boolean isEmpty() {
        return areas.isEmpty();
    }

    /** Areas intersecting {@code [start, last]}, ascending. */
    List<A> areasIn(final long start, final long last) {
        final List<A> out = new ArrayList<>();
        final Map.Entry<Long, A> floor = areas.floorEntry(start);
        final long from = floor != null && IovaMath.le(start, floor.getValue().last()) ? floor.getKey() : start;
        for (A a : areas.subMap(from, true, last, true).values()) {
            out.add(a);
        }
        return out;
    }

    boolean areaIntersects(final long start, final long last) {
        return !areasIn(start, last).isEmpty();
    }

    void insertArea(final A area) {
        areas.put(area.start(), area);
    }

    void removeArea(final A area) {
        areas.remove(area.start(), area);
    }

    // ------------------------------------------------------------------ reserved

    boolean reservedIntersects(final long start, final long last) {
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
     * Reserves {@code [start, last]} for {@code owner}.
     *
     * @throws KernelException EADDRINUSE if an area or an allowed range is there
     */
    void reserve(final long start, final long last, final Object owner) {
        if (areaIntersects(start, last) || allowedIntersects(start, last)) {
            throw new KernelException(Errno.EADDRINUSE,
                    String.format("reserve [0x%x, 0x%x]: an area or allowed range is there", start, last));
        }
        reserved.add(new Reserved(start, last, owner));
        reserved.sort((a, b) -> Long.compareUnsigned(a.start(), b.start()));
    }

    /** Drops every range {@code owner} reserved. */
    void unreserve(final Object owner) {
        reserved.removeIf(r -> r.owner() == owner);
    }

    List<Reserved> reservedRanges() {
        return List.copyOf(reserved);
    }

    // ------------------------------------------------------------------ allowed

    /**
     * Replaces the allowed list atomically.
     *
     * @throws KernelException EINVAL for an empty or inverted range or two overlapping ranges,
     *                         EADDRINUSE if a range intersects a reserved one (the old list stays)
     */
    void setAllowed(final List<IovaRange> ranges) {
        final TreeMap<Long, Long> next = new TreeMap<>(Long::compareUnsigned);
        for (IovaRange r : ranges) {
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

    List<IovaRange> allowedRanges() {
        return allowed.entrySet().stream().map(e -> new IovaRange(e.getKey(), e.getValue())).toList();
    }

    /** What IOVA_RANGES reports: the holes of the reserved set over [0, U64_MAX], ascending. */
    List<IovaRange> usableRanges() {
        final List<IovaRange> out = new ArrayList<>();
        long next = 0;
        boolean wrapped = false;
        for (IovaRange used : merged(reservedAsRanges())) {
            if (IovaMath.lt(next, used.start())) {
                out.add(new IovaRange(next, used.start() - 1));
            }
            if (used.last() == IovaRange.ULONG_MAX) {
                wrapped = true;
                break;
            }
            if (IovaMath.le(next, used.last())) {
                next = used.last() + 1;
            }
        }
        if (!wrapped) {
            out.add(new IovaRange(next, IovaRange.ULONG_MAX));
        }
        return out;
    }

    private List<IovaRange> reservedAsRanges() {
        final List<IovaRange> out = new ArrayList<>();
        for (Reserved r : reserved) {
            out.add(new IovaRange(r.start(), r.last()));
        }
        return out;
    }

    /** Sorts and merges overlapping or touching ranges. */
    private static List<IovaRange> merged(final List<IovaRange> in) {
        final List<IovaRange> sorted = new ArrayList<>(in);
        sorted.sort((a, b) -> Long.compareUnsigned(a.start(), b.start()));
        final List<IovaRange> out = new ArrayList<>();
        for (IovaRange r : sorted) {
            if (!out.isEmpty()) {
                final IovaRange prev = out.get(out.size() - 1);
                if (prev.last() == IovaRange.ULONG_MAX || IovaMath.le(r.start(), prev.last() + 1)) {
                    if (IovaMath.lt(prev.last(), r.last())) {
                        out.set(out.size() - 1, new IovaRange(prev.start(), r.last()));
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
        if (length == 0 || Long.compareUnsigned(length, IovaRange.ULONG_MAX >>> 1) >= 0) {
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
        final List<IovaRange> spans = allowed.isEmpty()
                ? List.of(new IovaRange(PAGE_SIZE, IovaRange.ULONG_MAX - PAGE_SIZE))
                : clip(allowedRanges(), PAGE_SIZE, IovaRange.ULONG_MAX - PAGE_SIZE);
        for (IovaRange span : spans) {
            final List<IovaRange> used = new ArrayList<>(reservedAsRanges());
            for (A a : areasIn(span.start(), span.last())) {
                used.add(new IovaRange(a.start(), a.last()));
            }
            long holeStart = span.start();
            for (IovaRange u : merged(used)) {
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

    private static List<IovaRange> clip(final List<IovaRange> ranges, final long lo, final long hi) {
        final List<IovaRange> out = new ArrayList<>();
        for (IovaRange r : ranges) {
            final long s = IovaMath.lt(r.start(), lo) ? lo : r.start();
            final long l = IovaMath.lt(hi, r.last()) ? hi : r.last();
            if (IovaMath.le(s, l)) {
                out.add(new IovaRange(s, l));
            }
        }
        return out;
    }
}
