package org.iopersist.kernel.iommufd.persist;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.iommufd.Access;
import org.iopersist.kernel.iommufd.HwptPaging;
import org.iopersist.kernel.iommufd.Ioas;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdDevice;
import org.iopersist.kernel.iommufd.IommufdObject;
import org.iopersist.kernel.iommufd.IoptArea;
import org.iopersist.kernel.iommufd.IoptPages;
import org.iopersist.kernel.iommufd.SelftestObject;
import org.iopersist.kernel.iommufd.IovaInterval;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.uapi.Errno;

/**
 * serialize: writes every persistent context in the {@link IommufdHandover iommufd-v1} format, at
 * freeze. A context with an in-kernel access cannot be handed over (EBUSY fails the finalize).
 */
final class HandoverWriter {
    private HandoverWriter() {
    }

    /** The blob for {@code contexts}, by persistent id. */
    static byte[] write(final SortedMap<Integer, IommufdCtx> contexts) {
        final FdtWriter w = new FdtWriter().beginNode("");
        // #address-cells/#size-cells and each node's reg give the unit addresses (persistent ids,
        // object ids) meaning, so dtc decompiles the blob without a warning; readers ignore them.
        w.propertyString("compatible", IommufdHandover.COMPATIBLE).propertyU32("#address-cells", 1).propertyU32("#size-cells", 0);
        for (Map.Entry<Integer, IommufdCtx> e : contexts.entrySet()) {
            writeContext(w, e.getKey(), e.getValue());
        }
        return w.endNode().finish();
    }

    private static void writeContext(final FdtWriter w, final int pid, final IommufdCtx ctx) {
        w.beginNode("ctx@" + pid).propertyU32("reg", pid).propertyU32("#address-cells", 1).propertyU32("#size-cells", 0)
                .propertyU32("persistent-id", pid).propertyU32("owner-uid", ctx.ownerUid())
                .propertyU32("account-mode", ctx.accountMode());
        for (IommufdObject o : ctx.objects()) {
            switch (o) {
                case Ioas ioas -> writeIoas(w, ioas, pages -> pages.guestmem().ino());
                case HwptPaging h -> w.beginNode("hwpt@" + o.id()).propertyU32("reg", o.id()).propertyU32("id", o.id()).propertyU32("ioas", h.ioas().id())
                        .propertyU32("auto", h.auto() ? 1 : 0).propertyU64("domain", h.domain().ops().handoverKey()).endNode();
                case IommufdDevice d -> {
                    final HwptPaging h = d.hwpt();
                    w.beginNode("device@" + o.id()).propertyU32("reg", o.id()).propertyU32("id", o.id()).propertyU64("device", d.device().handoverKey())
                            .propertyU32("hwpt", h == null ? 0 : h.id()).endNode();
                }
                case Access a -> throw new KernelException(Errno.EBUSY,
                        "persistent iommufd " + pid + " has an in-kernel access; accesses are not handed over");
                case SelftestObject s -> throw new KernelException(Errno.EBUSY,
                        "persistent iommufd " + pid + " has a selftest mock device; those are not handed over");
            }
        }
        w.endNode();
    }

    /**
     * One {@code ioas@N} node: its state, each area's pages named by {@code fileRef} (the RFC: the
     * guestmemfs inode; LUO: the session token of the file).
     */
    static void writeIoas(final FdtWriter w, final Ioas ioas, final java.util.function.ToLongFunction<IoptPages> fileRef) {
        final Ioas.State state = ioas.state();
        // Areas that share an iopt_pages (a copy, a split) share it again after the update, so the
        // opener is charged what the VMM was charged before.
        final Map<IoptPages, Integer> pagesIndex = new IdentityHashMap<>();
        final List<Long> pages = new ArrayList<>();
        final List<Long> areas = new ArrayList<>();
        for (IoptArea a : state.areas()) {
            final long file = fileRef.applyAsLong(a.pages());
            final Integer known = pagesIndex.get(a.pages());
            final int index = known != null ? known : pagesIndex.size();
            if (known == null) {
                pagesIndex.put(a.pages(), index);
                pages.add(file);
                pages.add(a.pages().fileOffset(0));
                pages.add(a.pages().npages() << 12);
            }
            areas.add(a.start());
            areas.add(a.length());
            areas.add(file);
            areas.add(a.pages().fileOffset(a.startByte()));
            areas.add((long) a.prot());
            areas.add((long) index);
        }
        final List<Long> allowed = new ArrayList<>();
        for (IovaInterval r : state.allowed()) {
            allowed.add(r.start());
            allowed.add(r.last());
        }
        w.beginNode("ioas@" + ioas.id()).propertyU32("reg", ioas.id()).propertyU32("id", ioas.id())
                .propertyU64("alignment", state.iovaAlignment())
                .propertyU32("huge-pages", state.hugePages() ? 1 : 0)
                .propertyU64Array("allowed", toArray(allowed))
                .propertyU64Array("pages", toArray(pages))
                .propertyU64Array("areas", toArray(areas)).endNode();
    }

    private static long[] toArray(final List<Long> l) {
        final long[] a = new long[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }
}
