package org.iopersist.hw.pci;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongUnaryOperator;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;

/**
 * The CPU side of the workload's bargain: finds every record a device wrote at the place in guest
 * RAM its IOVA should map to, with the CPU's view of memory and no help from the remapping unit.
 *
 * <p>The caller supplies the IOVA-to-physical function from its own knowledge of the mappings
 * (a test from the tables it built, a VMM from its guest memory layout). For each slot the checker
 * computes the last sequence number the workload attempted there ({@code n < NEXT_SEQ} with
 * {@code n mod slots == slot}) and classifies what it finds at the slot's physical place:
 * <ul>
 *   <li>{@link Verdict#FOUND}: that very record, every byte as the device wrote it;</li>
 *   <li>{@link Verdict#STALE}: an intact record of this slot from an earlier lap (the last write
 *       faulted, or went elsewhere);</li>
 *   <li>{@link Verdict#NEWER}: an intact record of this slot from a later lap than expected (the
 *       workload ran on while the checker read);</li>
 *   <li>{@link Verdict#EMPTY}: all zero (never written here);</li>
 *   <li>{@link Verdict#CORRUPT}: anything else, such as a torn record, a record of another slot,
 *       device or generation, or a changed byte;</li>
 *   <li>{@link Verdict#UNMAPPED}: the function has no physical place for the IOVA.</li>
 * </ul>
 * Slots the workload has not reached yet are not checked. The check is meaningful on a stopped
 * workload; on a running one the slot being written may show as stale or corrupt.
 */
public final class RecordChecker {
    /** How many problems a report lists in full. */
    public static final int MAX_PROBLEMS = 16;

    private final PhysicalMemory memory;

    /** A checker reading {@code memory} with the CPU. */
    public RecordChecker(final PhysicalMemory memory) {
        this.memory = memory;
    }

    /** What one slot held. */
    public enum Verdict { FOUND, STALE, NEWER, EMPTY, CORRUPT, UNMAPPED }

    /**
     * What the checker expects: a device's window as its BAR describes it.
     *
     * @param sid        the SID register value (segment 31:16, source-id 15:0) records carry
     * @param iovaBase   WIN_BASE
     * @param length     WIN_LENGTH
     * @param recordSize RECORD_SIZE
     * @param generation GENERATION
     * @param nextSeq    NEXT_SEQ: records below it were attempted
     */
    public record Expectation(int sid, long iovaBase, long length, int recordSize, long generation, long nextSeq) {
        public Expectation {
            if (recordSize < DmaRecord.MIN_SIZE || recordSize > DmaRecord.MAX_SIZE || Integer.bitCount(recordSize) != 1
                    || length < recordSize || nextSeq < 0) {
                throw new IllegalArgumentException(String.format("expectation recordSize=%d length=0x%x nextSeq=%d is not one a device accepts",
                        recordSize, length, nextSeq));
            }
        }

        /** Reads the expectation from a device's BAR (settings as programmed, NEXT_SEQ as now). */
        public static Expectation fromBar(final Mmio.Window bar) {
            return new Expectation(bar.read32(DeviceRegisters.SID), bar.read64(DeviceRegisters.WIN_BASE),
                    bar.read64(DeviceRegisters.WIN_LENGTH), bar.read32(DeviceRegisters.RECORD_SIZE),
                    bar.read64(DeviceRegisters.GENERATION), bar.read64(DeviceRegisters.NEXT_SEQ));
        }

        /** Record slots in the window. */
        public long slots() {
            return length / recordSize;
        }

        /** The last sequence number attempted at {@code slot}, or -1 if none yet. */
        public long expectedSeq(final long slot) {
            if (slot >= nextSeq) {
                return -1;
            }
            return slot + (nextSeq - 1 - slot) / slots() * slots();
        }
    }

