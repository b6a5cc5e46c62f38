package org.iopersist.cli;

import static org.iopersist.cli.InspectCommand.hex;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.LongUnaryOperator;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.DeviceCounters;
import org.iopersist.hw.pci.DeviceRegisters;
import org.iopersist.hw.pci.LatencySummary;
import org.iopersist.hw.pci.RecordChecker;
import org.iopersist.hw.pci.WorkloadMode;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.FaultRecord;
import org.iopersist.hw.vtd.Translation;
import org.iopersist.hw.vtd.VtdRegisters;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code inspect devices}: each PCI device's BAR decoded (workload, counters, faults by reason,
 * latency percentiles), the fault records its unit holds for it, and its records in guest RAM:
 * every slot of its window found where the unit's tables send its IOVA, and checked as the
 * device wrote it ({@link RecordChecker}, with {@link Translation} for the IOVA-to-physical map).
 */
@Command(name = "devices", mixinStandardHelpOptions = true,
        description = "Each device's workload, counters, records in guest RAM, faults and latency summary.")
final class InspectDevices implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Mixin
    private InspectCommand.Target target;

    @ParentCommand
    private InspectCommand parent;

    @Option(names = "--device", paramLabel = "BDF", description = "only this device")
    private String device;

    record Workload(String window, String windowLast, long length, String mode, int recordSize, long generation, long paceNanos,
                    String msiAddress, int msiInterval) {
    }

    record Counters(long nextSeq, long ops, long bytes, long corrupt, long interrupts, long faults, double maxGapMs,
                    long masterAborts, Map<String, Long> faultsByReason) {
    }

    record Latency(long samples, double p50Us, double p90Us, double p99Us, double p999Us, double maxUs, long epoch) {
    }

    record Records(long slots, long checked, long found, long stale, long newer, long empty, long corrupt, long unmapped,
                   List<String> problems, String note) {
    }

    record Fault(int index, boolean pending, String access, String reason, String page) {
    }

    record Device(int index, String bdf, String sid, int unit, String bar, boolean alive, boolean running, boolean busMaster,
                  String error, Workload workload, Counters counters, Latency latency, Records records, List<Fault> unitFaults) {
    }

    record View(List<Device> devices) {
    }

    @Override
    public Integer call() {
        final var only = device == null ? null : InspectCommand.parseBdf(device);
        try (Board board = target.open(parent)) {
            final List<Device> out = new ArrayList<>();
            final List<MachineConfig.DeviceConfig> devs = board.config().devices();
            if (only != null && devs.stream().noneMatch(d -> d.bdf().equals(only))) {
                throw new IllegalArgumentException("no device " + only + " on this machine (it has "
                        + devs.stream().map(d -> d.bdf().toString()).toList() + ")");
            }
            for (int i = 0; i < devs.size(); i++) {
                if (only == null || devs.get(i).bdf().equals(only)) {
                    out.add(device(board, i, devs.get(i)));
                }
            }
            final View view = new View(out);
            if (target.json) {
                InspectCommand.printJson(spec, view);
            } else {
                print(spec.commandLine().getOut(), view);
            }
            return 0;
        }
    }

    private static Device device(final Board board, final int index, final MachineConfig.DeviceConfig cfg) {
        final Mmio.Window barRegs = board.deviceBar(index);
        final DeviceBar bar = new DeviceBar(barRegs);
        final int status = bar.status();
        final WorkloadSettings s = bar.settings();
        final WorkloadMode mode = WorkloadMode.ofCode(s.mode());
        final Workload w = new Workload(hex(s.iovaBase()), hex(s.iovaBase() + s.length() - 1), s.length(),
                mode != null ? mode.name() : "none (" + s.mode() + ")", s.recordSize(), s.generation(), s.paceNanos(),
                hex(s.msiIova()), s.msiInterval());
        final DeviceCounters c = bar.counters();
        final Map<String, Long> byReason = new LinkedHashMap<>();
        final long[] reasons = c.faultsByReason();
        for (int r = 0; r < reasons.length; r++) {
            if (reasons[r] != 0) {
                final FaultReason fr = FaultReason.ofCode(r);
                byReason.put(fr != null ? fr.name() : "reason" + r, reasons[r]);
            }
        }
        final Counters counters = new Counters(c.nextSeq(), c.ops(), c.bytes(), c.corrupt(), c.interrupts(), c.faults(),
                c.maxGapNanos() / 1e6, bar.masterAborts(), byReason);
        final LatencySummary l = bar.latency();
        final Latency latency = new Latency(l.count(), l.p50() / 1e3, l.p90() / 1e3, l.p99() / 1e3, l.p999() / 1e3, l.max() / 1e3,
                l.epoch());
        final List<Fault> faults = new ArrayList<>();
        final Mmio.Window unitRegs = board.unitRegisters(cfg.unit());
        final long cap = unitRegs.read64(VtdRegisters.CAP);
        final int nfr = cap == 0 ? 0 : org.iopersist.hw.vtd.Capability.decode(cap).nfr();
        for (int i = 0; i < nfr; i++) {
            final FaultRecord f = FaultRecord.read(unitRegs, i);
            if (f.used() && f.sid() == cfg.bdf().sourceId()) {
                final FaultReason reason = f.reason();
                faults.add(new Fault(i, f.pending(), f.read() ? "read" : "write", reason != null ? reason.name() : "reason" + f.reasonCode(),
                        hex(f.page())));
            }
        }
        return new Device(index, cfg.bdf().toString(), String.format("0x%04x", cfg.bdf().sourceId()), cfg.unit(),
                hex(barRegs.base()), (status & DeviceRegisters.STATUS_ALIVE) != 0, (status & DeviceRegisters.STATUS_RUNNING) != 0,
                bar.busMaster(), (status & DeviceRegisters.STATUS_ERR) != 0 ? DeviceBar.errorName(bar.error()) : null, w, counters,
                latency, records(board, cfg, barRegs, (status & DeviceRegisters.STATUS_RUNNING) != 0), faults);
    }

    /** Every slot the workload reached, looked for where the unit's tables put its IOVA now. */
    private static Records records(final Board board, final MachineConfig.DeviceConfig cfg, final Mmio.Window bar,
            final boolean running) {
        final RecordChecker.Expectation e;
        try {
            e = RecordChecker.Expectation.fromBar(bar);
        } catch (IllegalArgumentException ex) {
            return new Records(0, 0, 0, 0, 0, 0, 0, 0, List.of(), "no workload programmed");
        }
        final LongUnaryOperator iovaToPhys = new LongUnaryOperator() {
            private long leafIova = -1;
            private long leafSize;
            private long leafPhys;

            @Override
            public long applyAsLong(final long iova) {
                if (leafIova >= 0 && iova - leafIova >= 0 && iova - leafIova < leafSize) {
                    return leafPhys + (iova - leafIova);
                }
                final Translation t = Translation.walk(board.memory(), board.unitRegisters(cfg.unit()),
                        board.config().units().get(cfg.unit()), cfg.bdf().sourceId(), iova);
                if (!t.mapped()) {
                    return -1;
                }
                leafSize = t.leafSize();
                leafIova = iova & -leafSize;
                leafPhys = t.phys() & -leafSize;
                return t.phys();
            }
        };
        final RecordChecker.Report r = new RecordChecker(board.memory()).check(e, iovaToPhys);
        // A running workload writes on while the check reads: later laps are expected then, not problems.
        final List<String> problems = r.problems().stream()
                .filter(p -> !(running && p.verdict() == RecordChecker.Verdict.NEWER)).map(Object::toString).toList();
        return new Records(e.slots(), r.checked(), r.found(), r.stale(), r.newer(), r.empty(), r.corrupt(), r.unmapped(),
                problems, running ? "the workload runs: a slot it wrote during the check shows as newer" : null);
    }

    private static void print(final PrintWriter out, final View v) {
        for (Device d : v.devices()) {
            out.printf("device %d %s (sid %s, unit %d, BAR at mmio %s): %s, %s, bus master %s%s%n", d.index(), d.bdf(), d.sid(),
                    d.unit(), d.bar(), d.alive() ? "alive" : "not alive (machine stopped)", d.running() ? "running" : "stopped",
                    d.busMaster() ? "on" : "off", d.error() != null ? ", START refused: " + d.error() : "");
            final Workload w = d.workload();
            out.printf("  workload  %s over iova %s-%s (%s), %d-byte records, generation %d, pace %d ns%n", w.mode(), w.window(),
                    w.windowLast(), InspectCommand.bytes(w.length()), w.recordSize(), w.generation(), w.paceNanos());
            final Counters c = d.counters();
            out.printf("  counters  seq %d, ops %d, %s moved, corrupt %d, interrupts %d, faults %d%s, longest gap %.2f ms, master aborts %d%n",
                    c.nextSeq(), c.ops(), InspectCommand.bytes(c.bytes()), c.corrupt(), c.interrupts(), c.faults(),
                    c.faultsByReason().isEmpty() ? "" : " " + c.faultsByReason(), c.maxGapMs(), c.masterAborts());
            final Latency l = d.latency();
            out.printf("  latency   %d samples: p50 %.1f us, p90 %.1f, p99 %.1f, p99.9 %.1f, max %.1f (publication %d)%n", l.samples(),
                    l.p50Us(), l.p90Us(), l.p99Us(), l.p999Us(), l.maxUs(), l.epoch());
            final Records r = d.records();
            if (r.note() != null && r.slots() == 0) {
                out.printf("  records   %s%n", r.note());
            } else {
                out.printf("  records   %d slots, %d reached: %d in place, %d newer, %d stale, %d empty, %d corrupt, %d unmapped%s%n",
                        r.slots(), r.checked(), r.found(), r.newer(), r.stale(), r.empty(), r.corrupt(), r.unmapped(),
                        r.note() != null ? " (" + r.note() + ")" : "");
                for (String p : r.problems()) {
                    out.printf("            %s%n", p);
                }
            }
            for (Fault f : d.unitFaults()) {
                out.printf("  FRCD[%d]   %s %s page %s: %s%n", f.index(), f.pending() ? "pending" : "cleared", f.access(), f.page(), f.reason());
            }
        }
        out.flush();
    }
}
