package org.iopersist.cli;

import static org.iopersist.cli.InspectCommand.hex;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.iopersist.hw.Board;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.memory.Mmio;
import org.iopersist.hw.memory.PhysicalMemory;
import org.iopersist.hw.pci.Bdf;
import org.iopersist.hw.vtd.Capability;
import org.iopersist.hw.vtd.ContextEntry;
import org.iopersist.hw.vtd.ExtCapability;
import org.iopersist.hw.vtd.FaultReason;
import org.iopersist.hw.vtd.FaultRecord;
import org.iopersist.hw.vtd.InvDesc;
import org.iopersist.hw.vtd.RootEntry;
import org.iopersist.hw.vtd.Translation;
import org.iopersist.hw.vtd.UnitConfig;
import org.iopersist.hw.vtd.VtdRegisters;
import org.iopersist.kernel.iommu.intel.TableRuns;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code inspect vtd}: every remapping unit as software and hardware see it, from the MMIO file and
 * the tables in memory: registers decoded, fault records, the invalidation queue, root and context
 * entries, and per device its domain, DID and mappings merged into runs. With {@code --iova} it
 * walks one address as the unit would, entry by entry.
 */
@Command(name = "vtd", mixinStandardHelpOptions = true,
        description = {"VT-d units: registers, faults, invalidation queue, root/context entries, per device its domain, DID and mappings.",
            "--device BDF --iova X translates one address and names the entry that decided it."})
final class InspectVtd implements Callable<Integer> {
    /** Descriptors shown before IQH: the recent past of the queue. */
    private static final int QUEUE_HISTORY = 8;

    @Spec
    private CommandSpec spec;

    @Mixin
    private InspectCommand.Target target;

    @ParentCommand
    private InspectCommand parent;

    @Option(names = "--device", paramLabel = "BDF", description = "only this device, e.g. 00:02.0")
    private String device;

    @Option(names = "--iova", paramLabel = "X", description = "with --device: translate this IOVA, e.g. 0x1234000")
    private String iova;

    record Registers(String ver, String cap, String ecap, String gcmd, String gsts, String rtaddr, String fsts, String fectl,
                     String iqh, String iqt, String iqa, String ics, String iqercd) {
    }

    record Cap(int nd, int domains, List<Integer> levels, int mgaw, List<String> largePages, boolean psi, int nfr, int mamv,
               String fro, boolean cachingMode) {
    }

    record Ecap(boolean coherent, boolean queuedInvalidation, boolean passThrough, String iro) {
    }

    record Fault(int index, boolean pending, String access, String reason, int reasonCode, String sid, String bdf, String page) {
    }

    record Descriptor(int slot, String qw0, String qw1, String decoded, boolean pending) {
    }

    record Queue(boolean enabled, String base, int slots, int head, int tail, int pending, List<Descriptor> descriptors) {
    }

    record Run(String iova, String last, String phys, long length, String perms, String leaf, long leaves) {
    }

    record Device(String bdf, String sid, boolean configured, String contextEntry, String lo, String hi, boolean present,
                  Integer did, Integer levels, String pgd, boolean fpd, Integer translationType, String sameDomainAs,
                  long mappedBytes, long tablePages, List<Run> runs, String problem) {
    }

    record RootEntryView(int bus, String entry, String contextTable) {
    }

    record Unit(int index, int haw, Registers registers, Cap cap, Ecap ecap, List<String> gcmd, List<String> gsts,
                List<String> fsts, int fri, boolean translationEnabled, String rootTable, Queue queue, List<Fault> faults,
                List<RootEntryView> rootEntries, List<Device> devices) {
    }

    record Step(String what, int level, int index, String entry, String value, String hi, String meaning) {
    }

    record TranslationView(String device, String sid, int unit, String iova, boolean mapped, String phys, String page,
                           String leaf, String leafPhys, String perms, String read, String write, String decidedBy,
                           boolean faultsRecorded, List<Step> walk) {
    }

    record View(List<Unit> units) {
    }