    /**
     * One slot that did not hold its expected record.
     *
     * @param slot        slot index
     * @param iova        the slot's IOVA
     * @param phys        where the checker looked (-1 if unmapped)
     * @param verdict     what it found
     * @param expectedSeq the record it expected there
     * @param foundSeq    the sequence number in the record found, if it was an intact record, else -1
     */
    public record Problem(long slot, long iova, long phys, Verdict verdict, long expectedSeq, long foundSeq) {
        @Override
        public String toString() {
            return String.format("slot %d iova=0x%x phys=0x%x: %s (expected seq %d, found %d)",
                    slot, iova, phys, verdict, expectedSeq, foundSeq);
        }
    }

    /**
     * The outcome of one check.
     *
     * @param checked  slots checked (those the workload has reached)
     * @param found    slots holding their expected record
     * @param stale    slots holding an older record of their own
     * @param newer    slots holding a later record of their own than NEXT_SEQ said: the workload
     *                 ran on while the checker read (a stopped workload has none)
     * @param empty    slots still zero
     * @param corrupt  slots holding anything else
     * @param unmapped slots the function could not place
     * @param problems the first {@link #MAX_PROBLEMS} slots that were not found
     */
    public record Report(long checked, long found, long stale, long newer, long empty, long corrupt, long unmapped,
                         List<Problem> problems) {
        public Report {
            problems = List.copyOf(problems);
        }

        /** Every checked slot holds its expected record. */
        public boolean clean() {
            return found == checked;
        }

        @Override
        public String toString() {
            return String.format("checked=%d found=%d stale=%d newer=%d empty=%d corrupt=%d unmapped=%d%s", checked, found,
                    stale, newer, empty, corrupt, unmapped, problems.isEmpty() ? "" : " first problems: " + problems);
        }
    }

    /** Checks the window the BAR describes. */
    public Report check(final Mmio.Window bar, final LongUnaryOperator iovaToPhys) {
        return check(Expectation.fromBar(bar), iovaToPhys);
    }

    /**
     * Checks every slot the workload has reached.
     *
     * @param iovaToPhys maps an IOVA to the physical address it should reach, or a negative value
     *                   if it has none
     * @throws IllegalArgumentException if the function names a place outside physical memory
     */
    public Report check(final Expectation e, final LongUnaryOperator iovaToPhys) {
        final long slots = e.slots();
        final long checked = Math.min(slots, e.nextSeq());
        final MemorySegment mem = memory.segment();
        long found = 0;
        long stale = 0;
        long newer = 0;
        long empty = 0;
        long corrupt = 0;
        long unmapped = 0;
        final List<Problem> problems = new ArrayList<>();
        for (long slot = 0; slot < checked; slot++) {
            final long iova = e.iovaBase() + slot * e.recordSize();
            final long expected = e.expectedSeq(slot);
            final long phys = iovaToPhys.applyAsLong(iova);
            final Verdict verdict;
            long seq = -1;
            if (phys < 0) {
                verdict = Verdict.UNMAPPED;
            } else {
                if (!memory.contains(phys, e.recordSize()) || (phys & 7) != 0) {
                    throw new IllegalArgumentException(String.format(
                            "iova 0x%x maps to phys 0x%x: not an aligned record inside memory", iova, phys));
                }
                seq = DmaRecord.validSeq(mem, phys, e.sid(), e.recordSize(), iova, e.generation());
                if (seq == expected) {
                    verdict = Verdict.FOUND;
                } else if (seq != DmaRecord.INVALID && seq < expected && seq % slots == slot) {
                    verdict = Verdict.STALE;
                } else if (seq != DmaRecord.INVALID && seq > expected && seq % slots == slot) {
                    verdict = Verdict.NEWER;
                } else if (DmaRecord.isZero(mem, phys, e.recordSize())) {
                    verdict = Verdict.EMPTY;
                } else {
                    verdict = Verdict.CORRUPT;
                }
            }
            switch (verdict) {
                case FOUND -> found++;
                case STALE -> stale++;
                case NEWER -> newer++;
                case EMPTY -> empty++;
                case CORRUPT -> corrupt++;
                case UNMAPPED -> unmapped++;
            }
            if (verdict != Verdict.FOUND && problems.size() < MAX_PROBLEMS) {
                problems.add(new Problem(slot, iova, phys, verdict, expected, seq));
            }
        }
        return new Report(checked, found, stale, newer, empty, corrupt, unmapped, problems);
    }
}
