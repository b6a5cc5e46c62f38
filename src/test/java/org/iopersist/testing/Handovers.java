package org.iopersist.testing;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.iopersist.hw.Board;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.kho.Kho;
import org.iopersist.kernel.liveupdate.kho.SetupData;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;

/**
 * Reads the handover a kexec left in a machine the way a kernel engineer would: the real {@code dtc}
 * decompiles the KHO tree and every subsystem blob, and recompiles each to a blob of its own, which
 * must hold the same nodes, properties and bytes as ours. Tests call it after every kexec that
 * hands over, so no format drift between our codec and the device-tree tools goes unnoticed.
 */
public final class Handovers {
    private Handovers() {
    }

    /** Subsystem {@code name}'s blob in the handover of {@code board}'s boot record, writable in place. */
    /**
     * Sets up, through {@code vmm}, a persistent iommufd with something of every kind its blobs
     * hold: 8 MiB of guest RAM on guestmemfs, two IOASes, two areas in one, an allowed range, an
     * automatic HWPT and an allocated one, and both devices bound and attached. The handover tests
     * that damage each part of it start from here.
     */
    public static void persistEveryKind(final KernelClient vmm) {
        final long mib = 1L << 20;
        final GuestRam ram = GuestRam.create(vmm, "vm0", 8 * mib);
        final IommufdHandle fd = IommufdHandle.open(vmm);
        fd.makePersistent();
        final int ioas = fd.ioasAlloc();
        fd.allowIovas(ioas, java.util.List.of(new IommufdHandle.AllowedRange(0, 64 * mib - 1)));
        fd.mapFixed(ioas, ram.va(), 4 * mib, 0);
        fd.mapFixed(ioas, ram.va() + 4 * mib, 2 * mib, 4 * mib);
        final int ioas2 = fd.ioasAlloc();
        fd.mapFixed(ioas2, ram.va() + 2 * mib, 2 * mib, 16 * mib);
        final VfioDeviceHandle d0 = VfioDeviceHandle.open(vmm, 0);
        d0.bind(fd);
        d0.attach(ioas);
        final VfioDeviceHandle d1 = VfioDeviceHandle.open(vmm, 1);
        d1.bind(fd);
        d1.attach(fd.hwptAlloc(d1.devId(), ioas2));
    }

    public static FdtReader subtree(final Board board, final String name) {
        try {
            final FdtReader tree = khoTree(board);
            return blobAt(board.memory(), tree.u64(tree.subnode(tree.root(), name), Kho.PROP_FDT));
        } catch (HandoverFormatException | IOException e) {
            throw new AssertionError("no readable " + name + " blob: " + e.getMessage(), e);
        }
    }

