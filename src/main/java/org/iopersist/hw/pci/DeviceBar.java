package org.iopersist.hw.pci;

import java.time.Duration;
import java.util.concurrent.locks.LockSupport;
import org.iopersist.hw.memory.Mmio;

/**
 * Software's side of a device's BAR: what a guest driver (here, a VMM or a test, in any process)
 * does to program the workload and read its counters. It only reads and writes registers under the
 * MMIO contract of {@link DeviceRegisters}; the device answers from its own thread, possibly in
 * another process, so every command waits for the answer (up to {@link #TIMEOUT}).
 *
 * <pre>{@code
 * DeviceBar dev = new DeviceBar(board.deviceBar(0));
 * dev.start(WorkloadSettings.writeVerify(iova, 16 * 4096, 256, 1));   // throws if the device refuses
 * try {
 *     dev.awaitSeq(1000);
 * } finally {
 *     dev.stop();
 * }
 * DeviceCounters c = dev.counters();
 * }</pre>
 *
 * Not thread safe: one driver per device at a time, as with real hardware.
 */
public final class DeviceBar {
    /** How long a command may take before the device is declared unresponsive. */
    public static final Duration TIMEOUT = Duration.ofSeconds(10);

    private final Mmio.Window bar;

    /** Software's view of the BAR window {@code bar} (from {@code Board.deviceBar(n)}). */
    public DeviceBar(final Mmio.Window bar) {
        this.bar = bar;
    }

    /** The BAR window itself. */
    public Mmio.Window window() {
        return bar;
    }

    /** ID register: vendor in 15:0, device in 31:16 ({@link DeviceRegisters#ID_VALUE}). */
    public int id() {
        return bar.read32(DeviceRegisters.ID);
    }

    /** SID register: segment in 31:16, source-id in 15:0. */
    public int sid() {
        return bar.read32(DeviceRegisters.SID);
    }

    /** STATUS register ({@code STATUS_*} bits). */
    public int status() {
        return bar.read32(DeviceRegisters.STATUS);
    }

    /** True while the workload runs (STATUS.RUNNING). */
    public boolean running() {
        return (status() & DeviceRegisters.STATUS_RUNNING) != 0;
    }

    /** True while the device's engine thread polls its CTRL register. */
    public boolean alive() {
        return (status() & DeviceRegisters.STATUS_ALIVE) != 0;
    }

    /** ERROR register: why the last START was refused. */
    public int error() {
        return bar.read32(DeviceRegisters.ERROR);
    }

    /** Clears STATUS.ERR (write-1-to-clear, by atomic AND so a concurrent RUNNING change survives). */
    public void clearError() {
        bar.clearBits32(DeviceRegisters.STATUS, DeviceRegisters.STATUS_ERR);
    }

    /** The settings registers as they are now (not necessarily what the device latched). */
    public WorkloadSettings settings() {
        return WorkloadSettings.readFrom(bar);
    }

    /**
     * Writes the settings, rings START and waits for the answer.
     *
     * @throws IllegalStateException if the device refuses (message carries the ERROR code) or does
     *                               not answer within {@link #TIMEOUT}
     */
    public void start(final WorkloadSettings settings) {
        final int error = tryStart(settings);
        if (error != DeviceRegisters.ERR_NONE) {
            throw new IllegalStateException(String.format("device sid=0x%x refused START: ERROR=%d (%s)",
                    sid(), error, errorName(error)));
        }
    }

    /**
     * Writes the settings, rings START and waits for the answer; returns the ERROR code
     * ({@link DeviceRegisters#ERR_NONE} if the workload runs). STATUS.ERR is cleared before ringing,
     * and left set after a refusal.
     */
    public int tryStart(final WorkloadSettings settings) {
        clearError();
        settings.writeTo(bar);
        command(DeviceRegisters.CTRL_START, "START");
        return (status() & DeviceRegisters.STATUS_ERR) != 0 ? error() : DeviceRegisters.ERR_NONE;
    }

    /** Stops the workload after its current record, and waits until STATUS shows it stopped. */
    public void stop() {
        command(DeviceRegisters.CTRL_STOP, "STOP");
        if (running()) {
            throw new IllegalStateException("device still RUNNING after STOP completed");
        }
    }

    /** Zeroes every counter and the latency histogram. */
    public void resetCounters() {
        command(DeviceRegisters.CTRL_RESET, "RESET");
    }

    /** Has the device publish its latency percentiles now, and returns them. */
    public LatencySummary snapshot() {
        command(DeviceRegisters.CTRL_SNAPSHOT, "SNAPSHOT");
        return latency();
    }

    /** PCI command register: bus mastering on or off (as a driver or the kernel at kexec sets it). */
    public void setBusMaster(final boolean enabled) {
        if (enabled) {
            bar.setBits32(DeviceRegisters.COMMAND, DeviceRegisters.COMMAND_BME);
        } else {
            bar.clearBits32(DeviceRegisters.COMMAND, DeviceRegisters.COMMAND_BME);
        }
    }

    public boolean busMaster() {
        return (bar.read32(DeviceRegisters.COMMAND) & DeviceRegisters.COMMAND_BME) != 0;
    }

    /** Records not issued because bus mastering was off. */
    public long masterAborts() {
        return bar.read64(DeviceRegisters.MASTER_ABORTS);
    }

    /** The counters as they are now. */
    public DeviceCounters counters() {
        return DeviceCounters.readFrom(bar);
    }

    /** The latency percentiles last published. */
    public LatencySummary latency() {
        return LatencySummary.readFrom(bar);
    }

    /** Waits until NEXT_SEQ reaches {@code seq}. */
    public void awaitSeq(final long seq) {
        await("NEXT_SEQ >= " + seq, () -> bar.read64(DeviceRegisters.NEXT_SEQ) >= seq);
    }

    /** Sets {@code bit} in CTRL and waits until the device has cleared it. */
    private void command(final int bit, final String name) {
        if ((status() & DeviceRegisters.STATUS_ALIVE) == 0) {
            throw new IllegalStateException("device sid=0x" + Integer.toHexString(sid())
                    + " is not alive (machine not started?); cannot " + name);
        }
        bar.setBits32(DeviceRegisters.CTRL, bit);
        await(name, () -> (bar.read32(DeviceRegisters.CTRL) & bit) == 0);
    }

    private void await(final String what, final java.util.function.BooleanSupplier done) {
        final long deadline = System.nanoTime() + TIMEOUT.toNanos();
        int spins = 0;
        while (!done.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                throw new IllegalStateException(String.format("device sid=0x%x did not answer %s in %s (STATUS=0x%x CTRL=0x%x)",
                        sid(), what, TIMEOUT, status(), bar.read32(DeviceRegisters.CTRL)));
            }
            // The device polls every few hundred microseconds when idle: spin briefly, then sleep.
            if (++spins < 100) {
                Thread.onSpinWait();
            } else {
                LockSupport.parkNanos(50_000);
            }
        }
    }

    /** A name for an ERROR code, for messages. */
    public static String errorName(final int error) {
        return switch (error) {
            case DeviceRegisters.ERR_NONE -> "none";
            case DeviceRegisters.ERR_WINDOW -> "bad window";
            case DeviceRegisters.ERR_RECORD_SIZE -> "bad record size";
            case DeviceRegisters.ERR_MODE -> "bad mode";
            case DeviceRegisters.ERR_MSI -> "bad MSI address";
            case DeviceRegisters.ERR_BUSY -> "busy";
            case DeviceRegisters.ERR_INTERNAL -> "internal error";
            default -> "unknown";
        };
    }
}
