package org.iopersist.kernel;

import java.util.concurrent.atomic.AtomicLongArray;
import org.iopersist.uapi.Errno;

/**
 * Fault injection by count, as Linux's {@code fail_nth} ({@code Documentation/fault-injection/}): a
 * task writes N to {@code /proc/thread-self/fail-nth}, and the Nth injectable site that task's
 * syscalls reach from then on fails with the site's errno. Reading the file gives what is left of
 * the count: 0 once the failure fired, more if the task's calls reached fewer sites than N.
 *
 * <p>The sites are the kernel's fallible allocations and user copies: every frame the allocator
 * hands out ({@code fail_page_alloc}), every table page a VT-d domain takes from its pool
 * ({@code iommu_alloc_pages}), the slab allocations iommufd, its selftest driver and the VFS make
 * where Linux makes them ({@code failslab}: {@code kzalloc}, {@code kvcalloc}, {@code getname}'s
 * and {@code alloc_empty_file}'s caches), iommufd's own points ({@code fail_iommufd}, which
 * {@code iommufd_should_fail()} reads in a kernel built with CONFIG_IOMMUFD_TEST), and every
 * {@code copy_from_user}, {@code copy_to_user} and {@code strncpy_from_user}
 * ({@code fail_usercopy}; not {@code get_user}, {@code put_user} or {@code check_zeroed_user},
 * which Linux does not instrument). A sweep that sets N = 1, 2, 3… until a scenario runs through
 * with the count left over visits every error path that scenario has, as
 * {@code tools/testing/selftests/iommu/iommufd_fail_nth.c} does.
 *
 * <p>Allocations whose failure Linux absorbs are not sites here, since they change no outcome: the
 * xarray's node allocation, retried with GFP_KERNEL after its GFP_NOWAIT try fails, and
 * {@code temp_kmalloc}'s kmalloc, which falls back to one page or to a stack buffer.
 *
 * <p>Which task is running is a binding made for the length of one syscall ({@link #callAs}), the
 * model's {@code current}: work a syscall does on its own thread counts, work done on other threads
 * (the scrub, the finish timer, the devices) never does. One instance per boot, so nothing of it
 * outlives the kernel.
 */
public final class FaultInjection {
    /** Where a failure can be injected, and what the failing call answers. */
    public enum Site {
        /** A frame or run from the frame allocator ({@code should_fail_alloc_page}). */
        FRAME(Errno.ENOMEM),
        /** A VT-d table page from its domain's pool ({@code iommu_alloc_pages}). */
        TABLE_PAGE(Errno.ENOMEM),
        /** {@code kmalloc}, {@code kzalloc}, {@code kvcalloc}, {@code kmem_cache_alloc} ({@code should_failslab}). */
        SLAB(Errno.ENOMEM),
        /** {@code copy_from_user}, {@code copy_to_user}, {@code strncpy_from_user} ({@code should_fail_usercopy}). */
        USER_COPY(Errno.EFAULT),
        /**
         * {@code iommufd_should_fail()} ({@code fail_iommufd}): each point answers its own errno
         * (ENOENT for an object lookup, EFAULT before a pin, ENOMEM, EINVAL), so it is only
         * reached through {@link #shouldFail}.
         */
        IOMMUFD(null);

        public final Errno errno;

        Site(final Errno errno) {
            this.errno = errno;
        }
    }

    /**
     * One task's {@code fail_nth}, an unsigned int: 0 is off; otherwise the number of sites until
     * the one that fails.
     */
    public static final class Task {
        private int nth; // guarded by this

        public synchronized int nth() {
            return nth;
        }

        public synchronized void nth(final int n) {
            nth = n;
        }

        /** should_fail's count: true at the site that takes the count to 0. */
        synchronized boolean countDown() {
            if (nth == 0) {
                return false;
            }
            return --nth == 0;
        }
    }

    private final ScopedValue<Task> current = ScopedValue.newInstance();
    private final AtomicLongArray injected = new AtomicLongArray(Site.values().length);
    private final java.util.function.Consumer<String> log;

    /** Injection that logs nowhere (a bare allocator in a unit test). */
    public FaultInjection() {
        this(line -> { });
    }

    /** Injection that logs each failure it forces, with where, as Linux's {@code FAULT_INJECTION:} lines. */
    public FaultInjection(final java.util.function.Consumer<String> log) {
        this.log = log;
    }

    /** Runs {@code op} as {@code task}: the sites it reaches count down that task's {@code fail_nth}. */
    public <R, X extends Throwable> R callAs(final Task task, final ScopedValue.CallableOp<? extends R, X> op) throws X {
        return ScopedValue.where(current, task).call(op);
    }

    /**
     * An injectable site: throws the site's errno if this is where the current task's count runs
     * out; otherwise does nothing (also outside any task, and with the count off).
     *
     * @throws KernelException ENOMEM or EFAULT, as {@code site} says
     */
    public void check(final Site site) {
        if (site.errno == null) {
            throw new IllegalArgumentException(site + " answers per point: use shouldFail");
        }
        if (shouldFail(site)) {
            throw new KernelException(site.errno, "fail-nth: injected at " + site.name().toLowerCase(java.util.Locale.ROOT));
        }
    }

    /** Whether the current task has a count running: a caller with many sites in a loop may skip them all otherwise. */
    public boolean armed() {
        return current.isBound() && current.get().nth() != 0;
    }

    /**
     * {@code should_fail}: true if this is where the current task's count runs out, and the caller
     * fails the way its Linux counterpart does (a NULL from kmalloc, an errno of its own).
     */
    public boolean shouldFail(final Site site) {
        if (current.isBound() && current.get().countDown()) {
            injected.incrementAndGet(site.ordinal());
            log.accept("FAULT_INJECTION: forcing a failure at " + site.name().toLowerCase(java.util.Locale.ROOT) + " in " + caller());
            return true;
        }
        return false;
    }

    /** The kernel frames that reached the site, innermost first: the log's short backtrace. */
    private static String caller() {
        return StackWalker.getInstance().walk(frames -> frames
                .filter(f -> !f.getClassName().equals(FaultInjection.class.getName()))
                .filter(f -> f.getClassName().startsWith("org.iopersist.kernel."))
                .limit(6)
                .map(f -> f.getClassName().substring(f.getClassName().lastIndexOf('.') + 1) + "." + f.getMethodName())
                .collect(java.util.stream.Collectors.joining(" < ")));
    }

    /** {@link #check} for a caller whose injector may be absent (a unit test's bare allocator). */
    public static void check(final FaultInjection faultsOrNull, final Site site) {
        if (faultsOrNull != null) {
            faultsOrNull.check(site);
        }
    }

    /** {@link #shouldFail} for a caller whose injector may be absent. */
    public static boolean shouldFail(final FaultInjection faultsOrNull, final Site site) {
        return faultsOrNull != null && faultsOrNull.shouldFail(site);
    }

    /** Failures injected at {@code site} since boot. */
    public long injected(final Site site) {
        return injected.get(site.ordinal());
    }
}
