package org.iopersist.kernel.iommufd;

import java.util.function.IntSupplier;
import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * iommufd's fail_nth sites, at the calls where Linux's iommufd, its selftest driver and the
 * in-kernel access API have them: every {@code kzalloc} whose failure reaches the caller
 * ({@code failslab}, ENOMEM), and the {@code iommufd_should_fail()} points of a CONFIG_IOMMUFD_TEST
 * kernel ({@code fail_iommufd}), each with the errno its Linux caller turns it into:
 * <ul>
 *   <li>{@code iommufd_get_object}: ENOENT (HWPT_ALLOC's pt_id lookup makes it EINVAL);</li>
 *   <li>{@code temp_kmalloc} without a backup (a pfn reader's batch and page list): ENOMEM;</li>
 *   <li>{@code pfn_reader_user_pin}, before each {@code pin_user_pages} call: EFAULT;</li>
 *   <li>{@code pfn_reader_user_update_pinned}, when pinning raised the count: ENOMEM;</li>
 *   <li>{@code pages_to_xarray}, halfway: EINVAL; {@code iopt_pages_rw_page}: EINVAL;</li>
 *   <li>{@code iopt_table_enforce_dev_resv_regions}: EINVAL;</li>
 *   <li>the mock domain's {@code map_pages}: ENOENT.</li>
 * </ul>
 * The model pins an area's pages in one step where Linux's pfn reader pins a page list at a time,
 * so a reader's points come in Linux's number (one EFAULT point per page list the temporary memory
 * limit allows), pins first, then the maps.
 */
final class FailPoints {
    /** TEMP_MEMORY_LIMIT of a kernel without the selftest, and iommufd_test_memory_limit's default. */
    static final int TEMP_MEMORY_LIMIT = 65536;
    private final FaultInjection faults;
    private final IntSupplier tempMemoryLimit;

    /** No injection (a unit test's bare IOAS). */
    static FailPoints none() {
        return new FailPoints(null, () -> TEMP_MEMORY_LIMIT);
    }

    FailPoints(final FaultInjection faultsOrNull, final IntSupplier tempMemoryLimit) {
        this.faults = faultsOrNull;
        this.tempMemoryLimit = tempMemoryLimit;
    }

    /** kzalloc, kvcalloc, kmem_cache_alloc of {@code what}: ENOMEM. */
    void kzalloc(final String what) {
        if (FaultInjection.shouldFail(faults, FaultInjection.Site.SLAB)) {
            throw new KernelException(Errno.ENOMEM, "fail-nth: allocation of " + what + " failed");
        }
    }

    /** A copy_to_user or copy_from_user the model does through physical memory: EFAULT. */
    void userCopy() {
        FaultInjection.check(faults, FaultInjection.Site.USER_COPY);
    }

    /** An {@code iommufd_should_fail()} point that answers {@code errno}. */
    void point(final Errno errno, final String where) {
        if (FaultInjection.shouldFail(faults, FaultInjection.Site.IOMMUFD)) {
            throw new KernelException(errno, "fail-nth: iommufd_should_fail in " + where);
        }
    }

    /** pfn_reader_init's batch_init: temp_kmalloc with no backup. */
    void batchInit() {
        point(Errno.ENOMEM, "batch_init");
    }

    /**
     * pfn_reader_user_pin over {@code npages} pages nobody holds yet: the page list (temp_kmalloc)
     * unless the caller hands one in ({@code listGiven}, iopt_pages_fill_xarray's out_pages), then
     * one EFAULT point before each pin_user_pages call, each taking as many pages as the list holds.
     */
    void userPin(final long npages, final boolean listGiven) {
        if (faults == null || !faults.armed()) {
            return;
        }
        long chunk = npages;
        if (!listGiven) {
            point(Errno.ENOMEM, "pfn_reader_user_pin's page list");
            chunk = Math.max(1, Math.min(npages, tempMemoryLimit.getAsInt() / Long.BYTES));
        }
        for (long done = 0; done < npages; done += chunk) {
            point(Errno.EFAULT, "pfn_reader_user_pin");
        }
    }

    /** pfn_reader_user_update_pinned, after a pin raised the count. */
    void updatePinned() {
        point(Errno.ENOMEM, "pfn_reader_user_update_pinned");
    }

    /** pages_to_xarray's point, halfway through storing an access's pages. */
    void pagesToXarray() {
        point(Errno.EINVAL, "pages_to_xarray");
    }
}