    /**
     * After a test edited subsystem {@code name}'s blob on purpose: writes its new CRC-32C into the
     * KHO tree, so the next kernel's semantic checks, not the checksum, judge the edit.
     */
    public static void reseal(final Board board, final String name) {
        try {
            final FdtReader tree = khoTree(board);
            final int node = tree.subnode(tree.root(), name);
            final long phys = tree.u64(node, Kho.PROP_FDT);
            tree.value(tree.property(node, Kho.PROP_CRC)).set(
                    ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN), 0, Kho.blobCrc(board.memory(), phys));
            resealTree(board);
        } catch (HandoverFormatException | IOException e) {
            throw new AssertionError("cannot reseal " + name + ": " + e.getMessage(), e);
        }
    }

    /** After a test edited the KHO tree itself on purpose: writes the tree's new CRC-32C into it. */
    public static void resealTree(final Board board) {
        try {
            final FdtReader tree = khoTree(board);
            tree.value(tree.property(tree.root(), Kho.PROP_CRC)).set(
                    ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN), 0, Kho.treeCrc(tree));
        } catch (HandoverFormatException | IOException e) {
            throw new AssertionError("cannot reseal the KHO tree: " + e.getMessage(), e);
        }
    }

    private static FdtReader khoTree(final Board board) throws IOException, HandoverFormatException {
        final SetupData setup = SetupData.decode(Files.readAllBytes(board.bootDirectory().resolve("setup_data")));
        return FdtReader.open(board.memory().slice(setup.fdtAddr(), setup.fdtSize()));
    }

    /** The FDT blob at {@code phys}, as long as its header's totalsize says. */
    private static FdtReader blobAt(final PhysicalMemory mem, final long phys) throws HandoverFormatException {
        final long total = Integer.toUnsignedLong(Integer.reverseBytes(mem.load32Acquire(phys + 4)));
        return FdtReader.open(mem.slice(phys, total));
    }

    /** Checks the handover in {@code board}'s boot record; returns each blob's dts, KHO tree first (key "kho"). */
    public static Map<String, String> checkWithDtc(final Board board) {
        final Path sd = board.bootDirectory().resolve("setup_data");
        if (!Files.exists(sd)) {
            throw new AssertionError("no handover in " + sd);
        }
        try {
            return read(board);
        } catch (IOException | InterruptedException e) {
            throw new AssertionError("cannot run dtc: " + e, e);
        }
    }

    /** As {@link #checkWithDtc}, when the boot record holds a handover; an empty map when it does not. */
    public static Map<String, String> checkIfHandedOver(final Board board) {
        return Files.exists(board.bootDirectory().resolve("setup_data")) ? checkWithDtc(board) : Map.of();
    }

    private static Map<String, String> read(final Board board) throws IOException, InterruptedException {
        final Map<String, String> out = new LinkedHashMap<>();
        try {
            final FdtReader tree = khoTree(board);
            final Path work = Files.createTempDirectory("iopersist-dtc");
            try {
                out.put("kho", check(work, "kho", tree, "kho-v2"));
                for (int child : tree.children(tree.root())) {
                    final String name = tree.nodeName(child);
                    final FdtReader blob = blobAt(board.memory(), tree.u64(child, Kho.PROP_FDT));
                    out.put(name, check(work, name, blob, blob.string(blob.root(), "compatible")));
                }
            } finally {
                Trees.delete(work);
            }
        } catch (HandoverFormatException e) {
            throw new AssertionError("our own reader refuses the handover: " + e.getMessage(), e);
        }
        return out;
    }

    private static String check(final Path work, final String name, final FdtReader ours, final String compatible)
            throws IOException, InterruptedException, HandoverFormatException {
        final Path dtb = work.resolve(name + ".dtb");
        Files.write(dtb, ours.segment().toArray(ValueLayout.JAVA_BYTE));
        final String dts = dtc(dtb, "dts", null);
        if (!dts.contains("compatible = \"" + compatible + "\"")) {
            throw new AssertionError(name + ": dtc does not show compatible " + compatible + ":\n" + dts);
        }
        final Path again = work.resolve(name + "-dtc.dtb");
        dtc(dtb, "dtb", again);
        final FdtReader theirs = FdtReader.open(Files.readAllBytes(again));
        same(name, ours, ours.root(), theirs, theirs.root());
        return dts;
    }

    private static String dtc(final Path in, final String format, final Path outOrNull) throws IOException, InterruptedException {
        final List<String> cmd = new java.util.ArrayList<>(List.of("dtc", "-I", "dtb", "-O", format));
        if (outOrNull != null) {
            cmd.addAll(List.of("-o", outOrNull.toString()));
        }
        cmd.add(in.toString());
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final String text = new String(p.getInputStream().readAllBytes());
        if (p.waitFor() != 0) {
            throw new AssertionError("dtc refuses " + in.getFileName() + ": " + text);
        }
        // Every handover decompiles cleanly: a warning (a unit address without reg, say) fails the check.
        if (text.contains("Warning")) {
            throw new AssertionError("dtc warns about " + in.getFileName() + ": " + text.lines().filter(l -> l.contains("Warning"))
                    .toList());
        }
        return text;
    }

    private static void same(final String where, final FdtReader a, final int an, final FdtReader b, final int bn) {
        final String path = where + "/" + a.nodeName(an);
        if (!a.nodeName(an).equals(b.nodeName(bn))) {
            throw new AssertionError(path + ": dtc reads node '" + b.nodeName(bn) + "'");
        }
        final List<Integer> ap = a.properties(an);
        final List<Integer> bp = b.properties(bn);
        if (ap.size() != bp.size()) {
            throw new AssertionError(path + ": " + ap.size() + " properties, dtc reads " + bp.size());
        }
        for (int i = 0; i < ap.size(); i++) {
            final String pn = a.propertyName(ap.get(i));
            final MemorySegment av = a.value(ap.get(i));
            final MemorySegment bv = b.value(bp.get(i));
            if (!pn.equals(b.propertyName(bp.get(i)))
                    || !Arrays.equals(av.toArray(ValueLayout.JAVA_BYTE), bv.toArray(ValueLayout.JAVA_BYTE))) {
                throw new AssertionError(path + ": property " + pn + " differs from dtc's reading");
            }
        }
        final List<Integer> ac = a.children(an);
        final List<Integer> bc = b.children(bn);
        if (ac.size() != bc.size()) {
            throw new AssertionError(path + ": " + ac.size() + " children, dtc reads " + bc.size());
        }
        for (int i = 0; i < ac.size(); i++) {
            same(path, a, ac.get(i), b, bc.get(i));
        }
    }
}
