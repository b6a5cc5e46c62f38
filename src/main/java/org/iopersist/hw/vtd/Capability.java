package org.iopersist.hw.vtd;

/**
 * The CAP register, encoded and decoded as the VT-d specification lays it out (§11.4.2).
 *
 * <pre>
 *  63 ESRTPS | 60 FL5LP | 56 FL1GP | 55 DRD | 54 DWD | 53:48 MAMV | 47:40 NFR (-1) | 39 PSI
 *  37:34 SLLPS (34 = 2 MiB, 35 = 1 GiB) | 33:24 FRO | 22 ZLR | 21:16 MGAW (-1) | 12:8 SAGAW
 *  7 CM | 6 PHMR | 5 PLMR | 4 RWBF | 2:0 ND (domains = 2^(4 + 2*ND))
 * </pre>
 *
 * @param nd             ND field: 6 means 16-bit domain ids
 * @param sagaw          SAGAW bitmap: bit 1 = 3-level (39-bit), bit 2 = 4-level (48), bit 3 = 5-level (57)
 * @param mgaw           maximum guest address width in bits (the field holds mgaw - 1)
 * @param fro            fault recording register offset / 16
 * @param sllps          second-level large page support: bit 0 = 2 MiB, bit 1 = 1 GiB
 * @param psi            page-selective invalidation supported
 * @param nfr            number of fault recording registers (the field holds nfr - 1)
 * @param mamv           maximum address mask value for page-selective invalidation
 * @param cachingMode    CM: non-present entries may be cached (emulated IOMMUs)
 */
public record Capability(int nd, int sagaw, int mgaw, int fro, int sllps, boolean psi, int nfr, int mamv,
                         boolean cachingMode) {

    public Capability {
        if (nd < 0 || nd > 6) {
            throw new IllegalArgumentException("nd=" + nd + " outside 0..6");
        }
        if ((sagaw & ~0x1F) != 0 || sagaw == 0) {
            throw new IllegalArgumentException("sagaw=0x" + Integer.toHexString(sagaw) + " invalid");
        }
        if (mgaw < 1 || mgaw > 64) {
            throw new IllegalArgumentException("mgaw=" + mgaw + " outside 1..64");
        }
        if (nfr < 1 || nfr > 256) {
            throw new IllegalArgumentException("nfr=" + nfr + " outside 1..256");
        }
        if ((sllps & ~0xF) != 0 || mamv < 0 || mamv > 63 || fro < 0 || fro > 0x3FF) {
            throw new IllegalArgumentException("sllps/mamv/fro out of range");
        }
    }

    public static final int SLLPS_2M = 1;
    public static final int SLLPS_1G = 2;

    public long encode() {
        return (long) nd
                | (cachingMode ? 1L << 7 : 0)
                | (long) sagaw << 8
                | (long) (mgaw - 1) << 16
                | (long) fro << 24
                | (long) sllps << 34
                | (psi ? 1L << 39 : 0)
                | (long) (nfr - 1) << 40
                | (long) mamv << 48
                | 1L << 54 | 1L << 55; // DWD, DRD: drain is always performed
    }

    public static Capability decode(final long cap) {
        return new Capability(
                (int) (cap & 7),
                (int) (cap >>> 8) & 0x1F,
                ((int) (cap >>> 16) & 0x3F) + 1,
                (int) (cap >>> 24) & 0x3FF,
                (int) (cap >>> 34) & 0xF,
                (cap & (1L << 39)) != 0,
                ((int) (cap >>> 40) & 0xFF) + 1,
                (int) (cap >>> 48) & 0x3F,
                (cap & (1L << 7)) != 0);
    }

    /** Number of domain ids: 2^(4 + 2*ND). */
    public int domains() {
        return 1 << (4 + 2 * nd);
    }

    /** True if the unit walks {@code levels}-level second-level tables (3, 4 or 5). */
    public boolean supportsLevels(final int levels) {
        return levels >= 2 && levels <= 6 && (sagaw & (1 << (levels - 2))) != 0;
    }

    public boolean supports2M() {
        return (sllps & SLLPS_2M) != 0;
    }

    public boolean supports1G() {
        return (sllps & SLLPS_1G) != 0;
    }

    /** SAGAW bit for a table depth: levels 3/4/5 are AW 1/2/3 and SAGAW bits 1/2/3. */
    public static int sagawBit(final int levels) {
        return 1 << (levels - 2);
    }
}
