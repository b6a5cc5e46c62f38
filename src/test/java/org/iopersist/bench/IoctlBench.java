package org.iopersist.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import org.HdrHistogram.Histogram;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;

/**
 * The uAPI as a VMM sees it: ioctls over the syscall socket into a booted kernel, a device
 * attached so every map pins and fills a VT-d domain and every unmap invalidates the IOTLB.
 */
final class IoctlBench {
    private static final long MIB = 1L << 20;

    /** Microseconds at p50, p99 and max for each call measured. */
    record Result(String call, long samples, double p50Us, double p99Us, double maxUs) {
        static Result of(final String call, final Histogram h) {
            return new Result(call, h.getTotalCount(), h.getValueAtPercentile(50) / 1e3, h.getValueAtPercentile(99) / 1e3,
                    h.getMaxValue() / 1e3);
        }
    }

    private IoctlBench() {
    }

    static java.util.List<Result> run(final Path work, final int warmup, final int samples) throws Exception {
        try (Machine machine = Machine.create(work.resolve("m"), MachineConfig.small().withMemorySize(1024 * MIB)).start()) {
            Files.writeString(work.resolve("m").resolve("boot").resolve("cmdline"), "guestmemfs=128M");
            final Kernel kernel = Kernel.boot(machine.board());
            try (SyscallServer server = kernel.serve(work.resolve("k.sock"));
                 KernelClient vmm = KernelClient.connect(server.path(), work.resolve("m").resolve("memory"))) {
                final GuestRam ram = GuestRam.create(vmm, "ram", 64 * MIB);
                final IommufdHandle iommufd = IommufdHandle.open(vmm);
                iommufd.makePersistent();
                final int ioas = iommufd.ioasAlloc();
                final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, 0);
                dev.bind(iommufd);
                dev.attach(ioas);
                final Histogram ranges = new Histogram(3);
                final Histogram map2m = new Histogram(3);
                final Histogram unmap2m = new Histogram(3);
                final Histogram map64m = new Histogram(3);
                final Histogram unmap64m = new Histogram(3);
                for (int i = 0; i < warmup + samples; i++) {
                    final boolean keep = i >= warmup;
                    long t = System.nanoTime();
                    iommufd.iovaRanges(ioas);
                    record(keep, ranges, t);
                    t = System.nanoTime();
                    iommufd.mapFixed(ioas, ram.va(), 2 * MIB, 0);
                    record(keep, map2m, t);
                    t = System.nanoTime();
                    iommufd.unmap(ioas, 0, 2 * MIB);
                    record(keep, unmap2m, t);
                    if (i % 8 == 0) {
                        t = System.nanoTime();
                        iommufd.mapFixed(ioas, ram.va(), 64 * MIB, 0);
                        record(keep, map64m, t);
                        t = System.nanoTime();
                        iommufd.unmap(ioas, 0, 64 * MIB);
                        record(keep, unmap64m, t);
                    }
                }
                return java.util.List.of(Result.of("IOMMU_IOAS_IOVA_RANGES (a round trip, no work)", ranges),
                        Result.of("IOMMU_IOAS_MAP 2 MiB of guestmemfs (pin + 1 leaf)", map2m),
                        Result.of("IOMMU_IOAS_UNMAP 2 MiB (+ IOTLB invalidation, wait)", unmap2m),
                        Result.of("IOMMU_IOAS_MAP 64 MiB of guestmemfs (pin + 32 leaves)", map64m),
                        Result.of("IOMMU_IOAS_UNMAP 64 MiB (+ IOTLB invalidation, wait)", unmap64m));
            }
        }
    }

    private static void record(final boolean keep, final Histogram h, final long start) {
        if (keep) {
            h.recordValue(System.nanoTime() - start);
        }
    }
}
