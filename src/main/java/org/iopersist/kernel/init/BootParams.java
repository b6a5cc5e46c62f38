package org.iopersist.kernel.init;

import java.util.ArrayList;
import java.util.List;

/**
 * The kernel command line, parsed. Options this kernel knows are typed fields; anything else is
 * kept in {@link #unknown()} and reported at boot, as Linux does ("Unknown kernel command line
 * parameters ... will be passed to user space"). A known option with a bad value is reported in
 * {@link #malformed()} and its default kept.
 *
 * @param guestmemfsSize   {@code guestmemfs=<size>}: bytes carved out at the top of memory for
 *                         guest RAM (0: none)
 * @param kho              {@code kho=on|off}: accept and produce handovers
 * @param khoScratchSize   {@code kho_scratch=<size>}: the region the next kernel boots in
 * @param finishTimeoutSec {@code liveupdate.finish_timeout=<seconds>} (0: wait for an explicit finish)
 * @param pagePoison       {@code page_poison=on|off}: fill freed frames and check them on reuse
 * @param breakAt          {@code liveupdate.break=<point>}: stop for good there ({@code Breakpoint}); empty: none
 * @param iommufdSelftest  {@code iommufd.selftest=1}: the kernel answers IOMMU_TEST_CMD and has the
 *                         selftest's mock IOMMU, as one built with CONFIG_IOMMUFD_TEST
 */
public record BootParams(String cmdline, long guestmemfsSize, boolean kho, long khoScratchSize, int finishTimeoutSec,
        boolean pagePoison, String breakAt, boolean iommufdSelftest, List<String> unknown, List<String> malformed) {
    public static final long DEFAULT_KHO_SCRATCH = 16L << 20;
    public static final int DEFAULT_FINISH_TIMEOUT = 60;

    public BootParams {
        unknown = List.copyOf(unknown);
        malformed = List.copyOf(malformed);
    }

    public static BootParams parse(final String cmdline) {
        long guestmemfs = 0;
        boolean kho = true;
        long scratch = DEFAULT_KHO_SCRATCH;
        int timeout = DEFAULT_FINISH_TIMEOUT;
        boolean poison = false;
        String breakAt = "";
        boolean selftest = false;
        final List<String> unknown = new ArrayList<>();
        final List<String> malformed = new ArrayList<>();
        for (String token : cmdline.trim().split("\\s+")) {
            if (token.isEmpty()) {
                continue;
            }
            final int eq = token.indexOf('=');
            final String key = eq < 0 ? token : token.substring(0, eq);
            final String value = eq < 0 ? "" : token.substring(eq + 1);
            try {
                switch (key) {
                    case "guestmemfs" -> guestmemfs = memparse(value);
                    case "kho" -> kho = onOff(value);
                    case "kho_scratch" -> {
                        final long size = memparse(value);
                        if (size == 0 || (size & 0xFFF) != 0) {
                            throw new IllegalArgumentException("must be a non-zero multiple of 4K");
                        }
                        scratch = size; // only once valid: a bad value keeps the default
                    }
                    case "liveupdate.finish_timeout" -> {
                        final int seconds = Integer.parseInt(value);
                        if (seconds < 0) {
                            throw new IllegalArgumentException("must be 0 or more seconds");
                        }
                        timeout = seconds;
                    }
                    case "page_poison" -> poison = onOff(value);
                    case "liveupdate.break" -> breakAt = value;
                    case "iommufd.selftest" -> selftest = onOff(value);
                    default -> unknown.add(token);
                }
            } catch (IllegalArgumentException e) {
                malformed.add(token + " (" + e.getMessage() + ")");
            }
        }
        return new BootParams(cmdline.trim(), guestmemfs, kho, scratch, timeout, poison, breakAt, selftest, unknown, malformed);
    }

    /** Linux's memparse: a number with an optional K, M, G or T suffix. */
    public static long memparse(final String value) {
        if (value.isEmpty()) {
            throw new IllegalArgumentException("empty size");
        }
        final char last = Character.toUpperCase(value.charAt(value.length() - 1));
        final int shift = switch (last) {
            case 'K' -> 10;
            case 'M' -> 20;
            case 'G' -> 30;
            case 'T' -> 40;
            default -> 0;
        };
        final String digits = shift == 0 ? value : value.substring(0, value.length() - 1);
        final long n = digits.startsWith("0x") ? Long.parseUnsignedLong(digits.substring(2), 16) : Long.parseLong(digits);
        if (n < 0 || (shift > 0 && Long.numberOfLeadingZeros(n) <= shift)) {
            throw new IllegalArgumentException("size out of range");
        }
        return n << shift;
    }

    private static boolean onOff(final String value) {
        return switch (value) {
            case "on", "1", "y", "" -> true;
            case "off", "0", "n" -> false;
            default -> throw new IllegalArgumentException("expected on or off");
        };
    }
}
