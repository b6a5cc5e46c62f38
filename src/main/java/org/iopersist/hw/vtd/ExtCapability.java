package org.iopersist.hw.vtd;

/**
 * The ECAP register (§11.4.3), for the fields this model implements.
 *
 * <pre>
 *  43 SMTS | 17:8 IRO | 7 SC | 6 PT | 3 IR | 2 DT | 1 QI | 0 C
 * </pre>
 *
 * @param coherent    C: page walks snoop the CPU caches (no clflush needed)
 * @param queuedInval QI: queued invalidation is supported
 * @param passThrough PT: context entries may use TT = 10b
 * @param iro         IOTLB register offset / 16
 */
public record ExtCapability(boolean coherent, boolean queuedInval, boolean passThrough, int iro) {

    public long encode() {
        return (coherent ? 1L : 0)
                | (queuedInval ? 1L << 1 : 0)
                | (passThrough ? 1L << 6 : 0)
                | (long) (iro & 0x3FF) << 8;
    }

    public static ExtCapability decode(final long ecap) {
        return new ExtCapability((ecap & 1) != 0, (ecap & 2) != 0, (ecap & (1L << 6)) != 0,
                (int) (ecap >>> 8) & 0x3FF);
    }
}
