package org.iopersist.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommufd.persist.IommufdHandover;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.testing.Handovers;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;

/**
 * Live updates back to back on one machine, as the demo does them: the VMM finalizes, kexec_load
 * and reboot(KEXEC); the next kernel boots from the handover; a restarted VMM reopens its iommufd
 * through sysfs, binds both devices again and reopens guest RAM. Two devices write and verify
 * records the whole time, one every 100 µs each. Each phase goes into a histogram; the first updates warm the JVM.
 */
final class LiveUpdateBench {
    private static final long MIB = 1L << 20;
    static final long PACE_NANOS = 100_000;

    /** Guest RAM on guestmemfs, mapped into the persistent IOAS as {@code areas} equal areas. */
    record Scenario(long guestRamMib, int areas) {
        String label() {
            return (guestRamMib >= 1024 ? guestRamMib / 1024 + " GiB" : guestRamMib + " MiB") + ", " + areas
                    + (areas == 1 ? " area" : " areas");
        }
    }

    /** Milliseconds at p50 and max of each phase, and what held. */
    record Result(Scenario scenario, int updates, double rebuildMapMs, Phase finalizing, Phase kexec, Phase boot,
                  Phase reopen, Phase blackout, long khoTreeBytes, long iommufdBlobBytes, long faults, long corrupt,
                  boolean recordsInPlace, double longestDmaGapMs) {
    }

    record Phase(double p50Ms, double p90Ms, double maxMs) {
        static Phase of(final Histogram h) {
            return new Phase(h.getValueAtPercentile(50) / 1e6, h.getValueAtPercentile(90) / 1e6, h.getMaxValue() / 1e6);
        }
    }

    private LiveUpdateBench() {
    }

