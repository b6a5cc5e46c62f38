package org.iopersist.hw.pci;

import java.util.HashMap;
import java.util.Map;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.SlPte;

/**
 * VT-d translation structures written by hand, the way a driver would, with the hw.vtd encoders:
 * a root table, one context table per bus, and a 4-level second-level table per domain. Table
 * frames come from a bump allocator over a pool the test reserves. The test's own knowledge of
 * what it mapped ({@link Domain#iovaToPhys}) is what it hands the {@link RecordChecker}.
 *
 * <p>Entries are published as DESIGN.md §3 demands: a table is complete before the release store
 * of the entry pointing at it; 128-bit entries hi first, lo with P last; a present leaf is never
 * rewritten in place (unmap, invalidate, then map again).
 */
final class HandTables {
    static final int LEVELS = 4;

    private final PhysicalMemory memory;
    private final long poolEnd;
    private long nextFrame;
    private final long root;
    private final Map<Integer, Long> contextTables = new HashMap<>();

    HandTables(final PhysicalMemory memory, final long poolPhys, final long poolFrames) {
        this.memory = memory;
        this.nextFrame = poolPhys;
        this.poolEnd = poolPhys + poolFrames * PhysicalMemory.FRAME_SIZE;
        this.root = allocFrame();
    }

    long root() {
        return root;
    }

    /** A zeroed frame from the pool. */
    long allocFrame() {
        if (nextFrame >= poolEnd) {
            throw new IllegalStateException("table pool exhausted");
        }
        final long frame = nextFrame;
        nextFrame += PhysicalMemory.FRAME_SIZE;
        memory.fill(frame, PhysicalMemory.FRAME_SIZE, (byte) 0);
        return frame;
    }

    Domain domain(final int did) {
        return new Domain(did, allocFrame());
    }

    /** Points {@code bdf}'s context entry at {@code domain} (root entry for its bus made on first use). */
    void attach(final Bdf bdf, final Domain domain) {
        final long ctp = contextTables.computeIfAbsent(bdf.bus(), bus -> {
            final long table = allocFrame();
            final long entry = RootEntry.address(root, bus);
            memory.store64(entry + RootEntry.HI_OFFSET, 0);
            memory.store64Release(entry + RootEntry.LO_OFFSET, RootEntry.encodeLo(table));
            return table;
        });
        final long entry = ContextEntry.address(ctp, bdf.devfn());
        memory.store64(entry + 8, ContextEntry.encodeHi(domain.did, ContextEntry.awForLevels(LEVELS)));
        memory.store64Release(entry, ContextEntry.encodeLo(domain.slptptr, ContextEntry.TT_MULTI_LEVEL, false));
    }

    /** One domain: a 4-level second-level table and the test's record of its 4 KiB leaves. */
    final class Domain {
        final int did;
        final long slptptr;
        private final Map<Long, Long> leaves = new HashMap<>(); // iova page -> phys frame

        private Domain(final int did, final long slptptr) {
            this.did = did;
            this.slptptr = slptptr;
        }

        /** Maps the 4 KiB page at {@code iova} to {@code phys}, creating intermediate tables. */
        void map(final long iova, final long phys, final boolean read, final boolean write) {
            final long pte = leafAddress(iova, true);
            if (SlPte.present(memory.load64Acquire(pte))) {
                throw new IllegalStateException(String.format("iova 0x%x already mapped: unmap and invalidate first", iova));
            }
            memory.store64Release(pte, SlPte.encodeLeaf(phys, 1, read, write));
            leaves.put(iova & ~PhysicalMemory.FRAME_MASK, phys);
        }

        void map(final long iova, final long phys) {
            map(iova, phys, true, true);
        }

        /** Clears the leaf for {@code iova} (one release store); the caller invalidates. Returns the old frame. */
        long unmap(final long iova) {
            final long pte = leafAddress(iova, false);
            memory.store64Release(pte, 0);
            final Long old = leaves.remove(iova & ~PhysicalMemory.FRAME_MASK);
            if (old == null) {
                throw new IllegalStateException(String.format("iova 0x%x was not mapped", iova));
            }
            return old;
        }

        /** Where the test's mappings take {@code iova}, or -1 if it mapped nothing there. */
        long iovaToPhys(final long iova) {
            final Long frame = leaves.get(iova & ~PhysicalMemory.FRAME_MASK);
            return frame == null ? -1 : frame | (iova & PhysicalMemory.FRAME_MASK);
        }

        private long leafAddress(final long iova, final boolean create) {
            long table = slptptr;
            for (int level = LEVELS; level > 1; level--) {
                final long entry = table + (long) SlPte.index(iova, level) * SlPte.SIZE;
                final long pte = memory.load64Acquire(entry);
                if (SlPte.present(pte)) {
                    table = SlPte.address(pte);
                } else if (create) {
                    final long next = allocFrame();
                    memory.store64Release(entry, SlPte.encodeTable(next));
                    table = next;
                } else {
                    throw new IllegalStateException(String.format("iova 0x%x has no level-%d table", iova, level - 1));
                }
            }
            return table + (long) SlPte.index(iova, 1) * SlPte.SIZE;
        }
    }
}