    @Override
    public Integer call() {
        if (iova != null && device == null) {
            throw new IllegalArgumentException("--iova needs --device BDF: a translation is per device");
        }
        final Bdf only = device == null ? null : InspectCommand.parseBdf(device);
        final long address = iova == null ? -1 : InspectCommand.parseAddress("--iova", iova);
        try (Board board = target.open(parent)) {
            final MachineConfig config = board.config();
            if (only != null && config.devices().stream().noneMatch(d -> d.bdf().equals(only))) {
                throw new IllegalArgumentException("no device " + only + " on this machine (it has " + config.devices().stream()
                        .map(d -> d.bdf().toString()).toList() + ")");
            }
            if (address >= 0) {
                final TranslationView t = translate(board, only, address);
                if (target.json) {
                    InspectCommand.printJson(spec, t);
                } else {
                    printTranslation(spec.commandLine().getOut(), t);
                }
                return 0;
            }
            final List<Unit> units = new ArrayList<>();
            for (int u = 0; u < config.units().size(); u++) {
                units.add(unit(board, u, only));
            }
            final View view = new View(units);
            if (target.json) {
                InspectCommand.printJson(spec, view);
            } else {
                print(spec.commandLine().getOut(), view, only != null);
            }
            return 0;
        }
    }

    // ------------------------------------------------------------------ reading

    static int unitOf(final MachineConfig config, final Bdf bdf) {
        return config.devices().stream().filter(d -> d.bdf().equals(bdf)).findFirst().orElseThrow().unit();
    }

    static TranslationView translate(final Board board, final Bdf bdf, final long iova) {
        final int u = unitOf(board.config(), bdf);
        final Translation t = Translation.walk(board.memory(), board.unitRegisters(u), board.config().units().get(u),
                bdf.sourceId(), iova);
        final List<Step> steps = new ArrayList<>();
        for (Translation.Step s : t.steps()) {
            steps.add(new Step(s.what(), s.level(), s.index(), hex(s.entryPhys()), hex(s.lo()),
                    s.level() == 0 ? hex(s.hi()) : null, s.meaning()));
        }
        final Translation.Step last = t.steps().isEmpty() ? null : t.steps().getLast();
        final String decided;
        if (last == null) {
            decided = t.fault() == null ? "translation is off (GSTS.TES = 0): the address passes through"
                    : "translation is off and the address lies outside memory";
        } else if (t.fault() == FaultReason.ADDRESS_BEYOND_MGAW) {
            decided = "the IOVA is wider than the context entry's address width";
        } else {
            decided = String.format("%s[%d] at 0x%x", last.what(), last.index(), last.entryPhys());
        }
        return new TranslationView(bdf.toString(), String.format("0x%04x", bdf.sourceId()), u, hex(iova), t.mapped(),
                t.mapped() ? hex(t.phys()) : null, t.mapped() ? hex(t.phys() & ~(PhysicalMemory.FRAME_SIZE - 1)) : null,
                t.mapped() ? Translation.sizeText(t.leafSize()) : null, t.mapped() ? hex(t.phys() & -t.leafSize()) : null,
                t.mapped() ? (t.readable() ? "r" : "-") + (t.writable() ? "w" : "-") : null,
                outcome(t.fault(false)), outcome(t.fault(true)), decided, !t.suppressed(), steps);
    }

    private static String outcome(final FaultReason r) {
        return r == null ? "ok" : String.format("%s (0x%x)", r.name(), r.code);
    }

