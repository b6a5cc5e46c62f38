package org.iopersist.kernel.liveupdate;

import java.util.concurrent.locks.LockSupport;
import org.iopersist.kernel.KernelLog;

/**
 * {@code liveupdate.break=POINT}: the kernel stops for good at one named point of the live update,
 * as dracut's {@code rd.break=} stops a boot, so that whatever ends it next (a {@code kill -9}, a
 * power loss) lands exactly there. It logs {@code liveupdate: break at POINT} and parks the thread
 * that got there; nothing else of the kernel changes because of it.
 *
 * <p>The points, in the order a live update reaches them:
 * <ul>
 *   <li>{@code finalize:<subsystem>}: kernel 1, finalize, that subsystem serialized, the KHO tree
 *       not written yet;</li>
 *   <li>{@code kexec}: kernel 1, the next command line written, {@code boot/setup_data} not yet;</li>
 *   <li>{@code validate}: kernel 2, the handover validated whole, nothing reserved or adopted;</li>
 *   <li>{@code adopt:<subsystem>}: kernel 2, that subsystem adopted, the ones after it not;</li>
 *   <li>{@code serve}: kernel 2 booted, no process run yet (so the boot record is not consumed).</li>
 * </ul>
 */
public final class Breakpoint {
    private final String point;
    private final KernelLog log;

    /** {@code point} as the command line gives it; empty for none. */
    public Breakpoint(final String point, final KernelLog log) {
        this.point = point;
        this.log = log;
    }

    /** Stops here for good if {@code name} is the point asked for. */
    public void at(final String name) {
        if (!point.isEmpty() && point.equals(name)) {
            log.info("liveupdate: break at %s", name);
            while (true) {
                LockSupport.park(this);
            }
        }
    }
}
