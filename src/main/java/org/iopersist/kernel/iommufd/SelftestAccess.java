package org.iopersist.kernel.iommufd;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import org.iopersist.kernel.KernelException;
import org.iopersist.kernel.fs.KernelFile;
import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.uapi.Errno;

/**
 * The selftest's in-kernel access driver ({@code struct selftest_access}), and the anonymous file
 * {@code [iommufd_test_staccess]} IOMMU_TEST_OP_CREATE_ACCESS hands to userspace: its fd names the
 * access in the other ACCESS ops, closing it destroys the access. Each ACCESS_PAGES pin is an item
 * with an id; the IOAS asking for a range back (an unmap) unpins every item that overlaps it, as a
 * mediated driver would.
 *
 * <p>Lock: this object's monitor (staccess->lock), held across a pin so that an unmap waits for it.
 */
final class SelftestAccess implements KernelFile, Access.Ops {
    /** One ACCESS_PAGES pin. */
    private record Item(int id, long iova, long length) {
    }

    private final boolean needsPinPages;
    private Access access; // set once, after creation
    private final List<Item> items = new ArrayList<>(); // guarded by this
    private int nextId; // guarded by this

    SelftestAccess(final boolean needsPinPages) {
        this.needsPinPages = needsPinPages;
    }

    void access(final Access a) {
        this.access = a;
    }

    Access access() {
        return access;
    }

    /** iommufd_access_get: the staccess behind fd {@code fd} of {@code p}; EBADFD otherwise. */
    static SelftestAccess get(final UserProcess p, final int fd) {
        final KernelFile f;
        try {
            f = p.fds().get(fd);
        } catch (KernelException e) {
            throw new KernelException(Errno.EBADFD, "fd " + fd + " is not open");
        }
        if (!(f instanceof SelftestAccess s) || s.access == null) {
            throw new KernelException(Errno.EBADFD, "fd " + fd + " is not a selftest access");
        }
        return s;
    }

    @Override
    public boolean needsPinPages() {
        return needsPinPages;
    }

    /** iommufd_test_access_unmap: every item overlapping {@code [iova, iova + length)} is unpinned. */
    @Override
    public synchronized void unmap(final long iova, final long length) {
        final long last = iova + length - 1;
        for (Iterator<Item> it = items.iterator(); it.hasNext(); ) {
            final Item item = it.next();
            if (Long.compareUnsigned(iova, item.iova() + item.length() - 1) > 0 || Long.compareUnsigned(last, item.iova()) < 0) {
                continue;
            }
            it.remove();
            Access.unpinPages(access, item.iova(), item.length());
        }
    }

    /** Records a pin and returns its id. Caller holds this object's monitor. */
    int add(final long iova, final long length) {
        final Item item = new Item(nextId++, iova, length);
        items.add(item);
        return item.id();
    }

    /** Forgets the item {@code id} without unpinning it (the pin is undone by the caller). */
    synchronized void forget(final int id) {
        items.removeIf(i -> i.id() == id);
    }

    /** iommufd_test_access_item_destroy: unpins item {@code id}; ENOENT if there is none. */
    synchronized void destroyItem(final int id) {
        for (Iterator<Item> it = items.iterator(); it.hasNext(); ) {
            final Item item = it.next();
            if (item.id() == id) {
                it.remove();
                Access.unpinPages(access, item.iova(), item.length());
                return;
            }
        }
        throw new KernelException(Errno.ENOENT, "no access pages " + id);
    }

    /** iommufd_test_staccess_release: unpins everything, destroys the access. Never fails. */
    @Override
    public void release() {
        if (access == null) {
            return;
        }
        unmap(0, -1L);
        try {
            Access.destroy(access);
        } catch (KernelException e) {
            // A user still holds it (a lookup in flight); close of the context cleans it up.
        }
    }

    @Override
    public String describe() {
        return "anon_inode:[iommufd_test_staccess]";
    }
}
