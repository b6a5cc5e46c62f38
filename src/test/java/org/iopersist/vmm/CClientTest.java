package org.iopersist.vmm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.iopersist.cli.Main;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineMain;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.testing.ChildJvm;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.uapi.Vfio;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The C client in clients/c: the library and the example VMM build with {@code gcc -Wall -Werror};
 * the header lays out every uAPI struct and numbers every ioctl and syscall as the kernel does; and
 * the example, a real C process, reopens a persisted iommufd through sysfs after a real kexec
 * between two kernel processes and rebinds the devices while they keep doing DMA.
 */
class CClientTest {
    private static final Path CLIENT = Path.of("clients", "c");
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=128M liveupdate.finish_timeout=0";

    @TempDir
    Path dir;

    /** {@code gcc -Wall -Werror} as the README says it; fails the test with gcc's output. */
    static Path gcc(final Path out, final String... sources) throws Exception {
        final List<String> cmd = new ArrayList<>(List.of("gcc", "-Wall", "-Werror", "-std=c11", "-O2", "-I", CLIENT.toString(),
                "-o", out.toString()));
        cmd.addAll(List.of(sources));
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "gcc did not finish");
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + "\n" + output);
        return out;
    }

    private static String run(final Path exe) throws Exception {
        final Process p = new ProcessBuilder(exe.toString()).redirectErrorStream(true).start();
        final String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), output);
        return output;
    }

    @Test
    void theHeaderLaysOutEveryUapiStructAndNumbersEveryCallAsTheKernelDoes() throws Exception {
        final List<StructLayout> structs = List.of(org.iopersist.uapi.IommuDestroy.LAYOUT, org.iopersist.uapi.IommuIoasAlloc.LAYOUT,
                org.iopersist.uapi.IommuIoasAllowIovas.LAYOUT, org.iopersist.uapi.IommuIoasCopy.LAYOUT,
                org.iopersist.uapi.IommuIoasIovaRanges.LAYOUT, org.iopersist.uapi.IommuIovaRange.LAYOUT,
                org.iopersist.uapi.IommuIoasMap.LAYOUT, org.iopersist.uapi.IommuIoasMapFile.LAYOUT,
                org.iopersist.uapi.IommuIoasUnmap.LAYOUT, org.iopersist.uapi.IommuOption.LAYOUT,
                org.iopersist.uapi.IommuHwptAlloc.LAYOUT, org.iopersist.uapi.IommuHwInfo.LAYOUT,
                org.iopersist.uapi.IommuHwInfoVtd.LAYOUT, org.iopersist.uapi.VfioDeviceBindIommufd.LAYOUT,
                org.iopersist.uapi.VfioDeviceAttachIommufdPt.LAYOUT, org.iopersist.uapi.VfioDeviceDetachIommufdPt.LAYOUT,
                org.iopersist.uapi.LiveupdateIoctlSession.LAYOUT, org.iopersist.uapi.LiveupdateSessionFd.LAYOUT,
                org.iopersist.uapi.LiveupdateSessionFinish.LAYOUT, org.iopersist.uapi.LiveupdateSessionGetName.LAYOUT,
                // Linux names the retrieve structs apart; their layouts are the create and preserve ones.
                org.iopersist.uapi.LiveupdateIoctlSession.LAYOUT.withName("liveupdate_ioctl_retrieve_session"),
                org.iopersist.uapi.LiveupdateSessionFd.LAYOUT.withName("liveupdate_session_retrieve_fd"));
        final Map<String, Long> expected = new LinkedHashMap<>();
        final StringBuilder c = new StringBuilder("#include \"iopersist.h\"\n#include <stddef.h>\n#include <stdio.h>\n"
                + "#define P(name, value) printf(\"%s %lu\\n\", name, (unsigned long)(value))\nint main(void)\n{\n");
        for (StructLayout s : structs) {
            final String name = s.name().orElseThrow();
            c.append("\tP(\"sizeof ").append(name).append("\", sizeof(struct ").append(name).append("));\n");
            expected.put("sizeof " + name, s.byteSize());
            for (MemoryLayout m : s.memberLayouts()) {
                if (m.name().isPresent()) {
                    final String field = m.name().get();
                    c.append("\tP(\"").append(name).append('.').append(field).append("\", offsetof(struct ").append(name)
                            .append(", ").append(field).append("));\n");
                    expected.put(name + "." + field, Iommufd.offsetof(s, field));
                }
            }
        }
        final Map<String, Long> numbers = new LinkedHashMap<>();
        numbers.put("IOMMU_DESTROY", (long) Iommufd.IOMMU_DESTROY);
        numbers.put("IOMMU_IOAS_ALLOC", (long) Iommufd.IOMMU_IOAS_ALLOC);
        numbers.put("IOMMU_IOAS_ALLOW_IOVAS", (long) Iommufd.IOMMU_IOAS_ALLOW_IOVAS);
        numbers.put("IOMMU_IOAS_COPY", (long) Iommufd.IOMMU_IOAS_COPY);
        numbers.put("IOMMU_IOAS_IOVA_RANGES", (long) Iommufd.IOMMU_IOAS_IOVA_RANGES);
        numbers.put("IOMMU_IOAS_MAP", (long) Iommufd.IOMMU_IOAS_MAP);
        numbers.put("IOMMU_IOAS_MAP_FILE", (long) Iommufd.IOMMU_IOAS_MAP_FILE);
        numbers.put("IOMMU_IOAS_UNMAP", (long) Iommufd.IOMMU_IOAS_UNMAP);
        numbers.put("IOMMU_OPTION", (long) Iommufd.IOMMU_OPTION);
        numbers.put("IOMMU_HWPT_ALLOC", (long) Iommufd.IOMMU_HWPT_ALLOC);
        numbers.put("IOMMU_GET_HW_INFO", (long) Iommufd.IOMMU_GET_HW_INFO);
        numbers.put("IOMMU_IOAS_MAP_FIXED_IOVA", (long) Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA);
        numbers.put("IOMMU_IOAS_MAP_WRITEABLE", (long) Iommufd.IOMMU_IOAS_MAP_WRITEABLE);
        numbers.put("IOMMU_IOAS_MAP_READABLE", (long) Iommufd.IOMMU_IOAS_MAP_READABLE);
        numbers.put("IOMMU_OPTION_OP_GET", (long) Iommufd.IOMMU_OPTION_OP_GET);
        numbers.put("IOMMU_HW_INFO_TYPE_INTEL_VTD", (long) Iommufd.IOMMU_HW_INFO_TYPE_INTEL_VTD);
        numbers.put("IOP_OPTION_PERSISTENT", (long) Iommufd.IOMMU_OPTION_PERSISTENT);
        numbers.put("VFIO_DEVICE_BIND_IOMMUFD", (long) Vfio.VFIO_DEVICE_BIND_IOMMUFD);
        numbers.put("VFIO_DEVICE_ATTACH_IOMMUFD_PT", (long) Vfio.VFIO_DEVICE_ATTACH_IOMMUFD_PT);
        numbers.put("VFIO_DEVICE_DETACH_IOMMUFD_PT", (long) Vfio.VFIO_DEVICE_DETACH_IOMMUFD_PT);
        numbers.put("LIVEUPDATE_IOCTL_CREATE_SESSION", (long) org.iopersist.uapi.Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION);
        numbers.put("LIVEUPDATE_IOCTL_RETRIEVE_SESSION", (long) org.iopersist.uapi.Liveupdate.LIVEUPDATE_IOCTL_RETRIEVE_SESSION);
        numbers.put("LIVEUPDATE_SESSION_PRESERVE_FD", (long) org.iopersist.uapi.Liveupdate.LIVEUPDATE_SESSION_PRESERVE_FD);
        numbers.put("LIVEUPDATE_SESSION_RETRIEVE_FD", (long) org.iopersist.uapi.Liveupdate.LIVEUPDATE_SESSION_RETRIEVE_FD);
        numbers.put("LIVEUPDATE_SESSION_FINISH", (long) org.iopersist.uapi.Liveupdate.LIVEUPDATE_SESSION_FINISH);
        numbers.put("LIVEUPDATE_SESSION_GET_NAME", (long) org.iopersist.uapi.Liveupdate.LIVEUPDATE_SESSION_GET_NAME);
        numbers.put("LIVEUPDATE_SESSION_NAME_LENGTH", (long) org.iopersist.uapi.Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH);
        numbers.put("IOP_NR_LSEEK", (long) Syscall.LSEEK);
        numbers.put("IOP_NR_OPEN", (long) Syscall.OPEN);
        numbers.put("IOP_NR_IOCTL", (long) Syscall.IOCTL);
        numbers.put("IOP_NR_MMAP", (long) Syscall.MMAP);
        numbers.put("IOP_NR_PREAD64", (long) Syscall.PREAD64);
        numbers.put("IOP_NR_STAT", (long) Syscall.STAT);
        numbers.put("IOP_NR_REBOOT", (long) Syscall.REBOOT);
        numbers.put("IOP_NR_KEXEC_LOAD", (long) Syscall.KEXEC_LOAD);
        numbers.put("IOP_NR_MEMFD_CREATE", (long) Syscall.MEMFD_CREATE);
        numbers.put("IOP_O_DIRECTORY", (long) Syscall.O_DIRECTORY);
        numbers.put("IOP_MAP_ANONYMOUS", (long) Syscall.MAP_ANONYMOUS);
        numbers.put("IOP_STAT_SIZE_OFF", (long) Syscall.STAT_SIZE_OFF);
        numbers.put("IOP_MAGIC", (long) org.iopersist.uapi.Wire.MAGIC);
        numbers.put("IOP_ABI_VERSION", (long) org.iopersist.uapi.Wire.ABI_VERSION);
        for (Map.Entry<String, Long> e : numbers.entrySet()) {
            c.append("\tP(\"").append(e.getKey()).append("\", ").append(e.getKey()).append(");\n");
        }
        expected.putAll(numbers);
        c.append("\treturn 0;\n}\n");
        final Path src = Files.writeString(dir.resolve("layout.c"), c);
        // This header's own definitions, whatever the installed Linux headers hold.
        final String out = run(gcc(dir.resolve("layout"), "-DIOP_OWN_UAPI", src.toString()));
        final Map<String, Long> actual = new LinkedHashMap<>();
        for (String line : out.strip().split("\n")) {
            final int sp = line.lastIndexOf(' ');
            actual.put(line.substring(0, sp), Long.parseLong(line.substring(sp + 1)));
        }
        assertEquals(expected, actual);
        assertTrue(expected.size() > 100, expected.size() + " checks");
    }

    @Test
    void theLibraryAndTheExampleBuildWithoutAWarning() throws Exception {
        exampleVmm();
        // The header alone, included twice and before the system's own: no clash.
        final Path twice = Files.writeString(dir.resolve("twice.c"), "#include \"iopersist.h\"\n#include \"iopersist.h\"\n"
                + "#include <linux/vfio.h>\nint main(void) { return sizeof(struct iommu_ioas_map) == 40 ? 0 : 1; }\n");
        run(gcc(dir.resolve("twice"), twice.toString()));
    }

    @Test
    void theExampleVmmInCReopensThePersistedIommufdAfterARealKexecAndRebindsTheDevices() throws Exception {
        final Path exe = exampleVmm();
        final Path m = dir.resolve("machine");
        final Path sock = dir.resolve("k.sock");
        try (ChildJvm machine = ChildJvm.start(dir.resolve("machine.log"), MachineMain.class, m.toString())) {
            machine.awaitLine("machine ready");
            Files.writeString(m.resolve("boot").resolve("cmdline"), CMDLINE);
            final int[] devIds = new int[2];
            final DeviceBar[] bars = new DeviceBar[2];
            try (Board board = Board.open(m)) {
                // Kernel 1 and the Java VMM before the update: persistent iommufd, guest RAM at IOVA 0, devices running.
                try (ChildJvm kernel1 = ChildJvm.start(dir.resolve("kernel1.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel1.awaitLine("kernel ready " + sock + " cold");
                    final KernelClient vmm = KernelClient.connect(sock, m.resolve("memory"));
                    final GuestRam ram = GuestRam.create(vmm, "vm0-ram", 32 * MIB);
                    final IommufdHandle iommufd = IommufdHandle.open(vmm);
                    assertEquals(1, iommufd.makePersistent());
                    final int ioas = iommufd.ioasAlloc();
                    iommufd.mapFixed(ioas, ram.va(), ram.size(), 0);
                    for (int i = 0; i < 2; i++) {
                        final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, i);
                        devIds[i] = d.bind(iommufd);
                        d.attach(ioas);
                        bars[i] = new DeviceBar(board.deviceBar(i));
                        bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i).withPace(20_000));
                        bars[i].awaitSeq(200);
                    }
                    vmm.writeFile("/sys/kernel/kho/finalize", "1");
                    vmm.kexecLoad(CMDLINE);
                    vmm.rebootKexec();
                    assertEquals(0, kernel1.waitFor(30), kernel1.output());
                }
                try (ChildJvm kernel2 = ChildJvm.start(dir.resolve("kernel2.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel2.awaitLine("kernel ready " + sock + " live_update");
                    // The restarted VMM is a C program.
                    final Process c = new ProcessBuilder(exe.toString(), "--socket", sock.toString(), "--memory",
                            m.resolve("memory").toString(), "--hold").redirectErrorStream(true).start();
                    try {
                        final String said = readUntil(c, line -> line.startsWith("example-vmm: rebound "));
                        assertTrue(said.contains("example-vmm: persisted iommufd 1: owner uid 0, 4 objects (1 ioas, 1 hwpt, 2 devices)"), said);
                        assertTrue(said.contains("example-vmm: reopened /sys/kernel/iommufd_persisted/1/iommufd as fd ")
                                && said.contains(": persistent id 1"), said);
                        assertTrue(said.contains("example-vmm: ioas 1: allowed [0x0, 0xfedfffff] [0xfef00000, 0xffffffffffff], "
                                + "alignment 0x1000"), said);
                        assertTrue(said.contains("example-vmm: vfio0 rebound to iommufd 1: dev_id " + devIds[0]), said);
                        assertTrue(said.contains("example-vmm: vfio1 rebound to iommufd 1: dev_id " + devIds[1]), said);
                        // Through its own mapping of guest RAM: device 0's record at offset 1 MiB (IOVA 1 MiB).
                        assertTrue(said.matches("(?s).*example-vmm: guest RAM /guestmemfs/vm0-ram \\(32 MiB\\) mapped at va 0x[0-9a-f]+; "
                                + "offset 0x100000 is phys 0x[0-9a-f]+: record seq \\d+ from sid 0x0010, iova 0x100000, generation 1\n.*"),
                                said);
                        assertTrue(said.endsWith("example-vmm: rebound 2 devices"), said);

                        // While the C process holds the context, the kernel shows it reopened, and DMA goes on.
                        try (KernelClient look = KernelClient.connect(sock, m.resolve("memory"))) {
                            assertEquals("reopened", look.readFile(Iommufd.persistedDir(1) + "/state").trim());
                            assertEquals("1", look.readFile("/sys/kernel/liveupdate/finish").trim(), "the reopen finished the update");
                            final long seq = bars[1].counters().nextSeq();
                            bars[1].awaitSeq(seq + 500);
                            stopAndCheck(board, bars, GuestRam.open(look, "vm0-ram")::physOf);
                        }
                        exits(c, said);
                    } finally {
                        c.destroyForcibly();
                    }
                    assertTrue(kernel2.output().contains("iommufd: persistent ctx 1 reopened by pid "), kernel2.output());
                    exits(kernel2);
                }
            }
            exits(machine);
        }
    }

    @Test
    void theDemoRunsTheCExampleAsItsRestartedVmmAcrossTwoKexecs() throws Exception {
        final Path exe = exampleVmm();
        final Path out = dir.resolve("out");
        final String said = demo("--flow", "rfc", "--vmm-command", exe.toString(), "--out", out.toString());
        for (int k = 2; k <= 3; k++) {
            assertTrue(said.matches("(?s).*\nvmm " + k + " +example-vmm \\(process \\d+\\) reopened /sys/kernel/iommufd_persisted/1/iommufd "
                    + "\\(persistent id 1\\), devices rebound with dev_id 2, 4\n.*"), said);
            final String log = Files.readString(out.resolve("vmm" + k + ".log"));
            assertTrue(log.contains("example-vmm: rebound 2 devices"), log);
        }
        assertTrue(said.endsWith("demo: ok\n"), said);
    }

    @Test
    void inLuoModeTheExampleRetrievesTheSessionAfterARealKexecAndFindsTheDevicesBound() throws Exception {
        final Path exe = exampleVmm();
        final String cmdline = "liveupdate.finish_timeout=0";
        final Path m = dir.resolve("machine");
        final Path sock = dir.resolve("k.sock");
        try (ChildJvm machine = ChildJvm.start(dir.resolve("machine.log"), MachineMain.class, m.toString())) {
            machine.awaitLine("machine ready");
            Files.writeString(m.resolve("boot").resolve("cmdline"), cmdline);
            final int[] devIds = new int[2];
            final DeviceBar[] bars = new DeviceBar[2];
            final Map<Long, Long> frames = new java.util.HashMap<>();
            final int hwpt;
            try (Board board = Board.open(m)) {
                // Kernel 1 and the Java VMM before the update, as the demo's LUO flow sets it up.
                try (ChildJvm kernel1 = ChildJvm.start(dir.resolve("kernel1.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel1.awaitLine("kernel ready " + sock + " cold");
                    final KernelClient vmm = KernelClient.connect(sock, m.resolve("memory"));
                    final GuestRam ram = GuestRam.createMemfd(vmm, "vm0-ram", 32 * MIB);
                    final IommufdHandle iommufd = IommufdHandle.open(vmm);
                    final int ioas = iommufd.ioasAlloc();
                    ram.mapForDma(iommufd, ioas, 1);
                    final int[] deviceFds = new int[2];
                    int attached = 0;
                    for (int i = 0; i < 2; i++) {
                        final VfioDeviceHandle d = VfioDeviceHandle.open(vmm, i);
                        devIds[i] = d.bind(iommufd);
                        attached = d.attach(ioas);
                        deviceFds[i] = d.fd();
                        bars[i] = new DeviceBar(board.deviceBar(i));
                        bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i).withPace(20_000));
                        bars[i].awaitSeq(200);
                    }
                    hwpt = attached;
                    iommufd.markPreserve(hwpt, 0x4857_5054);
                    final int state = vmm.memfdCreate("vm0-state");
                    vmm.write(state, ("ioas=" + ioas + " hwpt=" + hwpt + " devids=" + devIds[0] + ", " + devIds[1])
                            .getBytes(StandardCharsets.UTF_8));
                    final LiveupdateHandle luo = LiveupdateHandle.open(vmm);
                    final SessionHandle session = luo.createSession("vm0");
                    luo.close();
                    session.preserveFd(state, 0);
                    session.preserveFd(ram.fd(), 1);
                    session.preserveFd(iommufd.fd(), 2);
                    session.preserveFd(deviceFds[0], 16);
                    session.preserveFd(deviceFds[1], 17);
                    // The memfd keeps its frames through the kexec: where the checker will look after it.
                    for (long gpa = MIB; gpa < 3 * MIB; gpa += 4096) {
                        frames.put(gpa, ram.physOf(gpa));
                    }
                    vmm.kexecLoad(cmdline);
                    vmm.rebootKexec();
                    assertEquals(0, kernel1.waitFor(30), kernel1.output());
                }
                try (ChildJvm kernel2 = ChildJvm.start(dir.resolve("kernel2.log"), Main.class, "kernel", m.toString(),
                        "--socket", sock.toString())) {
                    kernel2.awaitLine("kernel ready " + sock + " live_update");
                    final Process c = new ProcessBuilder(exe.toString(), "--socket", sock.toString(), "--memory",
                            m.resolve("memory").toString(), "--luo", "--session", "vm0", "--hold").redirectErrorStream(true).start();
                    try {
                        final String said = readUntil(c, line -> line.startsWith("example-vmm: retrieved ") && line.endsWith(" devices"));
                        assertTrue(said.contains("example-vmm: retrieved session vm0 as fd "), said);
                        assertTrue(said.contains(": \"ioas=1 hwpt=" + hwpt + " devids=" + devIds[0] + ", " + devIds[1] + "\""), said);
                        assertTrue(said.contains("example-vmm: ioas 1: allowed [0x0, 0xfedfffff]"), said);
                        for (int i = 0; i < 2; i++) {
                            assertTrue(said.matches("(?s).*example-vmm: vfio" + i + " \\(token " + (16 + i) + "\\) retrieved as fd \\d+: "
                                    + "bound, dev_id " + devIds[i] + " \\(IOMMU_GET_HW_INFO type 1, bind again EINVAL\\).*"), said);
                        }
                        // Through its own mapping of the retrieved memfd: device 0's record, on the frame it had before.
                        assertTrue(said.matches("(?s).*example-vmm: guest RAM memfd \\(32 MiB\\) mapped at va 0x[0-9a-f]+; offset 0x100000 "
                                + "is phys 0x" + Long.toHexString(frames.get(MIB)) + ": record seq \\d+ from sid 0x0010, iova 0x100000, "
                                + "generation 1\n.*"), said);
                        assertTrue(said.contains("example-vmm: session vm0 finished"), said);
                        assertTrue(said.contains("example-vmm: state, RAM, iommufd and 2 devices preserved again in a new session vm0"),
                                said);
                        assertTrue(said.endsWith("example-vmm: retrieved 2 devices"), said);

                        // The session is finished (no incoming vm0 is left) and DMA goes on, every record in place.
                        try (KernelClient look = KernelClient.connect(sock, m.resolve("memory"))) {
                            final LiveupdateHandle luo = LiveupdateHandle.open(look);
                            final org.iopersist.uapi.ErrnoException gone = org.junit.jupiter.api.Assertions.assertThrows(
                                    org.iopersist.uapi.ErrnoException.class, () -> luo.retrieveSession("vm0"));
                            luo.close();
                            assertEquals(2, gone.errno(), "ENOENT once finished (EINVAL if only retrieved): " + gone.getMessage());
                            final long seq = bars[1].counters().nextSeq();
                            bars[1].awaitSeq(seq + 500);
                            stopAndCheck(board, bars, iova -> {
                                final Long frame = frames.get(iova & ~4095L);
                                return frame == null ? -1 : frame + (iova & 4095);
                            });
                        }
                        exits(c, said);
                    } finally {
                        c.destroyForcibly();
                    }
                    exits(kernel2);
                }
            }
            exits(machine);
        }
    }

    @Test
    void theDemoRunsTheCExampleInLuoModeAcrossTwoKexecs() throws Exception {
        final Path exe = exampleVmm();
        final Path out = dir.resolve("out");
        final String said = demo("--flow", "luo", "--vmm-command", exe.toString(), "--out", out.toString());
        for (int k = 2; k <= 3; k++) {
            assertTrue(said.matches("(?s).*\nvmm " + k + " +example-vmm \\(process \\d+\\) retrieved session vm0: devices bound "
                    + "with dev_id 2, 4, RAM, iommufd; finished .*"), said);
            final String log = Files.readString(out.resolve("vmm" + k + ".log"));
            assertTrue(log.contains("example-vmm: session vm0 finished") && log.endsWith("example-vmm: retrieved 2 devices\n"), log);
        }
        assertTrue(said.matches("(?s).*device   vfio0: \\d+ records \\(\\d+ after the first update\\), 0 faults, 0 corrupt.*"), said);
        assertTrue(said.endsWith("demo: ok\n"), said);
    }

    @Test
    void aSocketThatIsNoKernelIsRefusedWithAnErrno() throws Exception {
        final Path exe = exampleVmm();
        Files.write(dir.resolve("memory"), new byte[4096]);
        final Process p = new ProcessBuilder(exe.toString(), "--socket", dir.resolve("none.sock").toString(), "--memory",
                dir.resolve("memory").toString()).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(10, TimeUnit.SECONDS));
        assertEquals(1, p.exitValue());
        assertEquals("example-vmm: " + dir.resolve("none.sock") + ": No such file or directory\n", out);
    }

    /** Runs {@code iopersist demo} for two short updates on a machine in {@code dir/m}; returns what it printed, after exit 0. */
    private String demo(final String... args) {
        final java.util.List<String> argv = new java.util.ArrayList<>(java.util.List.of("demo", "--seconds", "0.2", "--updates", "2",
                "--dir", dir.resolve("m").toString()));
        argv.addAll(java.util.List.of(args));
        final java.io.PrintStream stdout = System.out;
        final java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
        System.setOut(new java.io.PrintStream(buf, true, StandardCharsets.UTF_8));
        final int exit;
        try {
            exit = new picocli.CommandLine(new Main()).execute(argv.toArray(String[]::new));
        } finally {
            System.setOut(stdout);
        }
        final String said = buf.toString(StandardCharsets.UTF_8);
        assertEquals(0, exit, said);
        return said;
    }

    /** What the C VMM prints until a line {@code last} accepts (that one included), joined by newlines. */
    private static String readUntil(final Process c, final java.util.function.Predicate<String> last) throws IOException {
        final List<String> lines = new ArrayList<>();
        final BufferedReader out = new BufferedReader(new InputStreamReader(c.getInputStream(), StandardCharsets.UTF_8));
        String line;
        while ((line = out.readLine()) != null) {
            lines.add(line);
            if (last.test(line)) {
                break;
            }
        }
        return String.join("\n", lines);
    }

    /** Stops both devices: neither faulted nor wrote a corrupt record, and every record is where {@code physOf} says. */
    private static void stopAndCheck(final Board board, final DeviceBar[] bars, final java.util.function.LongUnaryOperator physOf) {
        final RecordChecker checker = new RecordChecker(board.memory());
        for (int i = 0; i < bars.length; i++) {
            bars[i].stop();
            final DeviceCounters counters = bars[i].counters();
            assertEquals(0, counters.faults(), "device " + i + ": " + counters);
            assertEquals(0, counters.corrupt(), "device " + i + ": " + counters);
            final RecordChecker.Report r = checker.check(bars[i].window(), physOf);
            assertTrue(r.clean(), r.toString());
        }
    }

    /** Ends a child JVM's stdin, as its parent would, and expects it to exit 0. */
    private static void exits(final ChildJvm child) throws Exception {
        child.process().getOutputStream().close();
        assertEquals(0, child.waitFor(30), child.output());
    }

    /** {@code example-vmm} built from the client library's sources, as a user builds it. */
    private Path exampleVmm() throws Exception {
        return gcc(dir.resolve("example-vmm"), CLIENT.resolve("example-vmm.c").toString(), CLIENT.resolve("iopersist.c").toString());
    }

    /** Ends the C VMM's stdin, as its parent would, and expects it to exit 0 ({@code said}: its output, for the message). */
    private static void exits(final Process c, final String said) throws Exception {
        c.getOutputStream().close();
        assertTrue(c.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, c.exitValue(), said);
    }
}
