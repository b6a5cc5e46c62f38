package org.iopersist.hw.pci;

/**
 * A PCI function address, {@code segment:bus:device.function}, printed as Linux prints it
 * ({@code 0000:00:02.0}). Its source-id, the requester id the remapping unit sees, is
 * {@code bus << 8 | device << 3 | function}.
 */
public record Bdf(int segment, int bus, int device, int function) implements Comparable<Bdf> {

    public Bdf {
        if (segment < 0 || segment > 0xFFFF || bus < 0 || bus > 0xFF || device < 0 || device > 0x1F
                || function < 0 || function > 7) {
            throw new IllegalArgumentException("invalid PCI address " + segment + ":" + bus + ":" + device + "." + function);
        }
    }

    /** Parses {@code SSSS:BB:DD.F} or {@code BB:DD.F} (segment 0). */
    public static Bdf parse(final String text) {
        final String[] parts = text.trim().split(":");
        try {
            final int seg;
            final String bus;
            final String devfn;
            if (parts.length == 3) {
                seg = Integer.parseInt(parts[0], 16);
                bus = parts[1];
                devfn = parts[2];
            } else if (parts.length == 2) {
                seg = 0;
                bus = parts[0];
                devfn = parts[1];
            } else {
                throw new IllegalArgumentException("bad PCI address '" + text + "': expected SSSS:BB:DD.F");
            }
            final String[] df = devfn.split("\\.");
            if (df.length != 2) {
                throw new IllegalArgumentException("bad PCI address '" + text + "': expected SSSS:BB:DD.F");
            }
            return new Bdf(seg, Integer.parseInt(bus, 16), Integer.parseInt(df[0], 16), Integer.parseInt(df[1], 16));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad PCI address '" + text + "': " + e.getMessage(), e);
        }
    }

    public int devfn() {
        return device << 3 | function;
    }

    public int sourceId() {
        return bus << 8 | devfn();
    }

    @Override
    public String toString() {
        return String.format("%04x:%02x:%02x.%x", segment, bus, device, function);
    }

    @Override
    public int compareTo(final Bdf o) {
        return Long.compare(order(), o.order());
    }

    private long order() {
        return (long) segment << 16 | sourceId();
    }
}
