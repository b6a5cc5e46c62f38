package org.iopersist.kernel.liveupdate.kho;

/**
 * Constants of the flattened device tree format (devicetree specification v0.4, chapter 5), version
 * 17, as libfdt writes it.
 *
 * <pre>
 *  offset  field (all big-endian u32)
 *  0x00    magic 0xd00dfeed
 *  0x04    totalsize
 *  0x08    off_dt_struct
 *  0x0c    off_dt_strings
 *  0x10    off_mem_rsvmap
 *  0x14    version (17)
 *  0x18    last_comp_version (16)
 *  0x1c    boot_cpuid_phys
 *  0x20    size_dt_strings
 *  0x24    size_dt_struct
 *  0x28    memory reservation block: (u64 address, u64 size)* then (0, 0)
 *          structure block: tokens, 4-byte aligned
 *          strings block: NUL-terminated property names
 * </pre>
 */
public final class Fdt {
    private Fdt() {
    }

    public static final int MAGIC = 0xd00dfeed;
    public static final int VERSION = 17;
    public static final int LAST_COMP_VERSION = 16;
    public static final int HEADER_SIZE = 40;

    public static final int OFF_MAGIC = 0x00;
    public static final int OFF_TOTALSIZE = 0x04;
    public static final int OFF_DT_STRUCT = 0x08;
    public static final int OFF_DT_STRINGS = 0x0c;
    public static final int OFF_MEM_RSVMAP = 0x10;
    public static final int OFF_VERSION = 0x14;
    public static final int OFF_LAST_COMP_VERSION = 0x18;
    public static final int OFF_BOOT_CPUID = 0x1c;
    public static final int OFF_SIZE_DT_STRINGS = 0x20;
    public static final int OFF_SIZE_DT_STRUCT = 0x24;

    public static final int BEGIN_NODE = 0x1;
    public static final int END_NODE = 0x2;
    public static final int PROP = 0x3;
    public static final int NOP = 0x4;
    public static final int END = 0x9;

    /** Deepest nesting the reader accepts; real trees are shallow, and the bound stops hostile input. */
    public static final int MAX_DEPTH = 64;

    static int align4(final int n) {
        return (n + 3) & ~3;
    }
}
