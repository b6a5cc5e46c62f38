package org.iopersist.kernel.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The object tree: lookup, errno on bad paths and writes, and a read-only mirror on disk. */
class SysfsTest {
    @TempDir
    Path tmp;

    @Test
    void attributesReadAndWriteThroughTheirOwners() {
        final Sysfs sysfs = new Sysfs();
        final AtomicReference<String> state = new AtomicReference<>("0");
        sysfs.add("/sys/kernel/kho", SysfsAttribute.readWrite("finalize", state::get, state::set));
        sysfs.add("/sys/kernel/kho", SysfsAttribute.readOnly("fdt", () -> "blob"));
        assertEquals("0\n", sysfs.read("/sys/kernel/kho/finalize"));
        sysfs.write("/sys/kernel/kho/finalize", "1\n");
        assertEquals("1\n", sysfs.read("/sys/kernel/kho/finalize"));
        assertEquals(List.of("fdt", "finalize"), sysfs.list("/sys/kernel/kho"));
        assertEquals(Errno.EPERM, assertThrows(KernelException.class,
                () -> sysfs.write("/sys/kernel/kho/fdt", "x")).errno());
        assertEquals(Errno.ENOENT, assertThrows(KernelException.class,
                () -> sysfs.read("/sys/kernel/kho/missing")).errno());
        assertEquals(Errno.EISDIR, assertThrows(KernelException.class,
                () -> sysfs.read("/sys/kernel/kho")).errno());
        assertEquals(Errno.ENOENT, assertThrows(KernelException.class, () -> sysfs.read("/proc/x")).errno());
        assertEquals(Errno.EINVAL, assertThrows(KernelException.class,
                () -> sysfs.read("/sys/kernel/../kernel/kho/fdt")).errno());
    }

    @Test
    void mirrorIsAReadOnlySnapshotThatFollowsRemovals() throws Exception {
        final Sysfs sysfs = new Sysfs();
        sysfs.add("/sys/kernel/iommufd_persisted/1", SysfsAttribute.readOnly("owner", () -> "0"));
        sysfs.add("/sys/kernel/kho", SysfsAttribute.readOnly("finalize", () -> "0"));
        final Path mirror = tmp.resolve("sys");
        sysfs.mirror(mirror);
        assertEquals("0\n", Files.readString(mirror.resolve("kernel/iommufd_persisted/1/owner")));
        assertFalse(Files.getPosixFilePermissions(mirror.resolve("kernel/kho/finalize"))
                .contains(java.nio.file.attribute.PosixFilePermission.OWNER_WRITE), "mirror files are read-only");
        sysfs.remove("/sys/kernel/iommufd_persisted/1");
        sysfs.mirror(mirror);
        assertFalse(Files.exists(mirror.resolve("kernel/iommufd_persisted/1")));
        assertTrue(Files.isDirectory(mirror.resolve("kernel/iommufd_persisted")));
    }
}
