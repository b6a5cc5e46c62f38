package org.iopersist.kernel.sysfs;

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
 */
public record SysfsAttribute(String name, Supplier<String> show, Store store, int ownerUid) implements SysfsNode {

    /** A write handler; throws {@link KernelException} with the errno the writer gets. */
    @FunctionalInterface
    public interface Store {
        void store(String value);
    }

    public static SysfsAttribute readOnly(final String name, final Supplier<String> show) {
        return new SysfsAttribute(name, show, null, -1);
    }

    public static SysfsAttribute readWrite(final String name, final Supplier<String> show, final Store store) {
        return new SysfsAttribute(name, show, store, -1);
    }

    public boolean writable() {
        return store != null;
    }

    public String read() {
        final String s = show.get();
        return s.endsWith("\n") ? s : s + "\n";
    }

    public void write(final String value) {
        if (store == null) {
            throw new KernelException(Errno.EPERM, "sysfs attribute " + name + " is read-only");
        }
        store.store(value.strip());
    }
}
