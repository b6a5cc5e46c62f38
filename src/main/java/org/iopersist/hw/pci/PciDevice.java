package org.iopersist.hw.pci;

import org.iopersist.hw.Board;
import org.iopersist.hw.Mmio;
import org.iopersist.hw.vtd.RemappingUnit;
import org.iopersist.hw.vtd.Requester;

/**
 * A PCI function whose DMA goes through one remapping unit. (Workload engine: see issue 3.)
 */
public final class PciDevice {
    private final int index;
    private final Bdf bdf;
    private final RemappingUnit unit;
    private final Mmio.Window bar;
    private final Requester requester;

    public PciDevice(final int index, final Bdf bdf, final Board board, final RemappingUnit unit, final boolean powerOn) {
        this.index = index;
        this.bdf = bdf;
        this.unit = unit;
        this.bar = board.deviceBar(index);
        this.requester = new Requester(bdf.sourceId());
        unit.attach(requester);
    }

    public int index() {
        return index;
    }

    public Bdf bdf() {
        return bdf;
    }

    public RemappingUnit unit() {
        return unit;
    }

    public Mmio.Window bar() {
        return bar;
    }

    public Requester requester() {
        return requester;
    }

    public void start() {
    }

    public void stop() {
    }
}