    static Result run(final Path work, final Scenario s, final int warmup, final int measured) throws Exception {
        final long guestBytes = s.guestRamMib() * MIB;
        final String cmdline = "guestmemfs=" + (s.guestRamMib() + 64) + "M liveupdate.finish_timeout=0";
        final MachineConfig config = MachineConfig.small().withMemorySize(guestBytes + 1024 * MIB);
        final Histogram finalize = new Histogram(3);
        final Histogram kexec = new Histogram(3);
        final Histogram boot = new Histogram(3);
        final Histogram reopen = new Histogram(3);
        final Histogram blackout = new Histogram(3);
        long treeBytes = 0;
        long blobBytes = 0;
        try (Machine machine = Machine.create(work.resolve("m"), config).start()) {
            Files.writeString(work.resolve("m").resolve("boot").resolve("cmdline"), cmdline);
            Kernel kernel = Kernel.boot(machine.board());
            SyscallServer server = kernel.serve(work.resolve("k0.sock"));
            KernelClient vmm = KernelClient.connect(server.path(), work.resolve("m").resolve("memory"));
            final GuestRam ram = GuestRam.create(vmm, "vm0-ram", guestBytes);
            IommufdHandle iommufd = IommufdHandle.open(vmm);
            final int pid = (int) iommufd.makePersistent();
            final int ioas = iommufd.ioasAlloc();
            final DeviceBar[] bars = new DeviceBar[2];
            for (int i = 0; i < bars.length; i++) {
                final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, i);
                dev.bind(iommufd);
                dev.attach(ioas);
            }
            ram.mapForDma(iommufd, ioas, s.areas());
            for (int i = 0; i < bars.length; i++) {
                bars[i] = new DeviceBar(machine.board().deviceBar(i));
                // Paced at 10 k records/s: real devices do not take a host CPU, and this machine has two.
                bars[i].start(WorkloadSettings.writeVerify((1 + i) * MIB, MIB, 512, 1 + i).withPace(PACE_NANOS));
                bars[i].awaitSeq(100);
            }
            final String node = Iommufd.persistedNode(pid);
            GuestRam current = ram;
            for (int u = 0; u < warmup + measured; u++) {
                final Kernel old = kernel;
                final long t0 = System.nanoTime();
                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                final long t1 = System.nanoTime();
                vmm.kexecLoad(cmdline);
                vmm.rebootKexec();
                if (!old.liveUpdate().awaitKexec(10, TimeUnit.SECONDS)) {
                    throw new IllegalStateException("update " + u + ": the kexec did not happen");
                }
                final long t2 = System.nanoTime();
                kernel = Kernel.boot(machine.board());
                final long t3 = System.nanoTime();
                if (kernel.bootKind() != Kernel.BootKind.LIVE_UPDATE) {
                    throw new IllegalStateException("update " + u + " cold-booted: " + kernel.coldBootReason());
                }
                vmm.close();
                server = kernel.serve(work.resolve("k" + (u + 1) + ".sock"));
                vmm = KernelClient.connect(server.path(), work.resolve("m").resolve("memory"));
                iommufd = IommufdHandle.of(vmm, vmm.open(node, Syscall.O_RDWR));
                for (int i = 0; i < bars.length; i++) {
                    VfioDeviceHandle.open(vmm, i).bind(iommufd);
                }
                current = GuestRam.open(vmm, "vm0-ram");
                final long t4 = System.nanoTime();
                if (u >= warmup) {
                    finalize.recordValue(t1 - t0);
                    kexec.recordValue(t2 - t1);
                    boot.recordValue(t3 - t2);
                    reopen.recordValue(t4 - t3);
                    blackout.recordValue(t4 - t0);
                }
                if (u == 0) {
                    blobBytes = Handovers.subtree(machine.board(), IommufdHandover.NAME).segment().byteSize();
                    treeBytes = kernel.liveUpdate().incoming().setup().fdtSize();
                }
            }
            long faults = 0;
            long corrupt = 0;
            long gap = 0;
            boolean clean = true;
            final RecordChecker checker = new RecordChecker(machine.board().memory());
            for (DeviceBar bar : bars) {
                bar.stop();
                final DeviceCounters c = bar.counters();
                faults += c.faults();
                corrupt += c.corrupt();
                gap = Math.max(gap, c.maxGapNanos());
                clean &= checker.check(bar.window(), current::physOf).clean();
            }
            // With the devices stopped: what rebuilding the mappings would cost a warm kernel (the
            // alternative to adopting them), as the p50 of a few full unmap-and-map cycles.
            final Histogram rebuild = new Histogram(3);
            final int rebuildIoas = iommufd.ioasAlloc();
            for (int k = 0; k < 7; k++) {
                final long r0 = System.nanoTime();
                current.mapForDma(iommufd, rebuildIoas, s.areas());
                rebuild.recordValue(System.nanoTime() - r0);
                iommufd.unmap(rebuildIoas, 0, -1L);
            }
            vmm.close();
            server.close();
            return new Result(s, measured, rebuild.getValueAtPercentile(50) / 1e6, Phase.of(finalize), Phase.of(kexec), Phase.of(boot),
                    Phase.of(reopen), Phase.of(blackout), treeBytes, blobBytes, faults, corrupt, clean, gap / 1e6);
        }
    }

    static List<Result> runAll(final Path work, final List<Scenario> scenarios, final int warmup, final int measured)
            throws Exception {
        final List<Result> out = new ArrayList<>();
        for (Scenario s : scenarios) {
            final Path dir = Files.createDirectories(work.resolve("lu-" + s.guestRamMib() + "-" + s.areas()));
            System.out.printf("live update: %s ...%n", s.label());
            final Result r = run(dir, s, warmup, measured);
            System.out.printf("live update: %s: blackout p50 %.1f ms, boot p50 %.1f ms, %d faults%n", s.label(),
                    r.blackout().p50Ms(), r.boot().p50Ms(), r.faults());
            out.add(r);
            Bench.deleteTree(dir);
        }
        return out;
    }
}
