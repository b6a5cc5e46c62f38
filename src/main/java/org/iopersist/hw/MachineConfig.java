package org.iopersist.hw;

import org.iopersist.hw.memory.Mmio;

import java.io.IOException;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.TreeMap;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.vtd.UnitConfig;

/**
 * What the machine is: memory size, remapping units and the PCI devices behind them. Stored as
 * {@code machine.properties} in the machine directory; it is the firmware's description of the
 * platform (the role ACPI's DMAR table plays), which every kernel reads at boot.
 *
 * @param memorySize bytes of physical memory (a multiple of 4 KiB)
 * @param units      one entry per remapping unit, unit n at MMIO offset n * 0x1000
 * @param devices    PCI devices in BAR order, each behind one unit
 */
public record MachineConfig(long memorySize, List<UnitConfig> units, List<DeviceConfig> devices) {
    public static final String FILE = "machine.properties";

    /** A PCI device and the index of the remapping unit its DMA goes through. */
    public record DeviceConfig(Bdf bdf, int unit) {
    }

    public MachineConfig {
        units = List.copyOf(units);
        devices = List.copyOf(devices);
        if (memorySize <= 0 || (memorySize & 0xFFF) != 0) {
            throw new IllegalArgumentException("memory size 0x" + Long.toHexString(memorySize) + " must be a positive multiple of 4 KiB");
        }
        if (units.isEmpty() || units.size() > Mmio.MAX_UNITS) {
            throw new IllegalArgumentException("a machine has 1.." + Mmio.MAX_UNITS + " remapping units, not " + units.size());
        }
        if (devices.size() > Mmio.MAX_DEVICES) {
            throw new IllegalArgumentException("at most " + Mmio.MAX_DEVICES + " devices");
        }
        final java.util.Set<Bdf> seen = new java.util.HashSet<>();
        for (DeviceConfig d : devices) {
            if (d.unit() < 0 || d.unit() >= units.size()) {
                throw new IllegalArgumentException("device " + d.bdf() + " names unit " + d.unit() + " of " + units.size());
            }
            if (!seen.add(d.bdf())) {
                throw new IllegalArgumentException("device " + d.bdf() + " listed twice");
            }
        }
    }

    /** A small default machine: 1 GiB, one default unit, two devices on bus 0. */
    public static MachineConfig small() {
        return new MachineConfig(1L << 30, List.of(UnitConfig.DEFAULT),
                List.of(new DeviceConfig(Bdf.parse("0000:00:02.0"), 0), new DeviceConfig(Bdf.parse("0000:00:03.0"), 0)));
    }

    public MachineConfig withUnits(final List<UnitConfig> newUnits) {
        return new MachineConfig(memorySize, newUnits, devices);
    }

    public MachineConfig withDevices(final List<DeviceConfig> newDevices) {
        return new MachineConfig(memorySize, units, newDevices);
    }

    public MachineConfig withMemorySize(final long size) {
        return new MachineConfig(size, units, devices);
    }

    public void write(final Path dir) {
        final Properties p = new Properties();
        p.setProperty("memory.size", Long.toString(memorySize));
        p.setProperty("units", Integer.toString(units.size()));
        for (int i = 0; i < units.size(); i++) {
            final UnitConfig u = units.get(i);
            final String k = "unit." + i + ".";
            p.setProperty(k + "levels", levelsText(u.levels()));
            p.setProperty(k + "mgaw", Integer.toString(u.mgaw()));
            p.setProperty(k + "haw", Integer.toString(u.haw()));
            p.setProperty(k + "sllps", Integer.toString(u.sllps()));
            p.setProperty(k + "nfr", Integer.toString(u.nfr()));
            p.setProperty(k + "iotlb", Integer.toString(u.iotlbSize()));
            p.setProperty(k + "context-cache", Integer.toString(u.contextCacheSize()));
        }
        p.setProperty("devices", Integer.toString(devices.size()));
        for (int i = 0; i < devices.size(); i++) {
            p.setProperty("device." + i, devices.get(i).bdf() + "@" + devices.get(i).unit());
        }
        try (Writer w = Files.newBufferedWriter(dir.resolve(FILE))) {
            // Sorted, so the file diffs cleanly.
            final TreeMap<Object, Object> sorted = new TreeMap<>(p);
            w.write("# iopersist machine description\n");
            for (var e : sorted.entrySet()) {
                w.write(e.getKey() + "=" + e.getValue() + "\n");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static MachineConfig read(final Path dir) {
        final Path file = dir.resolve(FILE);
        final Properties p = new Properties();
        try (Reader r = Files.newBufferedReader(file)) {
            p.load(r);
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new IllegalArgumentException(file + " is not a text file of key=value lines", e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + org.iopersist.hw.memory.IoReasons.describe(e), e);
        }
        try {
            final long memory = longOf(p, "memory.size");
            final int nUnits = intOf(p, "units");
            if (nUnits < 1 || nUnits > Mmio.MAX_UNITS) {
                throw new IllegalArgumentException(file + ": units must be 1.." + Mmio.MAX_UNITS + ", not " + nUnits);
            }
            final List<UnitConfig> units = new ArrayList<>();
            for (int i = 0; i < nUnits; i++) {
                final String k = "unit." + i + ".";
                units.add(new UnitConfig(parseLevels(req(p, k + "levels")), intOf(p, k + "mgaw"),
                        intOf(p, k + "haw"), intOf(p, k + "sllps"),
                        intOf(p, k + "nfr"), intOf(p, k + "iotlb"),
                        intOf(p, k + "context-cache")));
            }
            final int nDevices = intOf(p, "devices");
            if (nDevices < 0 || nDevices > Mmio.MAX_DEVICES) {
                throw new IllegalArgumentException(file + ": devices must be 0.." + Mmio.MAX_DEVICES + ", not " + nDevices);
            }
            final List<DeviceConfig> devices = new ArrayList<>();
            for (int i = 0; i < nDevices; i++) {
                final String[] v = req(p, "device." + i).split("@");
                if (v.length != 2) {
                    throw new IllegalArgumentException(file + ": device." + i + " must be BDF@unit");
                }
                devices.add(new DeviceConfig(Bdf.parse(v[0]), Integer.parseInt(v[1].trim())));
            }
            return new MachineConfig(memory, units, devices);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(file + ": not a decimal number where one is needed (" + e.getMessage() + ")", e);
        }
    }

    private static long longOf(final Properties p, final String key) {
        final String v = req(p, key);
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(FILE + ": " + key + " = " + v + " is not a decimal number", e);
        }
    }

    private static int intOf(final Properties p, final String key) {
        final long v = longOf(p, key);
        if (v != (int) v) {
            throw new IllegalArgumentException(FILE + ": " + key + " = " + v + " is out of range");
        }
        return (int) v;
    }

    private static String req(final Properties p, final String key) {
        final String v = p.getProperty(key);
        if (v == null) {
            throw new IllegalArgumentException(FILE + " lacks " + key);
        }
        return v.trim();
    }

    static String levelsText(final int bitmap) {
        final StringBuilder sb = new StringBuilder();
        for (int n = 3; n <= 5; n++) {
            if ((bitmap & (1 << n)) != 0) {
                sb.append(sb.isEmpty() ? "" : ",").append(n);
            }
        }
        return sb.toString();
    }

    static int parseLevels(final String text) {
        int bitmap = 0;
        for (String s : text.split(",")) {
            bitmap |= 1 << Integer.parseInt(s.trim());
        }
        return bitmap;
    }
}
