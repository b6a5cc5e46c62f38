package org.iopersist.kernel.liveupdate;

import java.util.IdentityHashMap;
import java.util.Map;
import org.iopersist.kernel.liveupdate.kho.KhoIncoming;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.kernel.mm.PhysRange;

/**
 * The handover this boot came from, as the handlers see it: the parsed KHO tree and tracker, the
 * scratch region the old kernel named, and the plans of the handlers validated so far.
 */
public final class IncomingHandover {
    private final KhoIncoming kho;
    private final SetupData setup;
    private final Map<LiveUpdateHandler<?>, Object> plans = new IdentityHashMap<>();

    IncomingHandover(final KhoIncoming kho, final SetupData setup) {
        this.kho = kho;
        this.setup = setup;
    }

    public KhoIncoming kho() {
        return kho;
    }

    public SetupData setup() {
        return setup;
    }

    /** KHO scratch as the previous kernel handed it over: this boot's early memory. */
    public PhysRange scratch() {
        return new PhysRange(setup.scratchAddr(), setup.scratchSize());
    }

    /** The plan {@code handler} returned; IllegalStateException if it has not been validated yet. */
    @SuppressWarnings("unchecked")
    public <P> P plan(final LiveUpdateHandler<P> handler) {
        if (!plans.containsKey(handler)) {
            throw new IllegalStateException(handler.name() + " is validated after its user; register it earlier");
        }
        return (P) plans.get(handler);
    }

    <P> void recordPlan(final LiveUpdateHandler<P> handler, final P plan) {
        plans.put(handler, plan);
    }
}
