package org.iopersist.kernel.iommufd.persist;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.iopersist.kernel.KernelLog;
import org.iopersist.kernel.iommufd.HwptPaging;
import org.iopersist.kernel.iommufd.IommufdCtx;
import org.iopersist.kernel.iommufd.IommufdObject;

/**
 * The leaf-by-leaf check of a restored context's tables, moved out of the boot. Boot validates the
 * handover in O(objects): the structure, every table page preserved, every area inside its file.
 * Walking every leaf there would protect nothing, since the devices have been translating through
 * those tables since before the new kernel ran, and it would put O(guest size) into the blackout.
 * So each restored context is scrubbed once its devices are rebound (or, without devices, once it
 * is reopened), in the background: every HWPT's domain must map exactly its IOAS's areas
 * ({@link HwptPaging#scrub}). A mismatch blocks that HWPT's devices and says why in
 * {@code /sys/kernel/iommufd_persisted/<id>/scrub}.
 */
final class TableScrub {
    /** Where a context's scrub stands, as its sysfs attribute shows it. */
    sealed interface Status {
        String show();
    }

    record Pending() implements Status {
        @Override
        public String show() {
            return "pending";
        }
    }

    record Running(int hwptsDone, int hwpts) implements Status {
        @Override
        public String show() {
            return "running " + hwptsDone + "/" + hwpts + " hwpt";
        }
    }

    record Done(long leaves, long bytes, long nanos, List<String> mismatches, int devicesBlocked) implements Status {
        boolean ok() {
            return mismatches.isEmpty();
        }

        @Override
        public String show() {
            final String cost = String.format("%d leaves, 0x%x bytes in %.1f ms", leaves, bytes, nanos / 1e6);
            return ok() ? "ok: " + cost
                    : "mismatch: " + String.join("; ", mismatches) + "; " + devicesBlocked + " devices blocked (" + cost + ")";
        }
    }

    private final KernelLog log;
    private final Map<Integer, Status> status = new ConcurrentHashMap<>();
    private final Map<Integer, CountDownLatch> done = new ConcurrentHashMap<>();

    TableScrub(final KernelLog log) {
        this.log = log;
    }

    /** A restored context waits for its scrub. */
    void expect(final int pid) {
        status.put(pid, new Pending());
        done.put(pid, new CountDownLatch(1));
    }

    String show(final int pid) {
        final Status s = status.get(pid);
        return s == null ? "none" : s.show();
    }

    /** Starts the scrub of {@code ctx} on its own thread, once; later calls do nothing. */
    void start(final int pid, final IommufdCtx ctx) {
        final Status s = status.get(pid);
        if (!(s instanceof Pending) || !status.replace(pid, s, new Running(0, 0))) {
            return;
        }
        if (!ctx.tryGet()) { // closed meanwhile: nothing left to check
            finish(pid, new Done(0, 0, 0, List.of(), 0));
            return;
        }
        Thread.ofPlatform().daemon().name("iommufd-scrub-" + pid).start(() -> {
            try {
                run(pid, ctx);
            } finally {
                ctx.put(); // the reference tryGet took
            }
        });
    }

    private void run(final int pid, final IommufdCtx ctx) {
        final long t0 = System.nanoTime();
        final List<HwptPaging> hwpts = new ArrayList<>();
        for (IommufdObject o : ctx.objects()) {
            if (o instanceof HwptPaging h) {
                hwpts.add(h);
            }
        }
        long leaves = 0;
        long bytes = 0;
        int blocked = 0;
        final List<String> mismatches = new ArrayList<>();
        try {
            for (int i = 0; i < hwpts.size(); i++) {
                status.put(pid, new Running(i, hwpts.size()));
                final HwptPaging.ScrubResult r = hwpts.get(i).scrub();
                leaves += r.leaves();
                bytes += r.bytes();
                if (!r.ok()) {
                    mismatches.add("hwpt " + hwpts.get(i).id() + ": " + r.mismatch());
                    blocked += ctx.blockDevicesOf(hwpts.get(i));
                }
            }
        } catch (RuntimeException e) {
            mismatches.add("the scrub failed: " + e);
        }
        finish(pid, new Done(leaves, bytes, System.nanoTime() - t0, List.copyOf(mismatches), blocked));
    }

    private void finish(final int pid, final Done d) {
        status.put(pid, d);
        log.info("iommufd: scrub of persistent ctx %d: %s", pid, d.show());
        done.get(pid).countDown();
    }

    /** Waits for the scrub of {@code pid}; true if it ended within the timeout. */
    boolean await(final int pid, final long timeout, final TimeUnit unit) throws InterruptedException {
        final CountDownLatch l = done.get(pid);
        return l != null && l.await(timeout, unit);
    }
}
