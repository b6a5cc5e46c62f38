package org.iopersist.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.Board;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DmaRecord;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code iopersist inspect} on a real machine through a real live update: a VMM maps guest RAM
 * for DMA through a persistent iommufd, both devices write records, the kernel kexecs and the next
 * one boots from the handover. Every view runs before the kexec, between the two kernels (the
 * handover in place, no kernel running) and after; the translation of IOVA 0x1234000 names the
 * page where the device's record for that IOVA actually is; the handover's DTS is the real dtc's,
 * byte for byte; {@code --json} parses; bad input is one line and a nonzero exit.
 */
class InspectCommandTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=64M liveupdate.finish_timeout=0";
    private static final String RAM = "vm0-ram";
    /** The README's question: where does device 00:02.0 reach at IOVA 0x1234000? */
    private static final long IOVA = 0x1234000L;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path work;

    record Run(int code, String out, String err) {
        JsonNode json() throws Exception {
            assertEquals(0, code, err);
            return JSON.readTree(out);
        }
    }

    /** Runs {@code iopersist ARGS} in this JVM, as {@link Main#main} does, capturing both streams. */
    static Run inspect(final String... args) {
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        final var cli = Main.commandLine();
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        final List<String> all = new ArrayList<>(List.of("inspect"));
        all.addAll(List.of(args));
        final int code = cli.execute(all.toArray(String[]::new));
        return new Run(code, out.toString(), err.toString());
    }

    /** One line on stderr that starts with "iopersist:", nothing on stdout, a nonzero code. */
    static void oneLineError(final Run r, final String contains) {
        assertNotEquals(0, r.code(), r.out());
        assertEquals("", r.out());
        final List<String> lines = r.err().lines().toList();
        assertEquals(1, lines.size(), r.err());
        assertTrue(lines.getFirst().startsWith("iopersist: ") && lines.getFirst().contains(contains), r.err());
    }

    /** The VMM's side: a process on the kernel, guest RAM, its iommufd. */
    private static final class Vmm implements AutoCloseable {
        final SyscallServer server;
        final KernelClient client;
        GuestRam ram;
        IommufdHandle iommufd;

        Vmm(final Kernel kernel, final Path dir) throws Exception {
            server = kernel.serve(dir.resolve("kernel.sock"));
            client = KernelClient.connect(server.path(), dir.resolve("memory"));
        }

        @Override
        public void close() {
            client.close();
            server.close();
        }
    }

    @Test
    void everyViewBeforeBetweenAndAfterALiveUpdate() throws Exception {
        final Path dir = work.resolve("m");
        try (Machine machine = Machine.create(dir, MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            Files.writeString(dir.resolve("boot").resolve(Kernel.CMDLINE_FILE), CMDLINE);
            final Kernel k1 = Kernel.boot(machine.board());
            final DeviceBar[] bars = {new DeviceBar(machine.board().deviceBar(0)), new DeviceBar(machine.board().deviceBar(1))};
            final long expectedPhys;
            final int pid;
            try (Vmm vmm = new Vmm(k1, dir)) {
                vmm.ram = GuestRam.create(vmm.client, RAM, 32 * MIB);
                vmm.iommufd = IommufdHandle.open(vmm.client);
                pid = (int) vmm.iommufd.makePersistent();
                final int ioas = vmm.iommufd.ioasAlloc();
                for (int i = 0; i < 2; i++) {
                    final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm.client, i);
                    dev.bind(vmm.iommufd);
                    dev.attach(ioas);
                }
                vmm.ram.mapForDma(vmm.iommufd, ioas, 1);
                // Device 0's window holds IOVA 0x1234000; 512 records of 512 bytes.
                bars[0].start(WorkloadSettings.writeVerify(0x1200000L, 256 * 1024, 512, 1).withPace(20_000));
                bars[1].start(WorkloadSettings.writeVerify(0x1800000L, 256 * 1024, 512, 2).withPace(20_000));
                bars[0].awaitSeq(600);
                bars[1].awaitSeq(600);
                new SysfsMirror(k1.sysfs(), dir).refresh();
                expectedPhys = vmm.ram.physOf(IOVA);

                // ---- before: a running kernel, no handover yet
                final JsonNode before = translation(dir);
                assertEquals(hex(expectedPhys), before.get("phys").asText(), "the VMM's own idea of where GPA 0x1234000 is");
                recordAt(machine.board(), expectedPhys, 0x0010);
                vtdView(dir, true);
                devicesView(dir, false);
                final JsonNode sys = inspect(dir.toString(), "sysfs", "--json").json();
                assertEquals("cold", sys.get("attributes").get("/sys/kernel/boot/kind").asText());
                assertTrue(inspect(dir.toString(), "sysfs").out().contains("/sys/kernel/kho/finalize = 0"));
                oneLineError(inspect(dir.toString(), "handover"), "no handover");
                oneLineError(inspect(dir.toString(), "tracker"), "no handover");

                // ---- the kexec: finalize, kexec_load, reboot(KEXEC)
                vmm.client.writeFile("/sys/kernel/kho/finalize", "1");
                vmm.client.kexecLoad(CMDLINE);
                vmm.client.rebootKexec();
                assertTrue(k1.liveUpdate().awaitKexec(30, TimeUnit.SECONDS));
            }

            // ---- between the kernels: the handover in memory, no kernel, devices still writing
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            Run sys;
            while ((sys = inspect(dir.toString(), "sysfs")).code() == 0 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            oneLineError(sys, "no kernel is running");
            assertEquals(hex(expectedPhys), translation(dir).get("phys").asText(), "the tables stay in place through the kexec");
            recordAt(machine.board(), expectedPhys, 0x0010);
            handoverIsDtcs(dir);
            final JsonNode vtd = vtdView(dir, true);
            trackerHolds(dir, vtd, true);
            devicesView(dir, false);

            // ---- after: kernel 2 from the handover, the VMM back
            final Kernel k2 = Kernel.boot(machine.board());
            assertEquals(Kernel.BootKind.LIVE_UPDATE, k2.bootKind(), k2.coldBootReason());
            // Before the VMM is back (and so before finish frees the handover): what kernel 2 booted
            // from is still all there, less what it claimed.
            handoverIsDtcs(dir);
            trackerHolds(dir, vtd, false);
            try (Vmm vmm = new Vmm(k2, dir)) {
                vmm.iommufd = IommufdHandle.of(vmm.client, vmm.client.open(Iommufd.persistedNode(pid), Syscall.O_RDWR));
                for (int i = 0; i < 2; i++) {
                    VfioDeviceHandle.open(vmm.client, i).bind(vmm.iommufd);
                }
                vmm.ram = GuestRam.open(vmm.client, RAM);
                assertEquals(expectedPhys, vmm.ram.physOf(IOVA));
                new SysfsMirror(k2.sysfs(), dir).refresh();
                final long seq = bars[0].counters().nextSeq();
                bars[0].awaitSeq(seq + 600); // a whole lap of the window after the update
                assertEquals(hex(expectedPhys), translation(dir).get("phys").asText(), "the same page after the update");
                recordAt(machine.board(), expectedPhys, 0x0010);
                final JsonNode sys2 = inspect(dir.toString(), "sysfs", "--json").json();
                assertEquals("live_update", sys2.get("attributes").get("/sys/kernel/boot/kind").asText());
                vtdView(dir, true);
                for (DeviceBar b : bars) {
                    b.stop();
                }
                devicesView(dir, true);
                // Kernel 2 finalizes a handover of its own, into the same scratch: the view warns.
                assertTrue(inspect(dir.toString(), "handover", "--json").json().get("warning").isNull());
                vmm.client.writeFile("/sys/kernel/kho/finalize", "1");
                new SysfsMirror(k2.sysfs(), dir).refresh();
                assertTrue(inspect(dir.toString(), "handover", "--json").json().get("warning").asText()
                        .contains("finalized a handover of its own"));
                vmm.client.writeFile("/sys/kernel/kho/finalize", "0");
            }
        }
    }

    private static String hex(final long v) {
        return "0x" + Long.toHexString(v);
    }

    /** {@code inspect vtd --device 00:02.0 --iova 0x1234000 --json}: mapped, read and write ok, decided by a leaf. */
    private static JsonNode translation(final Path dir) throws Exception {
        final JsonNode t = inspect(dir.toString(), "vtd", "--device", "00:02.0", "--iova", "0x1234000", "--json").json();
        assertTrue(t.get("mapped").asBoolean(), t.toString());
        assertEquals("ok", t.get("read").asText());
        assertEquals("ok", t.get("write").asText());
        final JsonNode last = t.get("walk").get(t.get("walk").size() - 1);
        assertTrue(last.get("meaning").asText().startsWith("leaf "), t.toString());
        assertTrue(t.get("decidedBy").asText().startsWith(last.get("what").asText() + "["), t.toString());
        // The view first works too: inspect VIEW DIR.
        final String text = inspect("vtd", dir.toString(), "--device", "0000:00:02.0", "--iova", "0x1234000").out();
        assertTrue(text.contains("=> phys " + t.get("phys").asText()), text);
        // An IOVA outside guest RAM: no leaf, a read faults READ, a write WRITE, and the walk names the entry.
        final JsonNode miss = inspect(dir.toString(), "vtd", "--device", "00:02.0", "--iova", "0x40000000", "--json").json();
        assertFalse(miss.get("mapped").asBoolean());
        assertEquals("READ (0x6)", miss.get("read").asText());
        assertEquals("WRITE (0x5)", miss.get("write").asText());
        assertTrue(miss.get("walk").get(miss.get("walk").size() - 1).get("meaning").asText().startsWith("not present"));
        return t;
    }

    /** The record the device wrote for IOVA 0x1234000 is at the translated page: its DMA hit exactly there. */
    private static void recordAt(final Board board, final long phys, final int sid) {
        final PhysicalMemory mem = board.memory();
        assertEquals(DmaRecord.MAGIC, mem.load32(phys + DmaRecord.MAGIC_OFFSET), "a record at 0x" + Long.toHexString(phys));
        assertEquals(sid, mem.load32(phys + DmaRecord.SID_OFFSET) & 0xFFFF);
        assertEquals(IOVA, mem.load64(phys + DmaRecord.IOVA_OFFSET), "written for IOVA 0x1234000");
    }

    /** {@code inspect vtd --json}: both devices in one domain, DID, 32 MiB mapped as runs; the text says the same. */
    private static JsonNode vtdView(final Path dir, final boolean mapped) throws Exception {
        final JsonNode v = inspect(dir.toString(), "vtd", "--json").json();
        final JsonNode unit = v.get("units").get(0);
        assertTrue(unit.get("translationEnabled").asBoolean());
        assertTrue(unit.get("gsts").toString().contains("TES"));
        assertEquals(48, unit.get("cap").get("mgaw").asInt());
        assertTrue(unit.get("queue").get("enabled").asBoolean());
        final JsonNode d0 = unit.get("devices").get(0);
        final JsonNode d1 = unit.get("devices").get(1);
        assertEquals("0000:00:02.0", d0.get("bdf").asText());
        assertEquals(mapped, d0.get("present").asBoolean());
        assertEquals(d0.get("pgd"), d1.get("pgd"), "one domain");
        assertEquals(d0.get("did"), d1.get("did"));
        assertEquals(32 * MIB, d0.get("mappedBytes").asLong());
        long runBytes = 0;
        for (JsonNode r : d0.get("runs")) {
            runBytes += r.get("length").asLong();
            assertEquals("rw", r.get("perms").asText());
        }
        assertEquals(32 * MIB, runBytes);
        final String text = inspect(dir.toString(), "vtd").out();
        assertTrue(text.contains("device 0000:00:02.0 (sid 0x0010): context"), text);
        assertTrue(text.contains("DID " + d0.get("did").asInt()), text);
        assertTrue(text.contains("same domain as 0000:00:02.0"), text);
        return v;
    }

    /** {@code inspect devices}: counters moving, no fault; with the workload stopped, every record in place. */
    private static void devicesView(final Path dir, final boolean stopped) throws Exception {
        final JsonNode v = inspect(dir.toString(), "devices", "--json").json();
        assertEquals(2, v.get("devices").size());
        for (JsonNode d : v.get("devices")) {
            assertTrue(d.get("counters").get("ops").asLong() > 0);
            assertEquals(0, d.get("counters").get("faults").asLong(), d.toString());
            assertEquals(0, d.get("counters").get("corrupt").asLong());
            assertTrue(d.get("latency").get("samples").asLong() >= 0);
            final JsonNode r = d.get("records");
            assertEquals(512, r.get("slots").asLong());
            assertEquals(0, r.get("unmapped").asLong(), r.toString());
            if (stopped) {
                // Running, the slot being written may read torn; stopped, every record must be in place.
                assertEquals(r.get("checked").asLong(), r.get("found").asLong(), "every record in place: " + r);
            }
        }
        final String text = inspect("devices", dir.toString(), "--device", "00:03.0").out();
        assertTrue(text.contains("device 1 0000:00:03.0") && !text.contains("0000:00:02.0"), text);
    }

    /**
     * {@code inspect handover}: the KHO tree and every blob, each printed alone with {@code --blob}
     * exactly as the real dtc prints the bytes {@code --raw} wrote; the JSON lists them with their
     * checksums good.
     */
    private void handoverIsDtcs(final Path dir) throws Exception {
        final Path raw = Files.createTempDirectory(work, "raw");
        final Run wrote = inspect(dir.toString(), "handover", "--raw", raw.toString());
        assertEquals(0, wrote.code(), wrote.err());
        final JsonNode h = inspect(dir.toString(), "handover", "--json").json();
        final List<String> names = new ArrayList<>(List.of(InspectHandover.TREE));
        for (JsonNode b : h.get("blobs")) {
            names.add(b.get("name").asText());
            assertTrue(b.get("crcOk").asBoolean(), b.get("name") + " crc");
            assertTrue(b.get("compatible").asText().matches(".*-v[1-3]"), b.toString());
        }
        assertEquals(List.of("kho", "intel-iommu", "guestmemfs", "iommufd"), names);
        assertEquals("kho-v2", h.get("tree").get("compatible").asText());
        final String all = inspect(dir.toString(), "handover").out();
        for (String name : names) {
            final Path dtb = raw.resolve(name + ".dtb");
            assertTrue(Files.isRegularFile(dtb), name);
            final String dtc = dtc(dtb);
            final Run ours = inspect(dir.toString(), "handover", "--blob", name);
            assertEquals(0, ours.code(), ours.err());
            assertEquals(dtc, ours.out(), name + ": our DTS is dtc's");
            assertTrue(all.contains(dtc), name + " in the full listing");
        }
    }

    private static String dtc(final Path dtb) throws Exception {
        final Process p = new ProcessBuilder("dtc", "-I", "dtb", "-O", "dts", dtb.toString())
                .redirectError(ProcessBuilder.Redirect.DISCARD).start();
        final String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), "dtc refuses " + dtb);
        return out;
    }

    /**
     * {@code inspect tracker}: every blob lies in preserved blocks, and so does the domain's pgd
     * while the handover is fresh; once kernel 2 has claimed what it restored, the pgd no longer does.
     */
    private static void trackerHolds(final Path dir, final JsonNode vtd, final boolean fresh) throws Exception {
        final JsonNode t = inspect(dir.toString(), "tracker", "--json").json();
        assertTrue(t.get("trackerBytes").asLong() >= 2 * 4096, t.toString());
        // The radix tree: the root first (level 5), every leaf one order, trackerBytes all of it.
        assertEquals(5, t.get("tables").get(0).get("level").asInt(), t.toString());
        assertTrue(t.get("leaves").size() >= 1, t.toString());
        assertEquals((t.get("tables").size() + t.get("leaves").size()) * 4096L, t.get("trackerBytes").asLong());
        assertTrue(Long.decode(t.get("scratch").get("phys").asText()) > 0);
        final long pgd = Long.decode(vtd.get("units").get(0).get("devices").get(0).get("pgd").asText());
        assertEquals(fresh, preserved(t, pgd), "the domain's pgd in the tracker: " + t);
        for (JsonNode b : inspect(dir.toString(), "handover", "--json").json().get("blobs")) {
            assertTrue(preserved(t, Long.decode(b.get("phys").asText())), b.get("name") + " blob preserved: " + t);
        }
        assertTrue(inspect(dir.toString(), "tracker").out().contains("preserved: "));
    }

    private static boolean preserved(final JsonNode tracker, final long phys) {
        for (JsonNode o : tracker.get("orders")) {
            for (JsonNode r : o.get("ranges")) {
                if (phys >= Long.decode(r.get("phys").asText()) && phys <= Long.decode(r.get("last").asText())) {
                    return true;
                }
            }
        }
        return false;
    }

    @Test
    void badInputIsOneLineAndNonzero() throws Exception {
        final Path dir = work.resolve("m");
        oneLineError(inspect(dir.toString(), "vtd"), "no such directory");
        Files.createDirectories(dir);
        oneLineError(inspect(dir.toString(), "devices"), "not a machine directory");
        try (Board board = Board.create(dir, MachineConfig.small().withMemorySize(64 * MIB))) {
            assertTrue(board.config().devices().size() == 2);
        }
        oneLineError(inspect(dir.toString(), "vtd"), "never been powered on");
        oneLineError(inspect(dir.toString(), "vtd", "--device", "00:1f.9"), "bad --device");
        oneLineError(inspect(dir.toString(), "vtd", "--device", "00:07.0"), "no device 0000:00:07.0");
        oneLineError(inspect(dir.toString(), "vtd", "--device", "00:02.0", "--iova", "12zz"), "bad --iova");
        oneLineError(inspect(dir.toString(), "vtd", "--device", "00:02.0", "--iova", "-4096"), "bad --iova");
        oneLineError(inspect(dir.toString(), "vtd", "--iova", "0x1000"), "--iova needs --device");
        oneLineError(inspect(dir.toString(), "handover"), "no handover");
        oneLineError(inspect(dir.toString(), "sysfs"), "no kernel is running");
        oneLineError(inspect("tracker"), "missing DIR");
        oneLineError(inspect(dir.toString(), "tracker", dir.toString()), "DIR given twice");
        oneLineError(inspect(dir.toString(), "vtd", "--bogus"), "unknown option --bogus");
        oneLineError(inspect(dir.toString(), "bogus"), "unknown command, view or argument bogus");
        oneLineError(inspect(dir.toString()), "inspect needs a view");
    }

    @Test
    void aToolsBoardCannotWriteTheMachine() throws Exception {
        final Path dir = work.resolve("m");
        Board.create(dir, MachineConfig.small().withMemorySize(64 * MIB)).close();
        try (Board ro = Board.openReadOnly(dir)) {
            assertEquals(0, ro.memory().load64(0x1000));
            assertThrows(IllegalArgumentException.class, () -> ro.memory().store64(0x1000, 1));
            assertThrows(IllegalArgumentException.class, () -> ro.unitRegisters(0).write64(0, 1));
        }
    }
}
