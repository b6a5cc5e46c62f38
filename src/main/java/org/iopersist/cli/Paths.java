package org.iopersist.cli;

import java.nio.file.Files;
import java.nio.file.Path;

/** Checks of path options, made before a command starts anything, so a bad one costs no run. */
final class Paths {
    private Paths() {
    }

    /** An empty path would mean the current directory (the checkout, under scripts/run): refused. */
    static void requireNamed(final String option, final Path path) {
        if (path != null && path.toString().isEmpty()) {
            throw new IllegalArgumentException(option + " is empty; give a path");
        }
    }

    /** Makes directory {@code dir} now, so that a report that cannot be written costs no run. */
    static void requireCreatableDirectory(final String option, final Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException(option + " " + dir + ": cannot create it: "
                    + org.iopersist.hw.memory.IoReasons.describe(e));
        }
        if (!Files.isWritable(dir)) {
            throw new IllegalArgumentException(option + " " + dir + ": not writable");
        }
    }
}
