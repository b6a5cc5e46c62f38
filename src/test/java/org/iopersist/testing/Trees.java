package org.iopersist.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;

/** Directory trees a test or a bench made for itself. */
public final class Trees {
    private Trees() {
    }

    /** Deletes {@code root} and everything below it, deepest first; a root that is gone already is fine. */
    public static void delete(final Path root) throws IOException {
        if (!Files.exists(root)) {
            return;
        }
        try (var walk = Files.walk(root)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
