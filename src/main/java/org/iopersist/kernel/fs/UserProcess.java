package org.iopersist.kernel.fs;

import org.iopersist.kernel.FaultInjection;
import org.iopersist.kernel.mm.AddressSpace;

import java.util.concurrent.atomic.AtomicLong;

/**
 * One user process as the kernel sees it: its identity, its descriptors, its address space, and
 * the pages it has pinned (accounting as RLIMIT_MEMLOCK would).
 */
public final class UserProcess {
    private final int pid;
    private final int uid;
    private final int gid;
    private final FdTable fds = new FdTable();
    private final AddressSpace mm;
    private final AtomicLong pinnedPages = new AtomicLong();
    private final long stackVa;
    private final long stackLength;
    private final FaultInjection.Task failNth = new FaultInjection.Task();

    public UserProcess(final int pid, final int uid, final int gid, final AddressSpace mm, final long stackVa, final long stackLength) {
        this.pid = pid;
        this.uid = uid;
        this.gid = gid;
        this.mm = mm;
        this.stackVa = stackVa;
        this.stackLength = stackLength;
    }

    public int pid() {
        return pid;
    }

    public int uid() {
        return uid;
    }

    public int gid() {
        return gid;
    }

    public boolean root() {
        return uid == 0;
    }

    public FdTable fds() {
        return fds;
    }

    public AddressSpace mm() {
        return mm;
    }

    public long stackVa() {
        return stackVa;
    }

    public long stackLength() {
        return stackLength;
    }

    /** Pages pinned on this process's account (moves with IOMMU_IOAS_CHANGE_PROCESS). */
    public long pinnedPages() {
        return pinnedPages.get();
    }

    /** This process's {@code fail_nth} (one task per process: a process's syscalls run one at a time). */
    public FaultInjection.Task failNth() {
        return failNth;
    }

    public void accountPinned(final long pages) {
        pinnedPages.addAndGet(pages);
    }
}
