package org.iopersist.kernel.liveupdate;

import java.util.List;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import org.iopersist.kernel.liveupdate.kho.PreservedMemoryMap;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.kernel.mm.FrameAllocator;
import org.iopersist.kernel.mm.PhysRange;

/**
 * The incoming half of a live update, in its fixed order:
 * <ol>
 *   <li>{@link #validate}: the boot record, the KHO tree and tracker, then every handler in
 *       registration order, reading memory only. Any failure is a cold boot with its reason.</li>
 *   <li>{@link #reserve}: every preserved frame and tracker frame leaves the allocator before it
 *       opens, because devices may be writing into them right now.</li>
 *   <li>{@link #adopt}: every handler applies its plan, in the same order.</li>
 * </ol>
 * Nothing is adopted unless everything validated: a handover is taken whole or not at all.
 */
public final class IncomingBoot {
    private enum Step { VALIDATED, RESERVED, ADOPTED }

    /** How a cold-boot reason starts when validation broke instead of refusing: a bug to fix, made safe. */
    public static final String UNEXPECTED = "handover rejected: validation failed unexpectedly: ";

    private final List<LiveUpdateHandler<?>> handlers;
    private final IncomingHandover handover; // null: cold boot
    private final String coldReason;
    private final KernelLog log;
    private Step step = Step.VALIDATED;

    private IncomingBoot(final List<LiveUpdateHandler<?>> handlers, final IncomingHandover handover, final String coldReason,
            final KernelLog log) {
        this.handlers = handlers;
        this.handover = handover;
        this.coldReason = coldReason;
        this.log = log;
    }

    /**
     * Validate-all. {@code setupDataOrNull} is {@code boot/setup_data} as read; {@code khoEnabled}
     * is {@code kho=} of the command line. Never throws for a bad handover: that is a cold boot.
     */
    public static IncomingBoot validate(final PhysicalMemory memory, final byte[] setupDataOrNull, final boolean khoEnabled,
            final List<LiveUpdateHandler<?>> handlers, final KernelLog log) {
        final List<LiveUpdateHandler<?>> order = List.copyOf(handlers);
        if (!khoEnabled) {
            return new IncomingBoot(order, null, "kho=off", log);
        }
        if (setupDataOrNull == null) {
            return new IncomingBoot(order, null, "no handover in the boot record", log);
        }
        try {
            final SetupData setup = SetupData.decode(setupDataOrNull);
            final IncomingHandover in = new IncomingHandover(KhoIncoming.parse(memory, setup), setup);
            for (LiveUpdateHandler<?> h : order) {
                validateOne(h, in);
            }
            return new IncomingBoot(order, in, null, log);
        } catch (HandoverFormatException e) {
            return new IncomingBoot(order, null, "handover rejected: " + e.getMessage(), log);
        } catch (RuntimeException e) {
            // Validation only reads; a reader that trips over hostile bytes in a way nobody foresaw
            // must still not take the boot down with it: upstream would BUG_ON, here it is cold.
            log.info("KHO: validation failed unexpectedly: %s", e);
            return new IncomingBoot(order, null, UNEXPECTED + e, log);
        }
    }

    private static <P> void validateOne(final LiveUpdateHandler<P> h, final IncomingHandover in) throws HandoverFormatException {
        in.recordPlan(h, h.validate(in));
    }

    /** Whether the handover validated whole; false means a cold boot. */
    public boolean restoring() {
        return handover != null;
    }

    /** Why this boot is cold, or null when restoring. */
    public String coldReason() {
        return coldReason;
    }

    /** The validated handover, or null for a cold boot. */
    public IncomingHandover handover() {
        return handover;
    }

    /** This boot's KHO scratch: the handed-over one when restoring, else {@code coldScratch}. */
    public PhysRange scratch(final PhysRange coldScratch) {
        return handover != null ? handover.scratch() : coldScratch;
    }

    /** Reserve: every preserved block and tracker frame leaves {@code frames}. Must run before anything is allocated. */
    public void reserve(final FrameAllocator frames) {
        requireRestoring(Step.VALIDATED);
        handover.kho().reserveAll(new PreservedMemoryMap.Visitor() {
            @Override
            public void block(final long phys, final int order) {
                frames.reserve(new PhysRange(phys, PhysicalMemory.FRAME_SIZE << order), "kho preserved");
            }

            @Override
            public void metadata(final long phys) {
                frames.reserve(new PhysRange(phys, PhysicalMemory.FRAME_SIZE), "kho tracker");
            }
        });
        step = Step.RESERVED;
    }

    /** A cold boot decided before the handover is read, with its reason. */
    public static IncomingBoot cold(final List<LiveUpdateHandler<?>> handlers, final String reason, final KernelLog log) {
        return new IncomingBoot(List.copyOf(handlers), null, reason, log);
    }

    /** Adopt-all, in registration order; {@code breakpoint} is offered {@code adopt:<name>} after each. */
    public void adopt(final Breakpoint breakpoint) {
        requireRestoring(Step.RESERVED);
        for (LiveUpdateHandler<?> h : handlers) {
            adoptOne(h);
            breakpoint.at("adopt:" + h.name());
        }
        step = Step.ADOPTED;
        log.info("KHO: live update: %d preserved frames reserved", handover.kho().unclaimedFrames());
    }

    private <P> void adoptOne(final LiveUpdateHandler<P> h) {
        h.adopt(handover.plan(h), handover);
    }

    private void requireRestoring(final Step expected) {
        if (handover == null || step != expected) {
            throw new IllegalStateException("incoming boot: " + (handover == null ? "cold boot" : "at " + step)
                    + ", expected " + expected);
        }
    }
}
