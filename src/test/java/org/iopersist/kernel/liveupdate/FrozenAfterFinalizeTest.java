package org.iopersist.kernel.liveupdate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.ErrnoException;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.VfioDeviceHandle;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * After KHO finalize the handover is written: every change to what it describes (a persistent
 * context's objects, areas and options, guestmemfs files) is EBUSY, through the real syscall
 * path, until the finalize is aborted. A context that is not persistent is not frozen.
 */
class FrozenAfterFinalizeTest {
    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    @Test
    void everyChangeToPreservedStateIsEbusyUntilAbort() throws Exception {
        try (Machine m = Machine.create(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB)).start()) {
            Files.writeString(dir.resolve("m").resolve("boot").resolve("cmdline"), "guestmemfs=64M");
            final Kernel k = Kernel.boot(m.board());
            final SyscallServer server = k.serve(dir.resolve("k.sock"));
            try (KernelClient vmm = KernelClient.connect(server.path(), dir.resolve("m").resolve("memory"))) {
                final GuestRam ram = GuestRam.create(vmm, "ram", 16 * MIB);
                final GuestRam spare = GuestRam.create(vmm, "spare", 2 * MIB);
                final IommufdHandle p = IommufdHandle.open(vmm);
                p.makePersistent();
                final int ioas = p.ioasAlloc();
                final int empty = p.ioasAlloc();
                p.mapFixed(ioas, ram.va(), 4 * MIB, 0);
                final VfioDeviceHandle d0 = VfioDeviceHandle.open(vmm, 0);
                final int dev0 = d0.bind(p);
                d0.attach(ioas);
                final VfioDeviceHandle d1 = VfioDeviceHandle.open(vmm, 1);
                final int dev1 = d1.bind(p);
                final int spareHwpt = p.hwptAlloc(dev1, ioas);
                final IommufdHandle plain = IommufdHandle.open(vmm);
                final int plainIoas = plain.ioasAlloc();
                final long anon = vmm.mmapAnonymous(MIB);

                vmm.writeFile("/sys/kernel/kho/finalize", "1");
                final Map<String, Runnable> changes = new LinkedHashMap<>();
                changes.put("IOAS_MAP", () -> p.mapFixed(ioas, ram.va() + 4 * MIB, MIB, 8 * MIB));
                changes.put("IOAS_MAP_FILE", () -> p.mapFileFixed(ioas, ram.fd(), 4 * MIB, MIB, 8 * MIB));
                changes.put("IOAS_UNMAP", () -> p.unmap(ioas, 0, 4 * MIB));
                changes.put("IOAS_COPY", () -> p.copyFixed(ioas, 16 * MIB, ioas, 0, MIB));
                changes.put("IOAS_ALLOC", p::ioasAlloc);
                changes.put("IOAS_ALLOW_IOVAS", () -> p.allowIovas(empty, List.of(new IommufdHandle.AllowedRange(0, 64 * MIB - 1))));
                changes.put("HUGE_PAGES", () -> p.setHugePages(empty, false));
                changes.put("DESTROY", () -> p.destroy(empty));
                changes.put("HWPT_ALLOC", () -> p.hwptAlloc(dev1, ioas));
                changes.put("attach", () -> d1.attach(spareHwpt));
                changes.put("replace", () -> d0.attach(spareHwpt));
                changes.put("detach", d0::detach);
                changes.put("guestmemfs create", () -> vmm.open("/guestmemfs/new", Syscall.O_RDWR | Syscall.O_CREAT));
                changes.put("guestmemfs truncate", () -> vmm.ftruncate(spare.fd(), 4 * MIB));
                changes.put("guestmemfs unlink", () -> vmm.unlink("/guestmemfs/spare"));
                for (Map.Entry<String, Runnable> c : changes.entrySet()) {
                    assertEquals(Errno.EBUSY.number, assertThrows(ErrnoException.class, c.getValue()::run, c.getKey()).errno(),
                            c.getKey() + " after finalize");
                }
                // Nothing changed, and a context that is not persistent carries on.
                assertEquals(List.of(new IommufdHandle.AllowedRange(0, 0xfedfffffL), new IommufdHandle.AllowedRange(0xfef00000L, (1L << 48) - 1)),
                        p.iovaRanges(ioas));
                plain.map(plainIoas, anon, MIB);
                plain.ioasAlloc();

                vmm.writeFile("/sys/kernel/kho/finalize", "0");
                p.mapFixed(ioas, ram.va() + 4 * MIB, MIB, 8 * MIB);
                p.copyFixed(ioas, 16 * MIB, ioas, 0, MIB);
                assertEquals(MIB, p.unmap(ioas, 16 * MIB, MIB));
                p.allowIovas(empty, List.of(new IommufdHandle.AllowedRange(0, 64 * MIB - 1)));
                p.setHugePages(empty, false);
                p.destroy(empty);
                assertEquals(spareHwpt, d1.attach(spareHwpt));
                d0.detach();
                p.destroy(p.hwptAlloc(dev0, ioas));
                vmm.ftruncate(spare.fd(), 4 * MIB);
                vmm.close(vmm.open("/guestmemfs/new", Syscall.O_RDWR | Syscall.O_CREAT));
                vmm.unlink("/guestmemfs/new");
            }
            server.close();
        }
    }
}