    private static Unit unit(final Board board, final int u, final Bdf only) {
        final Mmio.Window regs = board.unitRegisters(u);
        final UnitConfig uc = board.config().units().get(u);
        final Registers r = new Registers(hex(regs.read32(VtdRegisters.VER)), hex(regs.read64(VtdRegisters.CAP)),
                hex(regs.read64(VtdRegisters.ECAP)), hex(regs.read32(VtdRegisters.GCMD) & 0xFFFF_FFFFL),
                hex(regs.read32(VtdRegisters.GSTS) & 0xFFFF_FFFFL), hex(regs.read64(VtdRegisters.RTADDR)),
                hex(regs.read32(VtdRegisters.FSTS) & 0xFFFF_FFFFL), hex(regs.read32(VtdRegisters.FECTL) & 0xFFFF_FFFFL),
                hex(regs.read64(VtdRegisters.IQH)), hex(regs.read64(VtdRegisters.IQT)), hex(regs.read64(VtdRegisters.IQA)),
                hex(regs.read32(VtdRegisters.ICS) & 0xFFFF_FFFFL), hex(regs.read64(VtdRegisters.IQERCD)));
        final long capValue = regs.read64(VtdRegisters.CAP);
        if (capValue == 0) {
            throw new IllegalStateException("unit " + u + " has never been powered on (CAP reads 0): start the machine once");
        }
        final Capability cap = Capability.decode(capValue);
        final List<Integer> levels = new ArrayList<>();
        for (int l = 3; l <= 5; l++) {
            if (cap.supportsLevels(l)) {
                levels.add(l);
            }
        }
        final List<String> large = new ArrayList<>();
        if (cap.supports2M()) {
            large.add("2M");
        }
        if (cap.supports1G()) {
            large.add("1G");
        }
        final Cap capView = new Cap(cap.nd(), cap.domains(), levels, cap.mgaw(), large, cap.psi(), cap.nfr(), cap.mamv(),
                hex(cap.fro()), cap.cachingMode());
        final ExtCapability ecap = ExtCapability.decode(regs.read64(VtdRegisters.ECAP));
        final Ecap ecapView = new Ecap(ecap.coherent(), ecap.queuedInval(), ecap.passThrough(), hex(ecap.iro()));
        final int gcmd = regs.read32(VtdRegisters.GCMD);
        final int gsts = regs.read32(VtdRegisters.GSTS);
        final int fsts = regs.read32(VtdRegisters.FSTS);
        final boolean te = (gsts & VtdRegisters.GSTS_TES) != 0;
        final long root = (gsts & VtdRegisters.GSTS_RTPS) != 0 ? regs.read64(VtdRegisters.RTADDR) & VtdRegisters.RTADDR_ADDR_MASK : -1;

        final List<Fault> faults = new ArrayList<>();
        for (int i = 0; i < cap.nfr(); i++) {
            final FaultRecord f = FaultRecord.read(regs, i);
            if (!f.used()) {
                continue;
            }
            final FaultReason reason = f.reason();
            faults.add(new Fault(i, f.pending(), f.read() ? "read" : "write",
                    reason != null ? reason.name() : "unknown", f.reasonCode(), String.format("0x%04x", f.sid()),
                    bdfOf(board.config(), u, f.sid()), hex(f.page())));
        }
        final List<RootEntryView> roots = new ArrayList<>();
        final List<Device> devices = new ArrayList<>();
        if (te && root >= 0) {
            readTables(board, u, uc, cap, root, only, roots, devices);
        }
        // Devices the platform describes behind this unit that have no context entry: blocked.
        for (MachineConfig.DeviceConfig d : board.config().devices()) {
            if (d.unit() != u || (only != null && !d.bdf().equals(only))) {
                continue;
            }
            final String b = d.bdf().toString();
            if (devices.stream().noneMatch(x -> x.bdf().equals(b))) {
                devices.add(new Device(b, String.format("0x%04x", d.bdf().sourceId()), true, null, null, null, false,
                        null, null, null, false, null, null, 0, 0, List.of(),
                        te ? "no context entry: blocked (every DMA faults)" : "translation is off: DMA passes through untranslated"));
            }
        }
        devices.sort(java.util.Comparator.comparing(Device::bdf));
        return new Unit(u, uc.haw(), r, capView, ecapView, bits(gcmd, GCMD_NAMES), bits(gsts, GSTS_NAMES), fstsBits(fsts),
                (fsts & VtdRegisters.FSTS_FRI_MASK) >>> VtdRegisters.FSTS_FRI_SHIFT, te, root >= 0 ? hex(root) : null,
                queue(board.memory(), regs), faults, roots, devices);
    }

    private static String bdfOf(final MachineConfig config, final int unit, final int sid) {
        for (MachineConfig.DeviceConfig d : config.devices()) {
            if (d.unit() == unit && d.bdf().sourceId() == sid) {
                return d.bdf().toString();
            }
        }
        return new Bdf(0, sid >>> 8, (sid >>> 3) & 0x1F, sid & 7).toString();
    }

