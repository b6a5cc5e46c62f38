package org.iopersist.bench;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Shape;
import java.awt.geom.Ellipse2D;
import java.awt.geom.Rectangle2D;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.DecimalFormat;
import java.util.List;
import java.util.Locale;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.util.ShapeUtils;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberTickUnit;
import org.jfree.chart.plot.CombinedDomainXYPlot;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.data.category.DefaultCategoryDataset;

/**
 * Writes BENCHMARKS.md, and next to it docs/bench/results.json, docs/bench/live-update.png and
 * docs/bench/scaling.png.
 */
final class BenchReport {
    private BenchReport() {
    }

    static void write(final Path markdown, final Bench.Report r) throws IOException {
        final Path root = markdown.toAbsolutePath().getParent();
        final Path benchDir = Files.createDirectories(root.resolve("docs").resolve("bench"));
        Bench.json().writeValue(benchDir.resolve("results.json").toFile(), r);
        chart(benchDir.resolve("live-update.png"), r);
        if (!r.scaling().isEmpty()) {
            scalingChart(benchDir.resolve("scaling.png"), r.scaling());
        }
        // The soak is its own run (`scripts/bench --soak N`, minutes): its last section goes in before the hot paths.
        final Path soak = benchDir.resolve("soak.md");
        final String md = markdown(r);
        final int at = md.indexOf("\n## Hot paths (JMH)");
        Files.writeString(markdown, Files.isRegularFile(soak) && at >= 0
                ? md.substring(0, at) + Files.readString(soak) + md.substring(at) : md);
    }

    private static void chart(final Path png, final Bench.Report r) throws IOException {
        System.setProperty("java.awt.headless", "true");
        final DefaultCategoryDataset data = new DefaultCategoryDataset();
        for (LiveUpdateBench.Result x : r.liveUpdates()) {
            final String s = x.scenario().label();
            data.addValue(x.finalizing().p50Ms(), "finalize", s);
            data.addValue(x.kexec().p50Ms(), "kexec", s);
            data.addValue(x.boot().p50Ms(), "boot from handover", s);
            data.addValue(x.reopen().p50Ms(), "reopen + rebind", s);
        }
        final JFreeChart chart = ChartFactory.createStackedBarChart("VMM blackout per live update (p50)", "guest RAM, areas",
                "ms", data, PlotOrientation.VERTICAL, true, false, false);
        ChartUtils.saveChartAsPNG(png.toFile(), chart, 960, 480);
    }

