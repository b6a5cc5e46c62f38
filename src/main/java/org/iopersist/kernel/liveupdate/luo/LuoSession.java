package org.iopersist.kernel.liveupdate.luo;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;

/**
 * A named container of preserved files ({@code struct luo_session}): an outgoing one, created in
 * this boot and handed over at the kexec, or an incoming one, handed over by the previous boot.
 * File handlers ask it about the other files of the same session by token: an iommufd's areas must
 * be files of its session, a device's iommufd must be too.
 *
 * <p>Guarded by the orchestrator's monitor ({@link Luo}).
 */
public final class LuoSession {
    /** One file of the session ({@code struct luo_file}). */
    static final class File {
        final long token;
        final LuoFileHandler handler;
        /** Outgoing: the preserved file, one reference the session's (fget at preserve, fput at unpreserve). */
        final OpenFile file;
        final LuoFileHandler.Preserved preserved;
        final LuoFileHandler.Restorable restorable;
        /** Incoming: 0 not tried, 1 retrieved, else the negative errno retrieve failed with (for good). */
        int retrieveStatus;
        /** Incoming, once retrieved: the file, one reference the session's until finish. */
        OpenFile retrieved;

        File(final long token, final LuoFileHandler handler, final OpenFile file, final LuoFileHandler.Preserved preserved) {
            this.token = token;
            this.handler = handler;
            this.file = file;
            this.preserved = preserved;
            this.restorable = null;
        }

        File(final long token, final LuoFileHandler handler, final LuoFileHandler.Restorable restorable) {
            this.token = token;
            this.handler = handler;
            this.file = null;
            this.preserved = null;
            this.restorable = restorable;
        }
    }

    final String name;
    final boolean incoming;
    final List<File> files = new ArrayList<>();
    /** Incoming: a session fd was handed out (RETRIEVE_SESSION), so a second retrieve is EINVAL. */
    boolean retrieved;
    /** A session fd is open on it. */
    boolean open;
    /** Incoming: finish ran, its files are gone. */
    boolean finished;
    /** Outgoing: PRESERVE_FDs under way, whose files are not in {@link #files} yet. */
    int inFlight;

    LuoSession(final String name, final boolean incoming) {
        this.name = name;
        this.incoming = incoming;
    }

    public String name() {
        return name;
    }

    public boolean incoming() {
        return incoming;
    }

    /**
     * liveupdate_get_token_outgoing: the token {@code file} is preserved under in this (outgoing)
     * session, or null.
     */
    public Long tokenOf(final KernelFile file) {
        for (File f : files) {
            if (f.file != null && f.file.file() == file) {
                return f.token;
            }
        }
        return null;
    }

    /** liveupdate_get_token_outgoing by a match other than identity (a guestmemfs inode opened twice): the token, or null. */
    public Long tokenOf(final java.util.function.Predicate<KernelFile> match) {
        for (File f : files) {
            if (f.file != null && match.test(f.file.file())) {
                return f.token;
            }
        }
        return null;
    }

    /** Everything the handlers keep of this (outgoing) session's files that is a {@code type}, in order. */
    public <T> List<T> preservedOfType(final Class<T> type) {
        final List<T> out = new ArrayList<>();
        for (File f : files) {
            if (type.isInstance(f.preserved)) {
                out.add(type.cast(f.preserved));
            }
        }
        return out;
    }

    /** What the handler keeps of {@code file}, preserved in this (outgoing) session, if it is a {@code type}; else null. */
    public <T> T preservedOf(final KernelFile file, final Class<T> type) {
        for (File f : files) {
            if (f.file != null && f.file.file() == file && type.isInstance(f.preserved)) {
                return type.cast(f.preserved);
            }
        }
        return null;
    }

    /** The file handed over under {@code token} in this (incoming) session, if it is a {@code type}; else null. */
    public <T> T restorable(final long token, final Class<T> type) {
        for (File f : files) {
            if (f.token == token && type.isInstance(f.restorable)) {
                return type.cast(f.restorable);
            }
        }
        return null;
    }

    File file(final long token) {
        for (File f : files) {
            if (f.token == token) {
                return f;
            }
        }
        return null;
    }

    @Override
    public String toString() {
        return (incoming ? "incoming" : "outgoing") + " session '" + name + "' (" + files.size() + " files)";
    }
}
