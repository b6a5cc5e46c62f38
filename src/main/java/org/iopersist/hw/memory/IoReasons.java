package org.iopersist.hw.memory;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;

/**
 * Why an I/O call failed, in the words {@code strerror} would use: the JDK's file exceptions carry
 * only the path as their message, so "cannot map X: X" said nothing.
 */
public final class IoReasons {
    private IoReasons() {
    }

    /** "PATH: reason" for a file system error, else the exception's own message. */
    public static String describe(final IOException e) {
        final String reason = switch (e) {
            case NoSuchFileException x -> "no such file or directory";
            case AccessDeniedException x -> "permission denied";
            case FileAlreadyExistsException x -> "already exists";
            case NotDirectoryException x -> "not a directory";
            case DirectoryNotEmptyException x -> "directory not empty";
            case FileSystemException x -> x.getReason() != null ? x.getReason() : "file system error";
            default -> null;
        };
        if (reason == null) {
            return e.getMessage() != null ? e.getMessage() : e.toString();
        }
        final FileSystemException f = (FileSystemException) e;
        return (f.getOtherFile() != null ? f.getFile() + " -> " + f.getOtherFile() : f.getFile()) + ": " + reason;
    }
}