    private static void readTables(final Board board, final int u, final UnitConfig uc, final Capability cap, final long root,
            final Bdf only, final List<RootEntryView> roots, final List<Device> devices) {
        final PhysicalMemory mem = board.memory();
        if (!mem.contains(root, RootEntry.ENTRIES * RootEntry.SIZE)) {
            return;
        }
        final Map<Long, String> domains = new HashMap<>(); // pgd -> first device seen in it
        final Map<Long, List<Run>> runsByPgd = new HashMap<>();
        final long hawMask = (1L << uc.haw()) - 1;
        for (int bus = 0; bus < RootEntry.ENTRIES; bus++) {
            final long re = RootEntry.address(root, bus);
            final long lo = mem.load64Acquire(re);
            if (!RootEntry.present(lo)) {
                continue;
            }
            final long ctp = RootEntry.contextTable(lo);
            roots.add(new RootEntryView(bus, hex(re), hex(ctp)));
            if (!mem.contains(ctp, ContextEntry.ENTRIES * ContextEntry.SIZE) || (ctp & ~hawMask) != 0) {
                continue;
            }
            for (int devfn = 0; devfn < ContextEntry.ENTRIES; devfn++) {
                final long ce = ContextEntry.address(ctp, devfn);
                final long clo = mem.load64Acquire(ce);
                final long chi = mem.load64(ce + 8);
                if (!ContextEntry.present(clo)) {
                    continue;
                }
                final int sid = bus << 8 | devfn;
                final String bdf = bdfOf(board.config(), u, sid);
                if (only != null && !only.toString().equals(bdf)) {
                    continue;
                }
                final boolean configured = board.config().devices().stream().anyMatch(d -> d.unit() == u && d.bdf().toString().equals(bdf));
                final int aw = ContextEntry.addressWidth(chi);
                final int levels = ContextEntry.levels(aw);
                final long pgd = ContextEntry.slptptr(clo);
                final int did = ContextEntry.domainId(chi);
                String problem = null;
                if (ContextEntry.translationType(clo) != ContextEntry.TT_MULTI_LEVEL || !cap.supportsLevels(levels)
                        || did >= cap.domains() || (pgd & ~hawMask) != 0) {
                    problem = "the unit refuses this context entry (CONTEXT_INVALID or CONTEXT_RESERVED): every DMA faults";
                }
                final String first = domains.putIfAbsent(pgd, bdf);
                List<Run> runs = List.of();
                long mapped = 0;
                long tablePages = 0;
                if (problem == null) {
                    try {
                        runs = runsByPgd.computeIfAbsent(pgd, p -> runs(mem, p, levels));
                        for (Run r : runs) {
                            mapped += r.length();
                        }
                        tablePages = TableRuns.tablePages(mem, pgd, levels);
                    } catch (IllegalStateException e) {
                        problem = e.getMessage();
                    }
                }
                devices.add(new Device(bdf, String.format("0x%04x", sid), configured, hex(ce), hex(clo), hex(chi), true, did,
                        levels, hex(pgd), ContextEntry.faultProcessingDisabled(clo), ContextEntry.translationType(clo),
                        first, mapped, tablePages, runs, problem));
            }
        }
    }

    private static List<Run> runs(final PhysicalMemory mem, final long pgd, final int levels) {
        final List<Run> out = new ArrayList<>();
        for (TableRuns.Run r : TableRuns.of(mem, pgd, levels)) {
            out.add(new Run(hex(r.iova()), hex(r.iova() + r.length() - 1), hex(r.phys()), r.length(), TableRuns.protText(r.prot()),
                    Translation.sizeText(r.leafSize()), r.leaves()));
        }
        return out;
    }

    private static Queue queue(final PhysicalMemory mem, final Mmio.Window regs) {
        final boolean on = (regs.read32(VtdRegisters.GSTS) & VtdRegisters.GSTS_QIES) != 0;
        final long iqa = regs.read64(VtdRegisters.IQA);
        final long base = iqa & VtdRegisters.IQA_ADDR_MASK;
        final int slots = VtdRegisters.queueSlots(iqa);
        final int head = (int) (regs.read64(VtdRegisters.IQH) >>> 4);
        final int tail = (int) (regs.read64(VtdRegisters.IQT) >>> 4);
        final List<Descriptor> descs = new ArrayList<>();
        int pending = 0;
        if (on && mem.contains(base, slots * InvDesc.SIZE) && head < slots && tail < slots) {
            pending = Math.floorMod(tail - head, slots);
            for (int k = -Math.min(QUEUE_HISTORY, slots - pending); k < pending; k++) {
                final int slot = Math.floorMod(head + k, slots);
                final long qw0 = mem.load64(base + slot * InvDesc.SIZE);
                final long qw1 = mem.load64(base + slot * InvDesc.SIZE + 8);
                if (k < 0 && qw0 == 0 && qw1 == 0) {
                    continue; // never used yet
                }
                descs.add(new Descriptor(slot, hex(qw0), hex(qw1), InvDesc.describe(qw0, qw1), k >= 0));
            }
        }
        return new Queue(on, hex(base), slots, head, tail, pending, descs);
    }

