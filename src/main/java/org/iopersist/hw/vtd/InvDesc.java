package org.iopersist.hw.vtd;

/**
 * 128-bit queued-invalidation descriptors (VT-d §6.5.2), legacy width. Type in bits 3:0 of qw0.
 *
 * <pre>
 * context-cache (1): qw0  49:48 FM | 47:32 SID | 31:16 DID | 5:4 G (1 global, 2 domain, 3 device) | 3:0 = 1
 * IOTLB (2):         qw0  31:16 DID | 7 DR | 6 DW | 5:4 G (1 global, 2 domain, 3 page) | 3:0 = 2
 *                    qw1  63:12 ADDR | 6 IH | 5:0 AM
 * wait (5):          qw0  63:32 STATUS DATA | 7 PD | 6 FN | 5 SW | 4 IF | 3:0 = 5
 *                    qw1  63:2 STATUS ADDRESS
 * </pre>
 *
 * Any other type, a reserved field that is not zero, a granularity of 0, or AM above CAP.MAMV is
 * malformed: the unit sets FSTS.IQE and stops at that descriptor.
 */
public final class InvDesc {
    private InvDesc() {
    }

    public static final long SIZE = 16;

    public static final int TYPE_CONTEXT = 1;
    public static final int TYPE_IOTLB = 2;
    public static final int TYPE_WAIT = 5;

    public static final int G_GLOBAL = 1;
    public static final int G_DOMAIN = 2;
    public static final int G_DEVICE = 3;
    public static final int G_PAGE = 3;

    public static final long CC_RESERVED_QW0 = 0xFFFC_0000_0000_FFC0L;
    public static final long IOTLB_RESERVED_QW0 = 0xFFFF_FFFF_0000_FF00L;
    public static final long IOTLB_RESERVED_QW1 = 0xF80L;
    /** qw1 bit 6, the invalidation hint: only leaf entries changed, paging-structure caches may stay. */
    public static final long IOTLB_IH = 1L << 6;
    public static final long WAIT_RESERVED_QW0 = 0x0000_0000_FFFF_FF00L;
    public static final long WAIT_RESERVED_QW1 = 0x3L;

    public static final long WAIT_IF = 1L << 4;
    public static final long WAIT_SW = 1L << 5;
    public static final long WAIT_FN = 1L << 6;

    public static int type(final long qw0) {
        return (int) (qw0 & 0xF);
    }

    public static int granularity(final long qw0) {
        return (int) (qw0 >>> 4) & 3;
    }

    public static int did(final long qw0) {
        return (int) (qw0 >>> 16) & 0xFFFF;
    }

    public static int sid(final long qw0) {
        return (int) (qw0 >>> 32) & 0xFFFF;
    }

    public static int fm(final long qw0) {
        return (int) (qw0 >>> 48) & 3;
    }

    public static long contextGlobal() {
        return TYPE_CONTEXT | (long) G_GLOBAL << 4;
    }

    public static long contextDomain(final int did) {
        return TYPE_CONTEXT | (long) G_DOMAIN << 4 | (long) (did & 0xFFFF) << 16;
    }

    public static long contextDevice(final int did, final int sid, final int fm) {
        return TYPE_CONTEXT | (long) G_DEVICE << 4 | (long) (did & 0xFFFF) << 16
                | (long) (sid & 0xFFFF) << 32 | (long) (fm & 3) << 48;
    }

    public static long iotlbGlobal() {
        return TYPE_IOTLB | (long) G_GLOBAL << 4 | 1L << 6 | 1L << 7;
    }

    public static long iotlbDomain(final int did) {
        return TYPE_IOTLB | (long) G_DOMAIN << 4 | 1L << 6 | 1L << 7 | (long) (did & 0xFFFF) << 16;
    }

    public static long iotlbPage(final int did) {
        return TYPE_IOTLB | (long) G_PAGE << 4 | 1L << 6 | 1L << 7 | (long) (did & 0xFFFF) << 16;
    }

    /** qw1 of a page-selective IOTLB descriptor: {@code addr} aligned to 4 KiB << am. */
    public static long iotlbPageQw1(final long addr, final int am, final boolean leafOnly) {
        return (addr & ~0xFFFL) | (leafOnly ? 1L << 6 : 0) | (am & 0x3F);
    }

    /** A descriptor decoded, e.g. {@code iotlb page did=2 addr=0x200000 am=9 ih=0}; for tools and logs. */
    public static String describe(final long qw0, final long qw1) {
        final String[] g = {"g0", "global", "domain", "device"};
        return switch (type(qw0)) {
            case TYPE_CONTEXT -> String.format("context-cache %s did=%d sid=0x%04x fm=%d", g[granularity(qw0)], did(qw0),
                    sid(qw0), fm(qw0));
            case TYPE_IOTLB -> granularity(qw0) == G_PAGE
                    ? String.format("iotlb page did=%d addr=0x%x am=%d ih=%d", did(qw0), qw1 & ~0xFFFL, qw1 & 0x3F,
                            (qw1 & IOTLB_IH) != 0 ? 1 : 0)
                    : String.format("iotlb %s did=%d", g[granularity(qw0)], did(qw0));
            case TYPE_WAIT -> String.format("wait%s%s%s status 0x%x -> 0x%x", (qw0 & WAIT_IF) != 0 ? " IF" : "",
                    (qw0 & WAIT_SW) != 0 ? " SW" : "", (qw0 & WAIT_FN) != 0 ? " FN" : "", qw0 >>> 32, qw1 & ~3L);
            default -> qw0 == 0 && qw1 == 0 ? "empty" : "type " + type(qw0) + " (not one this unit executes)";
        };
    }

    public static long wait(final int statusData, final boolean fence) {
        return TYPE_WAIT | WAIT_SW | (fence ? WAIT_FN : 0) | ((long) statusData << 32);
    }
}
