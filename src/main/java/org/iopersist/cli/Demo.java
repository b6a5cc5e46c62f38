package org.iopersist.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.Kernel;
import org.iopersist.kernel.iommufd.PersistentContexts;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.Iommufd;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDevice;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The live update, end to end: a VMM puts guest RAM on guestmemfs, makes its iommufd persistent,
 * and lets two devices DMA into the guest; the kernel finalizes and kexecs into a new one while the
 * devices keep running on the preserved VT-d tables; a restarted VMM reopens its iommufd through
 * sysfs and rebinds its devices; then a CPU-side checker finds every record where it belongs.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Live-update a kernel under a VMM whose devices keep doing DMA.")
final class Demo implements Callable<Integer> {
    private static final long MIB = 1L << 20;

    @Option(names = "--dir", description = "machine directory (default: a new temporary one)")
    private Path dir;

    @Option(names = "--seconds", description = "how long the devices run before and after the update (default: ${DEFAULT-VALUE})")
    private double seconds = 0.5;

    @Option(names = "--guest-ram", description = "guest RAM in MiB (default: ${DEFAULT-VALUE})")
    private long guestRamMib = 64;

    @Option(names = "--console", description = "print both kernels' logs, with timestamps")
    private boolean console;

    @Override
    public Integer call() throws Exception {
        if (seconds <= 0 || seconds > 3600) {
            throw new IllegalArgumentException("--seconds must be in (0, 3600]");
        }
        if (guestRamMib < 4 || guestRamMib > 256) {
            throw new IllegalArgumentException("--guest-ram must be 4..256 MiB");
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

    private static void consoleLine(final String line) {
        System.out.println("  console " + line);
    }

    private int run(final Path machineDir) throws Exception {
        final MachineConfig config = MachineConfig.small();
        final String cmdline = "guestmemfs=256M liveupdate.finish_timeout=30";
        try (Machine machine = Machine.create(machineDir, config).start()) {
            Files.writeString(machineDir.resolve("boot").resolve("cmdline"), cmdline);
            System.out.printf("machine  %s: %d MiB, %d VT-d unit, devices %s%n", machineDir, config.memorySize() >> 20,
                    config.units().size(), config.devices().stream().map(d -> d.bdf().toString()).toList());
            final Kernel old = Kernel.boot(machine.board(), console ? Demo::consoleLine : null);
            System.out.printf("kernel 1 booted (%s), cmdline \"%s\"%n", old.coldBootReason(), cmdline);

            // The VMM before the update.
            final SyscallServer server1 = old.serve(machineDir.resolve("kernel1.sock"));
            final KernelClient vmm1 = KernelClient.connect(server1.path(), machineDir.resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm1, "vm0-ram", guestRamMib * MIB);
            final Iommufd iommufd = Iommufd.open(vmm1);
            final int pid = (int) iommufd.makePersistent();
            final int ioas = iommufd.ioasAlloc();
            iommufd.mapFixed(ioas, ram.va(), ram.size(), 0);
            final DeviceBar[] bars = new DeviceBar[config.devices().size()];
            final int[] devIds = new int[bars.length];
            for (int i = 0; i < bars.length; i++) {
                final VfioDevice dev = VfioDevice.open(vmm1, i);
                devIds[i] = dev.bind(iommufd);
                dev.attach(ioas);
                bars[i] = new DeviceBar(machine.board().deviceBar(i));
                bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i));
            }
            System.out.printf("vmm 1    guest RAM /guestmemfs/vm0-ram (%d MiB) at IOVA 0, persistent iommufd %d, "
                    + "devices bound (dev_id %d, %d) and running%n", guestRamMib, pid, devIds[0], devIds[1]);
            Thread.sleep((long) (seconds * 1000));
            final long[] before = new long[bars.length];
            for (int i = 0; i < bars.length; i++) {
                before[i] = bars[i].counters().ops();
            }

            // The update: finalize, kexec_load, reboot(KEXEC). The VMM's connection ends with the kernel.
            final long t0 = System.nanoTime();
            vmm1.writeFile("/sys/kernel/kho/finalize", "1");
            final long cmd = vmm1.scratch() + 2048;
            vmm1.memory().writeBytes(cmd, (cmdline + "\0").getBytes(java.nio.charset.StandardCharsets.UTF_8));
            vmm1.syscall(Syscall.KEXEC_LOAD, cmd);
            try {
                vmm1.syscall(Syscall.REBOOT, Syscall.LINUX_REBOOT_MAGIC1, Syscall.LINUX_REBOOT_MAGIC2,
                        Syscall.LINUX_REBOOT_CMD_KEXEC);
            } catch (RuntimeException e) {
                // reboot(KEXEC) does not return: the old kernel is gone.
            }
            if (!old.liveUpdate().awaitKexec(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("the kexec did not happen");
            }
            final long t1 = System.nanoTime();
            final Kernel next = Kernel.boot(machine.board(), console ? Demo::consoleLine : null);
            final long t2 = System.nanoTime();
            System.out.printf("kexec    finalize + kexec %.1f ms; kernel 2 booted from the handover (%s) in %.1f ms%n",
                    (t1 - t0) / 1e6, next.bootKind().name().toLowerCase(java.util.Locale.ROOT), (t2 - t1) / 1e6);

            // The restarted VMM: reopen the iommufd through sysfs, rebind the devices, reopen guest RAM.
            try (SyscallServer server2 = next.serve(machineDir.resolve("kernel2.sock"));
                 KernelClient vmm2 = KernelClient.connect(server2.path(), machineDir.resolve("memory"))) {
                final String node = PersistentContexts.SYSFS_DIR + "/" + pid + "/iommufd";
                final Iommufd reopened = Iommufd.of(vmm2, vmm2.open(node, Syscall.O_RDWR));
                final int[] again = new int[bars.length];
                for (int i = 0; i < bars.length; i++) {
                    again[i] = VfioDevice.open(vmm2, i).bind(reopened);
                }
                final GuestRam ram2 = GuestRam.open(vmm2, "vm0-ram");
                System.out.printf("vmm 2    reopened %s (persistent id %d), devices rebound with dev_id %d, %d%n", node,
                        reopened.persistentId(), again[0], again[1]);
                Thread.sleep((long) (seconds * 1000));
                int problems = 0;
                final RecordChecker checker = new RecordChecker(machine.board().memory());
                for (int i = 0; i < bars.length; i++) {
                    bars[i].stop();
                    final DeviceCounters c = bars[i].counters();
                    final RecordChecker.Report r = checker.check(bars[i].window(), ram2::physOf);
                    System.out.printf("device   vfio%d: %d records (%d after the update), %d faults, %d corrupt, "
                            + "longest DMA gap %.2f ms; checker: %s%n", i, c.ops(), c.ops() - before[i], c.faults(), c.corrupt(),
                            c.maxGapNanos() / 1e6, r.clean() ? "every record in place" : r);
                    problems += c.faults() + c.corrupt() > 0 || !r.clean() || again[i] != devIds[i] ? 1 : 0;
                }
                System.out.println(problems == 0 ? "demo: ok" : "demo: " + problems + " devices saw problems");
                return problems == 0 ? 0 : 1;
            }
        }
    }
}
