package org.iopersist.vmm;

import java.util.ArrayList;
import java.util.List;

import org.iopersist.uapi.Syscall;

/**
 * Guest RAM as a VMM keeps it for live update, mapped shared into the VMM: a guestmemfs file (the
 * RFC's way: it survives a kexec as a file, and a persistent iommufd maps it by VA), or a sealed
 * memfd (LUO's way: preserved in a session, and mapped for DMA with IOMMU_IOAS_MAP_FILE).
 *
 * <p>The guest-physical layout is QEMU's q35: the first 3 GiB of the file at GPA 0, and the rest
 * from GPA 4 GiB, leaving the hole below 4 GiB to MMIO and the interrupt window. Devices see guest
 * RAM at IOVA = GPA, so {@link #mapForDma} makes one IOAS area per region.
 */
public final class GuestRam implements AutoCloseable {
    /** F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK: what the IOMMU series asks of a memfd it preserves DMA into. */
    public static final int MEMFD_SEALS = Syscall.F_SEAL_SEAL | Syscall.F_SEAL_GROW | Syscall.F_SEAL_SHRINK;

    private final KernelClient client;
    private final String path;
    private final int fd;
    private final long va;
    private final long size;
    private final boolean memfd;

    /** Where q35 stops low RAM: the rest of RAM continues at {@link #HIGH_RAM_START}. */
    public static final long LOW_RAM_END = 3L << 30;
    public static final long HIGH_RAM_START = 4L << 30;

    /** {@code length} bytes of the file from {@code fileOffset}, at guest-physical {@code gpa}. */
    public record Region(long gpa, long fileOffset, long length) {
    }

    private GuestRam(final KernelClient client, final String path, final int fd, final long va, final long size,
            final boolean memfd) {
        this.client = client;
        this.path = path;
        this.fd = fd;
        this.va = va;
        this.size = size;
        this.memfd = memfd;
    }

    /** Creates {@code /guestmemfs/<name>} of {@code size} bytes (2 MiB multiples are best) and maps it. */
    public static GuestRam create(final KernelClient client, final String name, final long size) {
        final String path = "/guestmemfs/" + name;
        final int fd = client.open(path, Syscall.O_RDWR | Syscall.O_CREAT | Syscall.O_EXCL);
        client.ftruncate(fd, size);
        return new GuestRam(client, path, fd, map(client, fd, size), size, false);
    }

    /** A sealable memfd {@code name} of {@code size} bytes, sealed against growing, shrinking and new seals, mapped. */
    public static GuestRam createMemfd(final KernelClient client, final String name, final long size) {
        final int fd = client.memfdCreate(name, Syscall.MFD_ALLOW_SEALING);
        client.ftruncate(fd, size);
        client.fcntl(fd, Syscall.F_ADD_SEALS, MEMFD_SEALS);
        return new GuestRam(client, "memfd:" + name, fd, map(client, fd, size), size, true);
    }

    /** The memfd {@code fd} this process holds (one retrieved from a LUO session after a live update), mapped. */
    public static GuestRam ofMemfd(final KernelClient client, final int fd) {
        final long size = client.lseek(fd, 0, 2);
        client.lseek(fd, 0, 0);
        return new GuestRam(client, "memfd", fd, map(client, fd, size), size, true);
    }

    /** Opens and maps an existing file (after a live update, the RAM is still there). */
    public static GuestRam open(final KernelClient client, final String name) {
        final String path = "/guestmemfs/" + name;
        final int fd = client.open(path, Syscall.O_RDWR);
        final long size = client.stat(path)[1];
        return new GuestRam(client, path, fd, map(client, fd, size), size, false);
    }

    private static long map(final KernelClient client, final int fd, final long size) {
        return client.mmap(0, size, Syscall.PROT_READ | Syscall.PROT_WRITE, Syscall.MAP_SHARED, fd, 0);
    }

    public String path() {
        return path;
    }

    public int fd() {
        return fd;
    }

    /** Where the RAM is mapped in the VMM. */
    public long va() {
        return va;
    }

    public long size() {
        return size;
    }

    /** The file offset behind guest-physical {@code gpa}. @throws IllegalArgumentException in the hole or past RAM */
    public long fileOffsetOf(final long gpa) {
        final long off = gpa < LOW_RAM_END ? gpa : gpa - (HIGH_RAM_START - LOW_RAM_END);
        if ((gpa >= LOW_RAM_END && gpa < HIGH_RAM_START) || off >= size || gpa < 0) {
            throw new IllegalArgumentException(String.format("GPA 0x%x is not guest RAM", gpa));
        }
        return off;
    }

    /** Physical address of guest-physical {@code gpa} (through the VMM's own page tables). */
    public long physOf(final long gpa) {
        return client.memory().physOf(va + fileOffsetOf(gpa));
    }

    /**
     * The RAM in {@code pieces} equal parts of the file (each a multiple of 4 KiB), a part that
     * straddles 3 GiB cut in two at the hole: low RAM, then high RAM.
     */
    public List<Region> regions(final int pieces) {
        if (pieces < 1 || size % pieces != 0 || (size / pieces) % 4096 != 0) {
            throw new IllegalArgumentException(size + " bytes do not divide into " + pieces + " page-aligned pieces");
        }
        final long piece = size / pieces;
        final List<Region> out = new ArrayList<>();
        for (long off = 0; off < size; off += piece) {
            final long end = off + piece;
            if (off < LOW_RAM_END && end > LOW_RAM_END) {
                out.add(new Region(off, off, LOW_RAM_END - off));
                out.add(new Region(HIGH_RAM_START, LOW_RAM_END, end - LOW_RAM_END));
            } else {
                out.add(new Region(off < LOW_RAM_END ? off : off + HIGH_RAM_START - LOW_RAM_END, off, piece));
            }
        }
        return out;
    }

    /** Whether the RAM is a memfd (else a guestmemfs file). */
    public boolean memfd() {
        return memfd;
    }

    /**
     * Maps all of guest RAM for DMA in {@code ioas} at IOVA = GPA, in {@code pieces} areas (or one
     * more): a guestmemfs file by its mapping's VA (IOMMU_IOAS_MAP), a memfd by fd and offset
     * (IOMMU_IOAS_MAP_FILE), so the mapping does not depend on this process's address space.
     */
    public List<Region> mapForDma(final IommufdHandle iommufd, final int ioas, final int pieces) {
        final List<Region> regions = regions(pieces);
        for (Region r : regions) {
            if (memfd) {
                iommufd.mapFileFixed(ioas, fd, r.fileOffset(), r.length(), r.gpa());
            } else {
                iommufd.mapFixed(ioas, va + r.fileOffset(), r.length(), r.gpa());
            }
        }
        return regions;
    }

    @Override
    public void close() {
        client.munmap(va, size);
        client.close(fd);
    }
}
