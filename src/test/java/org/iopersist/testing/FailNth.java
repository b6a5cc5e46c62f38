package org.iopersist.testing;

import java.nio.charset.StandardCharsets;
import org.iopersist.uapi.Errno;
import org.iopersist.uapi.Syscall;
import org.iopersist.vmm.KernelClient;

/**
 * A process's {@code /proc/thread-self/fail-nth}, driven as {@code iommufd_fail_nth.c} drives it
 * ({@code fail_nth_first}, {@code fail_nth_enable}, {@code fail_nth_next}): through the syscall ABI
 * only, so the file's own user copies count as injection sites, exactly as in Linux.
 */
public final class FailNth {
    private final KernelClient c;
    private final int fd;
    private final long bufVa;
    private int iteration;

    /** fail_nth_first: opens the file. */
    public FailNth(final KernelClient c) {
        this.c = c;
        this.fd = c.open("/proc/thread-self/fail-nth", Syscall.O_RDWR);
        this.bufVa = c.scratch() + 32768;
    }

    public int iteration() {
        return iteration;
    }

    public void iteration(final int n) {
        iteration = n;
    }

    /** fail_nth_enable: from here on the iteration-th site fails (nothing at iteration 0). */
    public void enable() {
        if (iteration == 0) {
            return;
        }
        final byte[] b = Integer.toString(iteration).getBytes(StandardCharsets.US_ASCII);
        c.memory().writeBytes(bufVa, b);
        final long ret = c.syscall(Syscall.PWRITE64, fd, bufVa, b.length, 0);
        if (ret != b.length) {
            throw new AssertionError("writing fail-nth " + iteration + " gave " + ret);
        }
    }

    /**
     * The first half of fail_nth_next: reads what is left of the count and turns injection off.
     * True if the failure fired (the file read "0\n"); a read or the disabling write that fails with
     * EFAULT was itself the site, so the scenario ran through without one ("1\n").
     */
    public boolean readAndDisable() {
        String left;
        final long res = c.syscall(Syscall.PREAD64, fd, bufVa, 300, 0);
        if (res == -Errno.EFAULT.number) {
            left = "1\n";
        } else if (res < 0) {
            throw new AssertionError("reading fail-nth gave errno " + -res);
        } else {
            left = new String(c.memory().readBytes(bufVa, (int) res), StandardCharsets.US_ASCII);
        }
        c.memory().writeBytes(bufVa, new byte[] {'0'});
        long res2 = c.syscall(Syscall.PWRITE64, fd, bufVa, 1, 0);
        if (res2 == -Errno.EFAULT.number) {
            res2 = c.syscall(Syscall.PWRITE64, fd, bufVa, 1, 0);
            left = "1\n";
        }
        if (res2 != 1) {
            throw new AssertionError("disabling fail-nth gave " + res2);
        }
        return left.equals("0\n");
    }
}