    private static final String[] GCMD_NAMES = names("TE", "SRTP", "SFL", "EAFL", "WBF", "QIE", "IRE", "SIRTP", "CFI");
    private static final String[] GSTS_NAMES = names("TES", "RTPS", "FLS", "AFLS", "WBFS", "QIES", "IRES", "IRTPS", "CFIS");

    /** Names of bits 31 down to 23, indexed by bit position. */
    private static String[] names(final String... fromBit31) {
        final String[] out = new String[32];
        for (int i = 0; i < fromBit31.length; i++) {
            out[31 - i] = fromBit31[i];
        }
        return out;
    }

    private static List<String> bits(final int value, final String[] names) {
        final List<String> out = new ArrayList<>();
        for (int b = 31; b >= 0; b--) {
            if ((value & (1 << b)) != 0) {
                out.add(names[b] != null ? names[b] : "bit" + b);
            }
        }
        return out;
    }

    private static List<String> fstsBits(final int fsts) {
        final List<String> out = new ArrayList<>();
        final Map<Integer, String> names = new LinkedHashMap<>();
        names.put(VtdRegisters.FSTS_PFO, "PFO");
        names.put(VtdRegisters.FSTS_PPF, "PPF");
        names.put(VtdRegisters.FSTS_IQE, "IQE");
        names.put(VtdRegisters.FSTS_ICE, "ICE");
        names.put(VtdRegisters.FSTS_ITE, "ITE");
        names.forEach((bit, name) -> {
            if ((fsts & bit) != 0) {
                out.add(name);
            }
        });
        return out;
    }

    // ------------------------------------------------------------------ text

    private static void print(final PrintWriter out, final View view, final boolean oneDevice) {
        for (Unit u : view.units()) {
            if (!oneDevice) {
                printRegisters(out, u);
            }
            for (Device d : u.devices()) {
                printDevice(out, d);
            }
        }
        out.flush();
    }

    private static void printRegisters(final PrintWriter out, final Unit u) {
        final Registers r = u.registers();
        final Cap c = u.cap();
        out.printf("unit %d: translation %s, root table %s, queued invalidation %s, HAW %d%n", u.index(),
                u.translationEnabled() ? "on" : "off", u.rootTable() != null ? u.rootTable() + " (legacy mode)" : "not set",
                u.queue().enabled() ? "on" : "off", u.haw());
        out.printf("  VER     %-18s %s%n", r.ver(), version(r.ver()));
        out.printf("  CAP     %-18s ND=%d (%d domains) SAGAW=%s MGAW=%d SLLPS=%s%s NFR=%d MAMV=%d FRO=%s%s%n", r.cap(), c.nd(),
                c.domains(), levelsText(c.levels()), c.mgaw(), c.largePages().isEmpty() ? "none" : String.join(",", c.largePages()),
                c.psi() ? " PSI" : "", c.nfr(), c.mamv(), c.fro(), c.cachingMode() ? " CM" : "");
        final Ecap e = u.ecap();
        out.printf("  ECAP    %-18s %sIRO=%s%n", r.ecap(), (e.coherent() ? "C " : "") + (e.queuedInvalidation() ? "QI " : "")
                + (e.passThrough() ? "PT " : ""), e.iro());
        out.printf("  GCMD    %-18s %s%n", r.gcmd(), String.join(" ", u.gcmd()));
        out.printf("  GSTS    %-18s %s%n", r.gsts(), String.join(" ", u.gsts()));
        out.printf("  RTADDR  %-18s %s%n", r.rtaddr(), "root table " + hex(Long.decode(r.rtaddr()) & VtdRegisters.RTADDR_ADDR_MASK)
                + ((Long.decode(r.rtaddr()) & VtdRegisters.RTADDR_TTM_MASK) == 0 ? ", TTM legacy" : ", TTM not legacy"));
        out.printf("  FSTS    %-18s %sFRI=%d%n", r.fsts(), u.fsts().isEmpty() ? "" : String.join(" ", u.fsts()) + " ", u.fri());
        final Queue q = u.queue();
        out.printf("  IQA     %-18s ring %s, %d slots%n", r.iqa(), q.base(), q.slots());
        out.printf("  IQH     %-18s slot %d%n", r.iqh(), q.head());
        out.printf("  IQT     %-18s slot %d (%s)%n", r.iqt(), q.tail(), q.pending() == 0 ? "queue empty" : q.pending() + " pending");
        out.printf("  ICS     %-18s %s%n", r.ics(), (Long.decode(r.ics()) & VtdRegisters.ICS_IWC) != 0 ? "IWC" : "");
        out.printf("  IQERCD  %s%n", r.iqercd());
        if (u.faults().isEmpty()) {
            out.println("  faults: none recorded");
        } else {
            out.println("  faults:");
            for (Fault f : u.faults()) {
                out.printf("    FRCD[%d] %s %s sid %s (%s) page %s: %s (0x%x)%n", f.index(), f.pending() ? "pending" : "cleared",
                        f.access(), f.sid(), f.bdf(), f.page(), f.reason(), f.reasonCode());
            }
        }
        if (!q.descriptors().isEmpty()) {
            out.println("  invalidation queue (recent, then pending):");
            for (Descriptor d : q.descriptors()) {
                out.printf("    [%3d] %s %-18s %-18s %s%n", d.slot(), d.pending() ? "pending" : "done   ", d.qw0(), d.qw1(), d.decoded());
            }
        }
        for (RootEntryView re : u.rootEntries()) {
            out.printf("  root[0x%02x] at %s -> context table %s%n", re.bus(), re.entry(), re.contextTable());
        }
    }

