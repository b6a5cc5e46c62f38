package org.iopersist.kernel.fs;

import java.util.function.Supplier;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * An attribute file. {@code show} renders its contents (ending in a newline, as sysfs does);
 * {@code store}, if present, takes a write. A write to a read-only attribute is EACCES at open in
 * Linux (mode 0444); here it is EPERM at write, since the model has no modes per file yet.
 *
 * @param name  file name
 * @param show  renders the current value
 * @param store handles a write, or null for a read-only attribute
 * @param ownerUid the uid allowed to open it besides root, or -1 for anyone
 * @param binary   the contents are bytes (one char per byte, ISO-8859-1), read as they are, no newline
 */
public record SysfsAttribute(String name, Supplier<String> show, Store store, int ownerUid, boolean binary) implements SysfsNode {

    /** A write handler; throws {@link KernelException} with the errno the writer gets. */
    @FunctionalInterface
    public interface Store {
        void store(String value);
    }

    public static SysfsAttribute readOnly(final String name, final Supplier<String> show) {
        return new SysfsAttribute(name, show, null, -1, false);
    }

    /** A read-only binary attribute (as sysfs bin_attribute), e.g. a handover blob. */
    public static SysfsAttribute binary(final String name, final Supplier<byte[]> bytes) {
        return new SysfsAttribute(name, () -> new String(bytes.get(), java.nio.charset.StandardCharsets.ISO_8859_1), null, -1, true);
    }

    /** The contents as the bytes a read returns. */
    public byte[] bytes() {
        return binary ? show.get().getBytes(java.nio.charset.StandardCharsets.ISO_8859_1)
                : read().getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    public static SysfsAttribute readWrite(final String name, final Supplier<String> show, final Store store) {
        return new SysfsAttribute(name, show, store, -1, false);
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
