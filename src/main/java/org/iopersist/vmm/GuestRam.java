package org.iopersist.vmm;

import org.iopersist.uapi.Syscall;

/**
 * Guest RAM as a VMM keeps it for live update: a guestmemfs file, mapped shared into the VMM, so
 * it survives a kexec and a persistent iommufd may map it.
 */
public final class GuestRam implements AutoCloseable {
    private final KernelClient client;
    private final String path;
    private final int fd;
    private final long va;
    private final long size;

    private GuestRam(final KernelClient client, final String path, final int fd, final long va, final long size) {
        this.client = client;
        this.path = path;
        this.fd = fd;
        this.va = va;
        this.size = size;
    }

    /** Creates {@code /guestmemfs/<name>} of {@code size} bytes (2 MiB multiples are best) and maps it. */
    public static GuestRam create(final KernelClient client, final String name, final long size) {
        final String path = "/guestmemfs/" + name;
        final int fd = client.open(path, Syscall.O_RDWR | Syscall.O_CREAT | Syscall.O_EXCL);
        client.ftruncate(fd, size);
        return new GuestRam(client, path, fd, map(client, fd, size), size);
    }

    /** Opens and maps an existing file (after a live update, the RAM is still there). */
    public static GuestRam open(final KernelClient client, final String name) {
        final String path = "/guestmemfs/" + name;
        final int fd = client.open(path, Syscall.O_RDWR);
        final long size = client.stat(path)[1];
        return new GuestRam(client, path, fd, map(client, fd, size), size);
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

    /** Physical address of guest-physical {@code gpa} (through the VMM's own page tables). */
    public long physOf(final long gpa) {
        return client.memory().physOf(va + gpa);
    }

    @Override
    public void close() {
        client.munmap(va, size);
        client.close(fd);
    }
}
