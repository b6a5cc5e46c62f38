package org.iopersist.kernel.liveupdate.luo;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Function;
import org.iopersist.kernel.liveupdate.IncomingHandover;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;
import org.iopersist.uapi.Liveupdate;

/**
 * The orchestrator's blob, the KHO subtree {@code LUO} (mainline's {@code LUO_FDT_KHO_ENTRY_NAME}),
 * an FDT with big-endian values as every blob of the handover. Mainline keeps sessions and files as
 * packed C structs in preserved pages reached from the FDT ({@code luo_session_ser},
 * {@code luo_file_ser}); here they are nodes, so {@code dtc} shows every session and file:
 *
 * <pre>
 * / { compatible = "luo-v1"; liveupdate-number = &lt;u64&gt;; #address-cells = &lt;1&gt;; #size-cells = &lt;0&gt;;
 *     session@S { reg = &lt;S&gt;; session-name = "vm0"; #address-cells = &lt;1&gt;; #size-cells = &lt;0&gt;;
 *         file@F { reg = &lt;F&gt;; compatible = "memfd-v2"; token = &lt;u64&gt;; ... the handler's properties };
 *     };
 * };
 * </pre>
 *
 * Sessions are numbered in creation order, files in preservation order within their session, so a
 * file's dependencies (an iommufd's memfds, a device's iommufd) come before it.
 */
public final class LuoHandover {
    /** The KHO subtree's name. */
    public static final String NAME = "LUO";
    public static final String COMPATIBLE = "luo-v1";
    public static final String PROP_LIVEUPDATE_NUMBER = "liveupdate-number";
    /** Not {@code name}: device trees reserve that for the node's own name. */
    public static final String PROP_SESSION_NAME = "session-name";

    private LuoHandover() {
    }

    static byte[] write(final long liveupdateNumber, final List<LuoSession> sessions) {
        final FdtWriter w = new FdtWriter().beginNode("");
        w.propertyString("compatible", COMPATIBLE).propertyU64(PROP_LIVEUPDATE_NUMBER, liveupdateNumber)
                .propertyU32("#address-cells", 1).propertyU32("#size-cells", 0);
        int sn = 0;
        for (LuoSession s : sessions) {
            final byte[] name = s.name.getBytes(StandardCharsets.ISO_8859_1);
            final byte[] value = new byte[name.length + 1];
            System.arraycopy(name, 0, value, 0, name.length);
            w.beginNode("session@" + Integer.toHexString(sn)).propertyU32("reg", sn).property(PROP_SESSION_NAME, value)
                    .propertyU32("#address-cells", 1).propertyU32("#size-cells", 0);
            int fn = 0;
            for (LuoSession.File f : s.files) {
                w.beginNode("file@" + Integer.toHexString(fn)).propertyU32("reg", fn)
                        .propertyString("compatible", f.handler.compatible()).propertyU64("token", f.token);
                f.preserved.serialize(w);
                w.endNode();
                fn++;
            }
            w.endNode();
            sn++;
        }
        return w.endNode().finish();
    }

    /** Reads and validates every session and file; {@code handlers} finds a file handler by compatible. */
    static Luo.Plan read(final FdtReader blob, final IncomingHandover in, final Function<String, LuoFileHandler> handlers)
            throws HandoverFormatException {
        if (!COMPATIBLE.equals(blob.string(blob.root(), "compatible"))) {
            throw new HandoverFormatException("LUO blob is not " + COMPATIBLE);
        }
        final long number = blob.u64(blob.root(), PROP_LIVEUPDATE_NUMBER);
        final List<LuoSession> sessions = new ArrayList<>();
        final Set<String> names = new HashSet<>();
        for (int sn : blob.children(blob.root())) {
            if (!blob.nodeName(sn).startsWith("session@")) {
                throw new HandoverFormatException("LUO: unknown node " + blob.nodeName(sn));
            }
            final String name = sessionName(blob.bytes(sn, PROP_SESSION_NAME));
            if (!names.add(name)) {
                throw new HandoverFormatException("LUO: session '" + name + "' appears twice");
            }
            final LuoSession s = new LuoSession(name, true);
            for (int fn : blob.children(sn)) {
                if (!blob.nodeName(fn).startsWith("file@")) {
                    throw new HandoverFormatException("LUO: session '" + name + "': unknown node " + blob.nodeName(fn));
                }
                final String compatible = blob.string(fn, "compatible");
                final LuoFileHandler h = handlers.apply(compatible);
                if (h == null) {
                    throw new HandoverFormatException("LUO: session '" + name + "': no handler for '" + compatible + "'");
                }
                final long token = blob.u64(fn, "token");
                if (s.file(token) != null) {
                    throw new HandoverFormatException(String.format("LUO: session '%s': token 0x%x appears twice", name, token));
                }
                s.files.add(new LuoSession.File(token, h, h.validate(blob, fn, s, in)));
            }
            sessions.add(s);
        }
        return new Luo.Plan(number, sessions);
    }

    private static String sessionName(final byte[] v) throws HandoverFormatException {
        final int len = v.length - 1;
        if (len < 1 || len > Liveupdate.LIVEUPDATE_SESSION_NAME_LENGTH - 1 || v[len] != 0) {
            throw new HandoverFormatException("LUO: a session name is not 1..63 bytes and a NUL");
        }
        for (int i = 0; i < len; i++) {
            if (v[i] == 0) {
                throw new HandoverFormatException("LUO: a session name holds a NUL");
            }
        }
        return new String(v, 0, len, StandardCharsets.ISO_8859_1);
    }
}