    private static String version(final String ver) {
        final int v = (int) (long) Long.decode(ver);
        return (v >>> 4 & 0xF) + "." + (v & 0xF);
    }

    private static String levelsText(final List<Integer> levels) {
        return String.join(",", levels.stream().map(l -> l + "-level").toList());
    }

    private static void printDevice(final PrintWriter out, final Device d) {
        if (!d.present()) {
            out.printf("  device %s (sid %s): %s%n", d.bdf(), d.sid(), d.problem());
            return;
        }
        out.printf("  device %s (sid %s)%s: context %s: DID %d, domain pgd %s (%d-level)%s%n", d.bdf(), d.sid(),
                d.configured() ? "" : " [not in machine.properties]", d.contextEntry(), d.did(), d.pgd(), d.levels(),
                d.fpd() ? ", FPD (faults not recorded)" : "");
        if (d.problem() != null) {
            out.printf("    %s%n", d.problem());
            return;
        }
        if (d.sameDomainAs() != null) {
            out.printf("    same domain as %s: %s mapped%n", d.sameDomainAs(), InspectCommand.bytes(d.mappedBytes()));
            return;
        }
        out.printf("    %s mapped in %d run%s, %d table pages%n", InspectCommand.bytes(d.mappedBytes()), d.runs().size(),
                d.runs().size() == 1 ? "" : "s", d.tablePages());
        for (Run r : d.runs()) {
            out.printf("    iova %18s-%-18s -> phys %-18s %10s %s %d x %s%n", r.iova(), r.last(), r.phys(),
                    InspectCommand.bytes(r.length()), r.perms(), r.leaves(), r.leaf());
        }
    }

    static void printTranslation(final PrintWriter out, final TranslationView t) {
        out.printf("%s (sid %s, unit %d) IOVA %s:%n", t.device(), t.sid(), t.unit(), t.iova());
        for (Step s : t.walk()) {
            final String where = String.format("%-8s[%3d] at %-14s", s.what(), s.index(), s.entry());
            if (s.hi() != null) {
                out.printf("  %s lo %-18s hi %-18s %s%n", where, s.value(), s.hi(), s.meaning());
            } else {
                out.printf("  %s %-40s %s%n", where, s.value(), s.meaning());
            }
        }
        if (t.mapped()) {
            out.printf("=> phys %s: 4 KiB page %s%s, %s; decided by %s; read %s, write %s%n", t.phys(), t.page(),
                    "4K".equals(t.leaf()) ? "" : " of the " + t.leaf() + " leaf at " + t.leafPhys(), t.perms(), t.decidedBy(),
                    t.read(), t.write());
        } else {
            out.printf("=> no translation: read faults %s, write faults %s; decided by %s%s%n", t.read(), t.write(), t.decidedBy(),
                    t.faultsRecorded() ? "" : " (FPD: the fault is not recorded)");
        }
        out.println("   (from the tables in memory; the unit's IOTLB may still hold what an invalidation in flight removes)");
        out.flush();
    }
}
