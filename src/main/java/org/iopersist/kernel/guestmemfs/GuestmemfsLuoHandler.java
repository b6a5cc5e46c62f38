package org.iopersist.kernel.guestmemfs;

import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.OpenFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.LiveUpdateHandler;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.kernel.liveupdate.luo.LuoFileHandler;
import org.iopersist.kernel.liveupdate.luo.LuoSession;

/**
 * A guestmemfs file in a LUO session (compatible {@code guestmemfs-file-v1}, this model's: guestmemfs
 * never had a LUO handler). The file's blocks need no preserving of their own: the whole carve-out
 * is handed over with guestmemfs ({@link GuestmemfsLiveUpdate}); the session only names the file by
 * inode, so an iommufd in the same session may have mapped it and a VMM can retrieve it by token.
 *
 * <pre>
 * file@F { compatible = "guestmemfs-file-v1"; token = &lt;u64&gt;; ino = &lt;u64&gt;; }
 * </pre>
 */
public final class GuestmemfsLuoHandler implements LuoFileHandler {
    public static final String COMPATIBLE = "guestmemfs-file-v1";

    private final LiveUpdateHandler<Guestmemfs> guestmemfs;

    /** @param guestmemfs the handler whose plan is the mounted guestmemfs of the next boot */
    public GuestmemfsLuoHandler(final LiveUpdateHandler<Guestmemfs> guestmemfs) {
        this.guestmemfs = guestmemfs;
    }

    @Override
    public String compatible() {
        return COMPATIBLE;
    }

    @Override
    public boolean canPreserve(final KernelFile file) {
        return file instanceof GuestmemFile;
    }

    @Override
    public Preserved preserve(final OpenFile file, final long token, final LuoSession session) {
        final long ino = ((GuestmemFile) file.file()).ino();
        return new Preserved() {
            @Override
            public void serialize(final FdtWriter node) {
                node.propertyU64("ino", ino);
            }

            @Override
            public void unpreserve() {
            }
        };
    }

    @Override
    public Restorable validate(final FdtReader blob, final int node, final LuoSession session, final IncomingHandover in)
            throws HandoverFormatException {
        final long ino = blob.u64(node, "ino");
        final Guestmemfs fs = in.plan(guestmemfs);
        final Guestmemfs.Stat st = fs == null ? null : fs.statInode(ino);
        if (st == null) {
            throw new HandoverFormatException("guestmemfs file in session '" + session.name() + "': no inode " + ino);
        }
        return new In(fs, ino, st.size());
    }

    /** A guestmemfs file handed over in a session: opened by the kernel at adopt. */
    public static final class In implements Restorable {
        private final Guestmemfs fs;
        private final long ino;
        private final long size;
        private GuestmemFile file;

        In(final Guestmemfs fs, final long ino, final long size) {
            this.fs = fs;
            this.ino = ino;
            this.size = size;
        }

        @Override
        public void adopt(final IncomingHandover in) {
            file = fs.openInode(ino);
        }

        /** The file, opened by the kernel. */
        public GuestmemFile file() {
            return file;
        }

        public long size() {
            return size;
        }

        @Override
        public OpenFile retrieve(final UserProcess caller) {
            return new OpenFile(file);
        }

        @Override
        public void finish(final boolean retrieved) {
            if (!retrieved) {
                file.release();
            }
        }
    }
}
