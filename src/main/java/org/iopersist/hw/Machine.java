package org.iopersist.hw;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.iopersist.hw.pci.CompletionTrace;
import org.iopersist.hw.pci.PciDevice;
import org.iopersist.hw.vtd.RemappingUnit;

/**
 * The running machine: the hardware behind a {@link Board}. It owns the remapping units, the PCI
 * devices and the threads that make them act on their own: the register poller, and each device's
 * DMA engine. It also keeps the completion trace, each device's records per millisecond. It lives
 * through every kexec; kernels come and go on top of it.
 *
 * <p>A Machine runs the same inside a test JVM or as its own process ({@code iopersist machine}).
 */
public final class Machine implements AutoCloseable {
    private final Board board;
    private final List<RemappingUnit> units;
    private final List<PciDevice> devices;
    private final HardwarePoller poller;
    private final CompletionTrace trace;
    private boolean running;

    private Machine(final Board board, final boolean powerOn) {
        this.board = board;
        final MachineConfig cfg = board.config();
        final List<RemappingUnit> us = new ArrayList<>();
        for (int i = 0; i < cfg.units().size(); i++) {
            final RemappingUnit u = new RemappingUnit(i, board.memory(), board.unitRegisters(i), cfg.units().get(i));
            if (powerOn) {
                u.powerOn();
            } else {
                u.resume();
            }
            us.add(u);
        }
        this.units = List.copyOf(us);
        final List<PciDevice> ds = new ArrayList<>();
        for (int i = 0; i < cfg.devices().size(); i++) {
            final MachineConfig.DeviceConfig dc = cfg.devices().get(i);
            ds.add(new PciDevice(i, dc.bdf(), board.memory(), board.deviceBar(i), units.get(dc.unit()), powerOn));
        }
        this.devices = List.copyOf(ds);
        this.trace = CompletionTrace.create(board.directory(), devices.size());
        for (PciDevice d : devices) {
            d.traceCompletions(trace.recorder(d.index()));
        }
        this.poller = new HardwarePoller(units, board.mmio().wake());
    }

    /** Builds a new machine directory and powers the hardware on (not yet running). */
    public static Machine create(final Path dir, final MachineConfig config) {
        return new Machine(Board.create(dir, config), true);
    }

    /** Powers on the hardware of an existing machine directory; memory keeps its contents. */
    public static Machine powerOn(final Path dir) {
        return new Machine(Board.open(dir), true);
    }

    /** Starts the register poller and the device engines. */
    public synchronized Machine start() {
        if (!running) {
            poller.start();
            for (PciDevice d : devices) {
                d.start();
            }
            running = true;
        }
        return this;
    }

    public synchronized void stop() {
        if (running) {
            for (PciDevice d : devices) {
                d.stop();
            }
            poller.stop();
            running = false;
        }
    }

    public Board board() {
        return board;
    }

    public List<RemappingUnit> units() {
        return units;
    }

    /** Each device's completed records per millisecond since power-on ({@code completions} in the directory). */
    public CompletionTrace completionTrace() {
        return trace;
    }

    public List<PciDevice> devices() {
        return devices;
    }

    public PciDevice device(final org.iopersist.hw.pci.Bdf bdf) {
        for (PciDevice d : devices) {
            if (d.bdf().equals(bdf)) {
                return d;
            }
        }
        throw new IllegalArgumentException("no device " + bdf);
    }

    @Override
    public void close() {
        stop();
        trace.close();
        board.close();
    }
}