    /** Boot, blackout and rebuild against guest size, log–log, one series per leaf size. */
    private static void scalingChart(final Path png, final List<ScalingBench.Result> scaling) throws IOException {
        final LogAxis guest = new LogAxis("guest RAM (GiB)");
        guest.setBase(2);
        guest.setTickUnit(new NumberTickUnit(2));
        guest.setNumberFormatOverride(new DecimalFormat("0"));
        final CombinedDomainXYPlot plot = new CombinedDomainXYPlot(guest);
        final String[] titles = {"boot from the handover, p50 (ms)", "VMM blackout, p50 (ms)", "rebuild in a fresh kernel, p50 (ms)"};
        final Color[] colors = {new Color(0xd6, 0x27, 0x28), new Color(0x1f, 0x77, 0xb4), new Color(0x2c, 0xa0, 0x2c)};
        final Shape[] shapes = {new Rectangle2D.Double(-3.5, -3.5, 7, 7), new Ellipse2D.Double(-3.5, -3.5, 7, 7),
            ShapeUtils.createUpTriangle(4.5f)};
        for (int metric = 0; metric < titles.length; metric++) {
            final XYSeriesCollection data = new XYSeriesCollection();
            final XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, true);
            for (ScalingBench.Leaf leaf : ScalingBench.Leaf.values()) {
                final XYSeries series = new XYSeries(leaf.label + " leaves");
                for (ScalingBench.Result x : scaling) {
                    if (x.leaf() == leaf) {
                        final double v = metric == 0 ? x.bootMs() : metric == 1 ? x.blackoutMs() : x.rebuildMs();
                        series.add(x.guestGib(), Math.max(v, 1e-3)); // a log axis cannot show 0
                    }
                }
                if (!series.isEmpty()) {
                    // The same colour for a leaf size in every panel.
                    renderer.setSeriesPaint(data.getSeriesCount(), colors[leaf.ordinal()]);
                    renderer.setSeriesStroke(data.getSeriesCount(), new BasicStroke(2f));
                    renderer.setSeriesShape(data.getSeriesCount(), shapes[leaf.ordinal()]);
                    data.addSeries(series);
                }
            }
            final LogAxis ms = new LogAxis(titles[metric]);
            ms.setTickUnit(new NumberTickUnit(1)); // a tick per decade
            ms.setMinorTickCount(9);
            ms.setMinorTickMarksVisible(true);
            ms.setNumberFormatOverride(new DecimalFormat("0.###"));
            ms.setSmallestValue(1e-3);
            plot.add(new XYPlot(data, null, ms, renderer));
        }
        // One legend entry per leaf size, not one per panel.
        plot.setFixedLegendItems(((XYPlot) plot.getSubplots().get(0)).getLegendItems());
        final JFreeChart chart = new JFreeChart("Live update against guest size (log–log)", JFreeChart.DEFAULT_TITLE_FONT, plot, true);
        ChartUtils.saveChartAsPNG(png.toFile(), chart, 960, 960);
    }

    /** A leaf count: 256 Mi rather than 268435456. */
    private static String count(final long n) {
        if (n >= 1 << 20 && n % (1 << 20) == 0) {
            return (n >> 20) + " Mi";
        }
        return n >= 1 << 10 && n % (1 << 10) == 0 ? (n >> 10) + " Ki" : Long.toString(n);
    }

    private static String leaves(final long[] leaves) {
        final String[] sizes = {"1G", "2M", "4K"};
        final List<String> parts = new java.util.ArrayList<>();
        for (int i = 0; i < leaves.length; i++) {
            if (leaves[i] != 0) {
                parts.add(count(leaves[i]) + " x " + sizes[i]);
            }
        }
        return String.join(" + ", parts);
    }

    private static String ms(final double v) {
        return String.format(Locale.ROOT, v < 10 ? "%.2f" : "%.1f", v);
    }

    private static void scaling(final StringBuilder b, final Bench.Report r) {
        final ScalingBench.Result first = r.scaling().get(0);
        b.append("\n## Scaling with guest RAM\n\n");
        b.append("One machine per row, guest RAM on guestmemfs laid out as q35 (3 GiB at IOVA 0, the rest from 4 GiB),\n");
        b.append("one area per region, two devices writing and verifying records (20 k records/s in all). The leaf size is\n");
        b.append("the machine's: the VT-d unit's CAP.SLLPS offers 4 KiB only, 2 MiB, or 2 MiB and 1 GiB, and the driver maps\n");
        b.append("with the largest leaf that fits; the leaves column is read back from the table. Boot (from the handover)\n");
        b.append("and blackout (finalize → devices rebound) are p50 over the updates given, after two warm-ups. Rebuild is\n");
        b.append("what an update that kept nothing costs instead: a kexec without a handover, so the next kernel cold-boots,\n");
        b.append("then, with guest RAM created again and a new iommufd with the devices attached, pinning and mapping all of\n");
        b.append("guest RAM (`IOMMU_IOAS_MAP` per region, timed; p50 of the rebuilds given). ");
        b.append(first.ownJvm() ? "Each row runs in a JVM of its own, warmed up on a 1 GiB\n"
                + "guest of the same leaf size, so heap and RSS are that row's alone. " : "");
        b.append("Heap is the live heap after full GCs,\n");
        b.append("taken after the updates; RSS is `VmRSS`, and in brackets `RssAnon`, the process's own memory: the rest is\n");
        b.append("the memory file mapped (page tables and what devices touched). Disk is the memory file's `st_blocks`, and\n");
        b.append("per untouched GiB the data (`SEEK_DATA`) inside the guestmemfs carve-out outside the devices' windows, per\n");
        b.append("GiB of guest RAM no device touched. Scrub is the kernel's leaf-by-leaf check of the adopted tables, which runs\n");
        b.append("in the background after the devices are rebound: it is not in the boot or the blackout.\n\n");
        b.append("| guest RAM, leaves | VT-d leaves | updates | boot p50 ms | blackout p50 ms | scrub p50 ms | rebuild p50 ms | rebuild / boot | live heap MiB | RSS MiB (anon) | memory file on disk MiB | disk per untouched GiB | DMA faults, corrupt |\n");
        b.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (ScalingBench.Result x : r.scaling()) {
            b.append("| ").append(x.label()).append(" | ").append(leaves(x.leaves())).append(" | ").append(x.updates())
                    .append(" | ").append(ms(x.bootMs())).append(" | ").append(ms(x.blackoutMs())).append(" | ")
                    .append(ms(x.scrubMs())).append(" | ").append(ms(x.rebuildMs())).append(" | ").append(String.format(Locale.ROOT, "%.3g", x.rebuildPerBoot()))
                    .append(" | ").append(Bench.mib(x.heapBytes())).append(" | ").append(x.rss().total() >> 20).append(" (")
                    .append(x.rss().anon() >> 20).append(") | ").append(Bench.mib(x.fileDiskBytes())).append(" | ")
                    .append(x.diskPerUntouchedGib() >= 1024 ? Bench.num(x.diskPerUntouchedGib() / 1024) + " KiB"
                            : String.format(Locale.ROOT, "%.0f B", x.diskPerUntouchedGib()))
                    .append(" | ").append(x.faults()).append(", ").append(x.corrupt())
                    .append(x.recordsInPlace() ? "" : " (records missing)").append(" |\n");
        }
        b.append("\nThe goals of issue 20 for these rows are in the targets table at the top.\n\n");
        b.append("![boot, blackout and rebuild against guest size](docs/bench/scaling.png)\n");
    }

    private static void devices(final StringBuilder b, final Bench.Report r) {
        final DeviceBench.Result first = r.devices().get(0);
        b.append("\n## Device count\n\n");
        b.append("Restore should grow with devices, not with memory: one guest size (").append(first.guestGib())
                .append(" GiB, 2 MiB and 1 GiB leaves), a machine of ").append(first.units()).append(" VT-d units with the\n");
        b.append("devices spread over them, all bound to one iommufd and attached to one IOAS, every device doing DMA (20 k\n");
        b.append("records/s in all). Reopen is the restarted VMM's reopen of its iommufd, rebinding every device and reopening\n");
        b.append("guest RAM. p50 in ms.\n\n");
        b.append("| devices (units) | updates | boot | reopen + rebind | blackout | iommufd blob | DMA faults, corrupt |\n");
        b.append("|---|---|---|---|---|---|---|\n");
        for (DeviceBench.Result x : r.devices()) {
            b.append("| ").append(x.devices()).append(" (").append(x.units()).append(") | ").append(x.updates()).append(" | ")
                    .append(ms(x.bootMs())).append(" | ").append(ms(x.reopenMs())).append(" | ").append(ms(x.blackoutMs()))
                    .append(" | ").append(x.iommufdBlobBytes()).append(" B | ").append(x.faults()).append(", ").append(x.corrupt())
                    .append(x.recordsInPlace() ? "" : " (records missing)").append(" |\n");
        }
    }

    private static String markdown(final Bench.Report r) {
        final StringBuilder b = new StringBuilder();
        b.append("# Benchmarks\n\n");
        b.append("Generated by `scripts/bench` on ").append(r.date()).append(" (").append(r.machine()).append(").\n");
        b.append("Do not edit: rerun the command. Raw numbers: [`docs/bench/results.json`](docs/bench/results.json).\n");
        b.append("Anchors (\"row N\") are the published numbers in `../shared/reference/perf-anchors.md`.\n\n");

        b.append("## Targets\n\n| what | target | measured | met | why this target |\n|---|---|---|---|---|\n");
        for (Bench.Target t : r.targets()) {
            b.append("| ").append(t.what()).append(" | ").append(t.target()).append(" | ").append(t.measured()).append(" | ")
                    .append(t.reported() ? "—" : t.met() ? "yes" : "**no**").append(" | ").append(t.why()).append(" |\n");
        }

        b.append("\n## Live update\n\n");
        b.append("Back-to-back live updates on one machine, as the demo does them, while two devices write and verify\n");
        b.append("records in guest RAM: finalize (write `/sys/kernel/kho/finalize`), kexec (`kexec_load`,\n");
        b.append("`reboot(KEXEC)`), boot of the next kernel from the handover, and the restarted VMM's reopen of its\n");
        b.append("iommufd through sysfs, rebinding both devices and reopening guest RAM. Blackout is finalize to\n");
        b.append("rebound: the time a VMM's vCPUs would be paused. DMA itself never stops. Guest RAM is on\n");
        b.append("guestmemfs (2 MiB blocks), mapped as the number of areas given, with devices at 10 k records/s\n");
        b.append("each. \"Rebuild\" is what pinning and mapping all of it again costs a warm kernel (p50 of 7): the\n");
        b.append("work an update that did not keep the tables would put between the kexec and the first DMA.\n\n");
        b.append("| guest RAM, areas | updates | blackout p50 / p90 / max ms | LUO blackout p50 ms | finalize | kexec | boot | reopen | rebuild ms | handover: KHO tree / iommufd blob | DMA faults, corrupt | longest DMA gap |\n");
        b.append("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (LiveUpdateBench.Result x : r.liveUpdates()) {
            b.append("| ").append(x.scenario().label()).append(" | ").append(x.updates()).append(" | ")
                    .append(ms(x.blackout().p50Ms())).append(" / ").append(ms(x.blackout().p90Ms())).append(" / ")
                    .append(ms(x.blackout().maxMs())).append(" | ").append(ms(x.luo().blackout().p50Ms())).append(" | ")
                    .append(ms(x.finalizing().p50Ms())).append(" | ")
                    .append(ms(x.kexec().p50Ms())).append(" | ").append(ms(x.boot().p50Ms())).append(" | ")
                    .append(ms(x.reopen().p50Ms())).append(" | ").append(ms(x.rebuildMapMs())).append(" | ")
                    .append(x.khoTreeBytes()).append(" B / ").append(x.iommufdBlobBytes()).append(" B | ")
                    .append(x.faults()).append(", ").append(x.corrupt()).append(x.recordsInPlace() ? "" : " (records missing)")
                    .append(" | ").append(ms(x.longestDmaGapMs())).append(" ms |\n");
        }
        b.append("\nThe same scenarios the LUO way (`/dev/liveupdate`): guest RAM in a memfd sealed against growing,\n");
        b.append("shrinking and new seals, mapped with `IOMMU_IOAS_MAP_FILE`, the HWPT marked, and the memfd, the iommufd\n");
        b.append("and both device files preserved in a session. There is no finalize: the reboot freezes and serializes\n");
        b.append("the session (kexec). The restarted VMM retrieves the session, the device files (bound and attached\n");
        b.append("already), the iommufd and the RAM memfd, and finishes (retrieve). Blackout is the reboot to the finish;\n");
        b.append("preserving everything in a new session for the next update happens after it, the guest running.\n\n");
        b.append("| guest RAM, areas | updates | LUO blackout p50 / p90 / max ms | kexec (freeze) | boot | retrieve + finish | preserve (off the blackout) | handover: KHO tree / LUO blob | DMA faults, corrupt |\n");
        b.append("|---|---|---|---|---|---|---|---|---|\n");
        for (LiveUpdateBench.Result x : r.liveUpdates()) {
            final LiveUpdateBench.Luo l = x.luo();
            b.append("| ").append(x.scenario().label()).append(" | ").append(x.updates()).append(" | ")
                    .append(ms(l.blackout().p50Ms())).append(" / ").append(ms(l.blackout().p90Ms())).append(" / ")
                    .append(ms(l.blackout().maxMs())).append(" | ").append(ms(l.kexec().p50Ms())).append(" | ")
                    .append(ms(l.boot().p50Ms())).append(" | ").append(ms(l.retrieve().p50Ms())).append(" | ")
                    .append(ms(l.preserve().p50Ms())).append(" | ").append(l.khoTreeBytes()).append(" B / ")
                    .append(l.luoBlobBytes()).append(" B | ").append(l.faults()).append(", ").append(l.corrupt())
                    .append(l.recordsInPlace() ? "" : " (records missing)").append(" |\n");
        }
        b.append("\nPhases are p50 in ms. The longest DMA gap is the longest time between two completed records of a\n");
        b.append("device over the whole run: scheduling noise on a small machine, not an IOMMU blackout.\n\n");
        b.append("![live-update phases](docs/bench/live-update.png)\n");

        if (!r.scaling().isEmpty()) {
            scaling(b, r);
        }
        if (!r.devices().isEmpty()) {
            devices(b, r);
        }

        final ProcessBench.Result pr = r.processes();
        b.append("\n## Separate processes\n\n");
        b.append("The demo (`scripts/run`) as a user sees it, median of ").append(pr.runs()).append(" runs: machine, kernel 1,\n");
        b.append("kernel 2 and the VMM are separate processes, and each kernel is a cold JVM (kernel 2 is started at\n");
        b.append("`kexec_load` and boots on the kexec). The in-JVM numbers above are what a warm kernel costs; the\n");
        b.append("difference is the JVM's interpreter and JIT on code run once.\n\n");
        b.append("| cold boot (kernel 1) | finalize + kexec | boot from the handover (kernel 2) | kexec to serving syscalls | all runs ok |\n");
        b.append("|---|---|---|---|---|\n");
        b.append("| ").append(ms(pr.coldBootMs())).append(" ms | ").append(ms(pr.finalizeKexecMs())).append(" ms | ")
                .append(ms(pr.liveBootMs())).append(" ms | ").append(ms(pr.kexecToServingMs())).append(" ms | ")
                .append(pr.allOk() ? "yes" : "**no**").append(" |\n");

        b.append("\n## uAPI round trips\n\n");
        b.append("ioctls from a VMM process over the syscall socket into a booted kernel, one device attached (so a map\n");
        b.append("fills a VT-d domain and an unmap ends with an IOTLB invalidation and a wait descriptor).\n\n");
        b.append("| call | samples | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|\n");
        for (IoctlBench.Result x : r.ioctls()) {
            b.append("| ").append(x.call()).append(" | ").append(x.samples()).append(" | ").append(ms(x.p50Us())).append(" | ")
                    .append(ms(x.p99Us())).append(" | ").append(ms(x.maxUs())).append(" |\n");
        }

        b.append("\n## Hot paths (JMH)\n\n");
        if (r.micro().isEmpty()) {
            b.append("Not run this time (`--quick` or `--no-jmh`).\n");
        } else {
            b.append("JMH, 1 fork, 3 x 1 s warm-up, " + Bench.JMH_ITERATIONS + " x 1 s measured; ns/op is the median of the "
                    + "iterations' average times (one iteration that lost its core moves the mean, not the median), ± JMH's "
                    + "99.9 % error of the mean.\n\n");
            b.append("| benchmark | ns/op | ± | Linux or hardware anchor |\n|---|---|---|---|\n");
            for (Bench.Micro m : r.micro()) {
                b.append("| `").append(m.benchmark()).append("` | ").append(String.format(Locale.ROOT, "%.1f", m.nsPerOp()))
                        .append(" | ").append(String.format(Locale.ROOT, "%.1f", m.error())).append(" | ").append(m.anchor()).append(" |\n");
            }
        }
        return b.toString();
    }
}
