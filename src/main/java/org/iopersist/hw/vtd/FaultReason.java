package org.iopersist.hw.vtd;

/**
 * Non-recoverable fault reasons of legacy-mode translation (VT-d §7.1.3, table of fault reasons),
 * with their encodings as they appear in FRCD.FR.
 */
public enum FaultReason {
    ROOT_NOT_PRESENT(0x1),
    CONTEXT_NOT_PRESENT(0x2),
    CONTEXT_INVALID(0x3),
    ADDRESS_BEYOND_MGAW(0x4),
    WRITE(0x5),
    READ(0x6),
    PAGING_ENTRY_INVALID(0x7),
    ROOT_TABLE_INVALID(0x8),
    CONTEXT_TABLE_INVALID(0x9),
    ROOT_RESERVED(0xA),
    CONTEXT_RESERVED(0xB),
    PAGING_RESERVED(0xC),
    TRANSLATION_TYPE_BLOCKED(0xD);

    private static final FaultReason[] BY_CODE = new FaultReason[16];

    static {
        for (FaultReason r : values()) {
            BY_CODE[r.code] = r;
        }
    }

    public final int code;

    FaultReason(final int code) {
        this.code = code;
    }

    /** The reason for an FRCD.FR code, or null for a code this model never produces. */
    public static FaultReason ofCode(final int code) {
        return code >= 0 && code < BY_CODE.length ? BY_CODE[code] : null;
    }
}
