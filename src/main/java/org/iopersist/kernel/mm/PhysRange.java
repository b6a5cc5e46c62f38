package org.iopersist.kernel.mm;

/** A range of physical memory {@code [start, start + size)}; both frame-aligned. */
public record PhysRange(long start, long size) {
    public PhysRange {
        if (start < 0 || size < 0 || ((start | size) & 0xFFF) != 0) {
            throw new IllegalArgumentException(String.format("physical range 0x%x+0x%x is not frame-aligned", start, size));
        }
    }

    public long end() {
        return start + size;
    }

    public boolean contains(final long phys) {
        return phys >= start && phys < end();
    }

    public boolean overlaps(final long otherStart, final long otherSize) {
        return otherStart < end() && start < otherStart + otherSize;
    }

    @Override
    public String toString() {
        return String.format("[mem 0x%016x-0x%016x]", start, end() - 1);
    }
}
