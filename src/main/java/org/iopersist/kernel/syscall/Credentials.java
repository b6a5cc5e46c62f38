package org.iopersist.kernel.syscall;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Maps the user and group names SO_PEERCRED reports to numeric ids through the system's user
 * database ({@code /etc/passwd}, {@code /etc/group}), as {@code getpwnam} would. A name that is
 * itself a number (no entry) is taken as the number.
 */
final class Credentials {
    private Credentials() {
    }

    static int uidOf(final String user) {
        return lookup(Path.of("/etc/passwd"), user);
    }

    static int gidOf(final String group) {
        return lookup(Path.of("/etc/group"), group);
    }

    private static int lookup(final Path db, final String name) {
        try {
            final List<String> lines = Files.readAllLines(db);
            for (String line : lines) {
                final String[] f = line.split(":");
                if (f.length >= 3 && f[0].equals(name)) {
                    return Integer.parseInt(f[2]);
                }
            }
        } catch (IOException | NumberFormatException e) {
            // fall through to the numeric interpretation
        }
        try {
            return Integer.parseInt(name);
        } catch (NumberFormatException e) {
            throw new IllegalStateException("unknown user or group '" + name + "' in " + db, e);
        }
    }
}
