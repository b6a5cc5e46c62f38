package org.iopersist.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.LatencySummary;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.Kernel;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.vmm.Iommufd;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDevice;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The most complete run so far: a machine, a kernel booted on it, and a VMM that talks to the
 * kernel over the syscall socket. The VMM maps guest RAM into an IOAS at guest-physical IOVAs,
 * binds and attaches both devices through their VFIO cdevs, programs their workloads through the
 * BARs, and afterwards a CPU-side checker finds every record where the tables put it.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Boot a kernel on a machine and run device DMA for a VMM through iommufd.")
final class Demo implements Callable<Integer> {
    private static final long MIB = 1L << 20;

    @Option(names = "--dir", description = "machine directory (default: a new temporary one)")
    private Path dir;

    @Option(names = "--seconds", description = "how long the devices run (default: ${DEFAULT-VALUE})")
    private double seconds = 1.0;

    @Option(names = "--guest-ram", description = "guest RAM in MiB (default: ${DEFAULT-VALUE})")
    private long guestRamMib = 64;

    @Override
    public Integer call() throws Exception {
        if (seconds <= 0 || seconds > 3600) {
            throw new IllegalArgumentException("--seconds must be in (0, 3600]");
        }
        if (guestRamMib < 4 || guestRamMib > 512) {
            throw new IllegalArgumentException("--guest-ram must be 4..512 MiB");
        }
        final Path machineDir = dir != null ? dir : Files.createTempDirectory("iopersist-demo");
        try {
            return run(machineDir);
        } finally {
            if (dir == null) {
                SelfCheck.deleteTree(machineDir);
            }
        }
    }

    private int run(final Path machineDir) throws Exception {
        final MachineConfig config = MachineConfig.small();
        try (Machine machine = Machine.create(machineDir, config).start()) {
            System.out.printf("machine  %s: %d MiB, %d VT-d unit, devices %s%n", machineDir, config.memorySize() >> 20,
                    config.units().size(), config.devices().stream().map(d -> d.bdf().toString()).toList());
            final Kernel kernel = Kernel.boot(machine.board());
            System.out.printf("kernel   booted (%s: %s), %d frames free%n", kernel.bootKind().name().toLowerCase(java.util.Locale.ROOT),
                    kernel.coldBootReason(), kernel.frames().stats().freeFrames());
            try (SyscallServer server = kernel.serve(machineDir.resolve("kernel.sock"));
                 KernelClient vmm = KernelClient.connect(server.path(), machineDir.resolve("memory"))) {
                final long ramBytes = guestRamMib * MIB;
                final long ramVa = vmm.mmapAnonymous(ramBytes);
                final Iommufd iommufd = Iommufd.open(vmm);
                final int ioas = iommufd.ioasAlloc();
                iommufd.mapFixed(ioas, ramVa, ramBytes, 0);
                System.out.printf("vmm      pid %d: guest RAM %d MiB at va 0x%x, IOAS %d maps it at IOVA 0%n", vmm.pid(),
                        guestRamMib, ramVa, ioas);
                final DeviceBar[] bars = new DeviceBar[config.devices().size()];
                final WorkloadSettings[] work = new WorkloadSettings[bars.length];
                for (int i = 0; i < bars.length; i++) {
                    final VfioDevice dev = VfioDevice.open(vmm, i);
                    final int devId = dev.bind(iommufd);
                    final int hwpt = dev.attach(ioas);
                    bars[i] = new DeviceBar(machine.board().deviceBar(i));
                    work[i] = WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1);
                    bars[i].start(work[i]);
                    System.out.printf("device   vfio%d %s: dev_id %d, hwpt %d, window [0x%x, +1 MiB)%n", i,
                            config.devices().get(i).bdf(), devId, hwpt, work[i].iovaBase());
                }
                final List<Iommufd.IovaRange> ranges = iommufd.iovaRanges(ioas);
                System.out.printf("ioas     usable IOVA: %s%n", ranges.stream()
                        .map(r -> String.format("[0x%x, 0x%x]", r.start(), r.last())).toList());
                Thread.sleep((long) (seconds * 1000));
                int problems = 0;
                final RecordChecker checker = new RecordChecker(machine.board().memory());
                for (int i = 0; i < bars.length; i++) {
                    bars[i].stop();
                    final DeviceCounters c = bars[i].counters();
                    final LatencySummary lat = bars[i].latency();
                    final RecordChecker.Report r = checker.check(bars[i].window(), iova -> vmm.memory().physOf(ramVa + iova));
                    System.out.printf("device   vfio%d: %d records, %d faults, %d corrupt, p50 %d ns, p99 %d ns; checker: %s%n", i,
                            c.ops(), c.faults(), c.corrupt(), lat.p50(), lat.p99(), r.clean() ? "every record in place" : r);
                    problems += c.faults() + c.corrupt() + (r.clean() ? 0 : 1) > 0 ? 1 : 0;
                }
                System.out.println(problems == 0 ? "demo: ok" : "demo: " + problems + " devices saw problems");
                return problems == 0 ? 0 : 1;
            }
        }
    }
}
