package org.iopersist.hw.vtd;

/**
 * Register offsets and bits of one VT-d remapping unit's 4 KiB window, as the VT-d specification
 * (chapter 11) places them. Widths: VER, GCMD, GSTS, FSTS, FECTL and ICS are 32-bit; the rest 64-bit.
 *
 * <pre>
 *  0x000 VER      0x008 CAP      0x010 ECAP     0x018 GCMD     0x01C GSTS
 *  0x020 RTADDR   0x028 CCMD     0x034 FSTS     0x038 FECTL
 *  0x080 IQH      0x088 IQT      0x090 IQA      0x09C ICS      0x0B0 IQERCD
 *  0x400 FRCD[0..NFR)   (CAP.FRO = 0x40, 16 bytes each)
 *  0x500 IVA, 0x508 IOTLB   (ECAP.IRO = 0x50)
 * </pre>
 *
 * <p>One-shot command bits of GCMD (SRTP, WBF, SFL, CFI) are consumed by the hardware: it clears the bit
 * in GCMD once the command has taken effect. A file cannot see two writes of the same value, so this
 * is how the emulation tells "done" apart from "not yet seen"; software waits for the bit to clear
 * and the matching GSTS bit to show.
 */
public final class VtdRegisters {
    private VtdRegisters() {
    }

    public static final long VER = 0x00;
    public static final long CAP = 0x08;
    public static final long ECAP = 0x10;
    public static final long GCMD = 0x18;
    public static final long GSTS = 0x1C;
    public static final long RTADDR = 0x20;
    public static final long CCMD = 0x28;
    public static final long FSTS = 0x34;
    public static final long FECTL = 0x38;
    public static final long IQH = 0x80;
    public static final long IQT = 0x88;
    public static final long IQA = 0x90;
    public static final long ICS = 0x9C;
    public static final long IQERCD = 0xB0;

    /** CAP.FRO value: fault recording registers at FRO * 16. */
    public static final int FRO = 0x40;
    public static final long FRCD_BASE = FRO * 16L;
    public static final long FRCD_SIZE = 16;
    /** ECAP.IRO value: IVA at IRO * 16, IOTLB at IRO * 16 + 8. */
    public static final int IRO = 0x50;
    public static final long IVA = IRO * 16L;
    public static final long IOTLB_REG = IRO * 16L + 8;

    /** VER: major 1, minor 0. */
    public static final int VERSION = 0x10;

    // GCMD / GSTS bits (same positions; GSTS names end in S).
    public static final int GCMD_TE = 1 << 31;
    public static final int GCMD_SRTP = 1 << 30;
    public static final int GCMD_SFL = 1 << 29;
    public static final int GCMD_EAFL = 1 << 28;
    public static final int GCMD_WBF = 1 << 27;
    public static final int GCMD_QIE = 1 << 26;
    public static final int GCMD_IRE = 1 << 25;
    public static final int GCMD_SIRTP = 1 << 24;
    public static final int GCMD_CFI = 1 << 23;
    /** Bits the hardware consumes (clears) once done. */
    public static final int GCMD_ONE_SHOT = GCMD_SRTP | GCMD_SFL | GCMD_WBF | GCMD_SIRTP;

    public static final int GSTS_TES = GCMD_TE;
    public static final int GSTS_RTPS = GCMD_SRTP;
    public static final int GSTS_QIES = GCMD_QIE;
    public static final int GSTS_WBFS = GCMD_WBF;

    // FSTS bits. PFO, AFO, IQE, ICE, ITE are RW1C; PPF is read-only (set while any FRCD.F is set).
    public static final int FSTS_PFO = 1;
    public static final int FSTS_PPF = 1 << 1;
    public static final int FSTS_IQE = 1 << 4;
    public static final int FSTS_ICE = 1 << 5;
    public static final int FSTS_ITE = 1 << 6;
    public static final int FSTS_FRI_SHIFT = 8;
    public static final int FSTS_FRI_MASK = 0xFF << FSTS_FRI_SHIFT;

    /** ICS.IWC: invalidation wait descriptor complete (RW1C). */
    public static final int ICS_IWC = 1;

    // RTADDR: bits 63:12 root table address, bits 11:10 TTM (00 legacy, 01 scalable).
    public static final long RTADDR_ADDR_MASK = ~0xFFFL;
    public static final long RTADDR_TTM_MASK = 0xC00L;

    // IQA: bits 63:12 base, bit 11 DW (256-bit descriptors), bits 2:0 QS.
    public static final long IQA_ADDR_MASK = ~0xFFFL;
    public static final long IQA_DW = 1L << 11;
    public static final long IQA_QS_MASK = 0x7;

    /** 128-bit descriptor slots in a queue of size field {@code qs}: 2^(qs + 8). */
    public static int queueSlots(final long iqa) {
        return 1 << ((int) (iqa & IQA_QS_MASK) + 8);
    }

    /** Byte offset of fault recording register {@code index}. */
    public static long frcd(final int index) {
        return FRCD_BASE + index * FRCD_SIZE;
    }

    // Fault recording register, high qword (bits 127:64 of the record).
    public static final long FRCD_HI_F = 1L << 63;
    public static final long FRCD_HI_T_READ = 1L << 62;
    public static final int FRCD_HI_FR_SHIFT = 32;
    public static final long FRCD_HI_FR_MASK = 0xFFL << FRCD_HI_FR_SHIFT;
    public static final long FRCD_HI_SID_MASK = 0xFFFF;
}
