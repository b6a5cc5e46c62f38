package org.iopersist.hw.vtd;

/**
 * The geometry and sizes of one remapping unit: what the machine's firmware would describe.
 *
 * @param levels      table depths the unit walks (bitmap: bit n set = n-level), becomes CAP.SAGAW
 * @param mgaw        maximum guest address width in bits
 * @param haw         host address width in bits (the DMAR table's HAW): output addresses above it are reserved bits
 * @param sllps       large pages: bit 0 = 2 MiB, bit 1 = 1 GiB
 * @param nfr         number of fault recording registers
 * @param iotlbSize   IOTLB entries (power of two, at least 4)
 * @param contextCacheSize context-cache entries (power of two, at least 4)
 */
public record UnitConfig(int levels, int mgaw, int haw, int sllps, int nfr, int iotlbSize, int contextCacheSize) {

    /** 4-level tables, MGAW 48, HAW 46, 2 MiB and 1 GiB pages, 8 fault records, 1024-entry IOTLB. */
    public static final UnitConfig DEFAULT = new UnitConfig(1 << 4, 48, 46, 3, 8, 1024, 256);

    public UnitConfig {
        if ((levels & ~0b111000) != 0 || levels == 0) {
            throw new IllegalArgumentException("levels bitmap 0x" + Integer.toHexString(levels) + " must select 3, 4 or 5");
        }
        if (mgaw < 39 || mgaw > 57) {
            throw new IllegalArgumentException("mgaw=" + mgaw + " outside 39..57");
        }
        if (haw < 32 || haw > 52) {
            throw new IllegalArgumentException("haw=" + haw + " outside 32..52");
        }
    }

    /** A unit that walks only {@code n}-level tables, with the matching MGAW (39, 48 or 57). */
    public static UnitConfig ofLevels(final int n) {
        if (n < 3 || n > 5) {
            throw new IllegalArgumentException("levels=" + n + " must be 3, 4 or 5");
        }
        return DEFAULT.withLevels(1 << n, 30 + 9 * (n - 2));
    }

    public UnitConfig withLevels(final int levelsBitmap, final int newMgaw) {
        return new UnitConfig(levelsBitmap, newMgaw, haw, sllps, nfr, iotlbSize, contextCacheSize);
    }

    public UnitConfig withHaw(final int newHaw) {
        return new UnitConfig(levels, mgaw, newHaw, sllps, nfr, iotlbSize, contextCacheSize);
    }

    public UnitConfig withCaches(final int iotlb, final int contextCache) {
        return new UnitConfig(levels, mgaw, haw, sllps, nfr, iotlb, contextCache);
    }

    public UnitConfig withSllps(final int newSllps) {
        return new UnitConfig(levels, mgaw, haw, newSllps, nfr, iotlbSize, contextCacheSize);
    }

    public UnitConfig withNfr(final int newNfr) {
        return new UnitConfig(levels, mgaw, haw, sllps, newNfr, iotlbSize, contextCacheSize);
    }

    public Capability capability() {
        return new Capability(6, levels >>> 2, mgaw, VtdRegisters.FRO, sllps, true, nfr, 18, false);
    }

    public ExtCapability extCapability() {
        return new ExtCapability(true, true, false, VtdRegisters.IRO);
    }
}
