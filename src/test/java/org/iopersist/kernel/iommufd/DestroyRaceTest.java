package org.iopersist.kernel.iommufd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.guestmemfs.Guestmemfs;
import org.iopersist.kernel.syscall.Syscalls;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.IommuDestroy;
import org.iopersist.uapi.IommuIoasMap;
import org.iopersist.uapi.IommuIoasUnmap;
import org.iopersist.uapi.Iommufd;
import org.iopersist.uapi.Syscall;
import org.junit.jupiter.api.Test;

/**
 * IOMMU_DESTROY racing IOAS_MAP/UNMAP on the same IOAS, from two threads of one process: the map
 * holds a short-term reference from its lookup to its return (iommufd_get_object/put_object), so a
 * DESTROY in between answers EBUSY instead of freeing the IOAS under it. A DESTROY that wins leaves
 * nothing behind: the guestmemfs pins every area takes all go, and later maps find no IOAS.
 */
class DestroyRaceTest extends IommufdDomainFixture {
    private static final long MIB = 1L << 20;
    private static final int ROUNDS = 200;

    @Override
    String cmdline() {
        return "guestmemfs=32M";
    }

    /** One thread's ioctl argument, in the process's memory, issued straight into the kernel. */
    private static final class Caller {
        private final Syscalls sys;
        private final UserProcess p;
        private final int iommufd;
        private final long va;

        Caller(final Syscalls sys, final UserProcess p, final int iommufd, final long va) {
            this.sys = sys;
            this.p = p;
            this.iommufd = iommufd;
            this.va = va;
        }

        long ioctl(final int cmd, final MemorySegment s) {
            p.mm().copyToUser(va, s, 0, s.byteSize());
            final long ret = sys.call(p, Syscall.IOCTL, iommufd, cmd, va, 0, 0, 0);
            p.mm().copyFromUser(va, s, 0, s.byteSize());
            return ret;
        }
    }

    @Test
    void destroyRacingMapIsEitherBusyOrLeavesNothing() throws Exception {
        final Guestmemfs fs = rig.kernel.guestmemfs();
        final int f = c.open("/guestmemfs/ram", Syscall.O_RDWR | Syscall.O_CREAT);
        c.ftruncate(f, 4 * MIB);
        final long ram = c.mmap(0, 4 * MIB, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, f, 0);
        final UserProcess p = server.process(c.pid());
        final long args = c.mmapAnonymous(2 * PAGE);
        final Caller mapper = new Caller(rig.kernel.syscalls(), p, fd, args);
        final Caller destroyer = new Caller(rig.kernel.syscalls(), p, fd, args + PAGE);
        final long pinnedBefore = p.pinnedPages();
        final AtomicInteger busy = new AtomicInteger();
        final AtomicInteger mapsDone = new AtomicInteger();
        final ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();

        for (int round = 0; round < ROUNDS && failures.isEmpty(); round++) {
            final int victim = ioasAlloc(); // no device: only the table and short-term lookups hold it
            final AtomicBoolean destroyed = new AtomicBoolean();
            final Thread mapThread = Thread.ofPlatform().name("map").start(() -> {
                try {
                    final MemorySegment map = struct(IommuIoasMap.LAYOUT);
                    final MemorySegment unmap = struct(IommuIoasUnmap.LAYOUT);
                    while (true) {
                        IommuIoasMap.flags(map, Iommufd.IOMMU_IOAS_MAP_FIXED_IOVA | Iommufd.IOMMU_IOAS_MAP_READABLE
                                | Iommufd.IOMMU_IOAS_MAP_WRITEABLE);
                        IommuIoasMap.ioasId(map, victim);
                        IommuIoasMap.userVa(map, ram);
                        IommuIoasMap.length(map, 4 * MIB);
                        IommuIoasMap.iova(map, 16 * MIB);
                        final long mapped = mapper.ioctl(Iommufd.IOMMU_IOAS_MAP, map);
                        if (mapped == -Errno.ENOENT.number) {
                            return; // the IOAS is gone: DESTROY won
                        }
                        assertEquals(0, mapped, "map");
                        mapsDone.incrementAndGet();
                        IommuIoasUnmap.ioasId(unmap, victim);
                        IommuIoasUnmap.iova(unmap, 16 * MIB);
                        IommuIoasUnmap.length(unmap, 4 * MIB);
                        final long unmapped = mapper.ioctl(Iommufd.IOMMU_IOAS_UNMAP, unmap);
                        if (unmapped == -Errno.ENOENT.number) {
                            return; // DESTROY won between the map and the unmap; it unmapped the area
                        }
                        assertEquals(0, unmapped, "unmap");
                    }
                } catch (Throwable t) {
                    failures.add(t);
                }
            });
            final Thread destroyThread = Thread.ofPlatform().name("destroy").start(() -> {
                try {
                    final MemorySegment d = struct(IommuDestroy.LAYOUT);
                    while (true) {
                        IommuDestroy.id(d, victim);
                        final long ret = destroyer.ioctl(Iommufd.IOMMU_DESTROY, d);
                        if (ret == 0) {
                            destroyed.set(true);
                            return;
                        }
                        assertEquals(-Errno.EBUSY.number, ret, "a DESTROY that loses finds the IOAS busy");
                        busy.incrementAndGet();
                    }
                } catch (Throwable t) {
                    failures.add(t);
                }
            });
            destroyThread.join(30_000);
            mapThread.join(30_000);
            assertTrue(failures.isEmpty(), () -> "round: " + failures.peek());
            assertTrue(destroyed.get(), "the mapper saw ENOENT only because DESTROY succeeded");
            assertEquals(0, fs.pinsAt("ram", 0), "no area outlived the IOAS: its pins are all gone");
            assertEquals(0, fs.pinsAt("ram", 2 * MIB));
            assertEquals(pinnedBefore, p.pinnedPages(), "no pages stay charged");
        }
        assertTrue(failures.isEmpty(), () -> String.valueOf(failures.peek()));
        assertEquals(Errno.ENOENT, err(map(ioasId + 1000, ram, 4 * MIB, 16 * MIB, true)));
        assertTrue(mapsDone.get() > 0, "maps ran");
        System.out.printf("destroy race: %d rounds, %d maps, %d EBUSY%n", ROUNDS, mapsDone.get(), busy.get());
        c.munmap(ram, 4 * MIB);
        c.close(f);
        c.unlink("/guestmemfs/ram");
    }
}
