package org.iopersist.kernel.fs;

import java.util.function.Supplier;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * An attribute file. {@code show} renders its contents (ending in a newline, as sysfs does);
 * {@code store}, if present, takes a write. Its mode and owner are checked at open, as sysfs does:
 * a read-only attribute is 0444, a writable one 0644, both root's, unless made with another
 * {@link Permission}; opening a read-only attribute for writing is EACCES for everyone.
 *
 * @param name       file name
 * @param show       renders the current value
 * @param store      handles a write, or null for a read-only attribute
 * @param permission mode and owner, checked at open
 * @param binary     the contents are bytes (one char per byte, ISO-8859-1), read as they are, no newline
 */
public record SysfsAttribute(String name, Supplier<String> show, Store store, Permission permission, boolean binary)
        implements SysfsNode {

    /** A write handler; throws {@link KernelException} with the errno the writer gets. */
    @FunctionalInterface
    public interface Store {
        void store(String value);
    }

    public static SysfsAttribute readOnly(final String name, final Supplier<String> show) {
        return new SysfsAttribute(name, show, null, Permission.root(0444), false);
    }

    /** A read-only binary attribute (as sysfs bin_attribute), e.g. a handover blob; root-only (0400) unless said. */
    public static SysfsAttribute binary(final String name, final Supplier<byte[]> bytes) {
        return new SysfsAttribute(name, () -> new String(bytes.get(), java.nio.charset.StandardCharsets.ISO_8859_1), null,
                Permission.root(0400), true);
    }

    /** This attribute with another mode and owner. */
    public SysfsAttribute withPermission(final Permission p) {
        return new SysfsAttribute(name, show, store, p, binary);
    }

    /** The contents as the bytes a read returns. */
    public byte[] bytes() {
        return binary ? show.get().getBytes(java.nio.charset.StandardCharsets.ISO_8859_1)
                : read().getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    public static SysfsAttribute readWrite(final String name, final Supplier<String> show, final Store store) {
        return new SysfsAttribute(name, show, store, Permission.root(0644), false);
    }

    public boolean writable() {
        return store != null;
    }

    public String read() {
        final String s = show.get();
        if (binary) {
            return s;
        }
        return s.endsWith("\n") ? s : s + "\n";
    }

    public void write(final String value) {
        if (store == null) {
            throw new KernelException(Errno.EPERM, "sysfs attribute " + name + " is read-only");
        }
        store.store(value.strip());
    }
}
