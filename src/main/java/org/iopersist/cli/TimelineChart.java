package org.iopersist.cli;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.IntervalMarker;
import org.jfree.chart.plot.ValueMarker;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.chart.ui.Layer;
import org.jfree.chart.ui.RectangleAnchor;
import org.jfree.chart.ui.RectangleInsets;
import org.jfree.chart.ui.TextAnchor;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * Draws the demo's {@code timeline.png}: each device's completed records per millisecond over the
 * whole run, with each update's finalize, kexec, boot and reopen marked and the VMM's blackout
 * (finalize to reopen) shaded. A run longer than {@link #MAX_POINTS} ms is drawn as the mean per
 * millisecond over buckets of several ms (the title says how many); the report's gaps keep the
 * single-millisecond detail.
 */
final class TimelineChart {
    static final int MAX_POINTS = 6000;
    static final int WIDTH = 1200;
    static final int HEIGHT = 520;

    // Translucent, so devices running at the same rate show through each other.
    private static final Color[] DEVICE_COLORS = {new Color(0x1f, 0x77, 0xb4, 0xa0), new Color(0xff, 0x7f, 0x0e, 0xa0),
        new Color(0x2c, 0xa0, 0x2c, 0xa0), new Color(0x94, 0x67, 0xbd, 0xa0), new Color(0x8c, 0x56, 0x4b, 0xa0),
        new Color(0x17, 0xbe, 0xcf, 0xa0)};
    private static final String[] EVENTS = {"finalize", "kexec", "boot", "reopen"};
    private static final Color[] EVENT_COLORS = {new Color(0xd6, 0x27, 0x28), new Color(0x40, 0x40, 0x40),
        new Color(0x9c, 0x27, 0xb0), new Color(0x2e, 0x7d, 0x32)};

    private TimelineChart() {
    }

    /**
     * @param counts per device, records completed in each millisecond from the devices' start
     * @param names  per device, its legend name
     */
    static void write(final Path png, final List<String> names, final int[][] counts, final List<DemoReport.Mark> marks)
            throws IOException {
        System.setProperty("java.awt.headless", "true");
        final int length = counts.length == 0 ? 0 : counts[0].length;
        final int bucket = Math.max(1, (length + MAX_POINTS - 1) / MAX_POINTS);
        final XYSeriesCollection data = new XYSeriesCollection();
        final XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, false);
        for (int d = 0; d < counts.length; d++) {
            final XYSeries series = new XYSeries(names.get(d), false, false);
            for (int start = 0; start < length; start += bucket) {
                final int end = Math.min(length, start + bucket);
                long sum = 0;
                for (int i = start; i < end; i++) {
                    sum += counts[d][i];
                }
                series.add(start, (double) sum / (end - start));
            }
            renderer.setSeriesPaint(d, DEVICE_COLORS[d % DEVICE_COLORS.length]);
            renderer.setSeriesStroke(d, new BasicStroke(1.2f));
            data.addSeries(series);
        }
        final NumberAxis time = new NumberAxis("ms since the devices started");
        time.setAutoRangeIncludesZero(true);
        final NumberAxis rate = new NumberAxis(bucket == 1 ? "records completed per ms" : "records per ms (mean of " + bucket + " ms)");
        rate.setAutoRangeIncludesZero(true);
        final XYPlot plot = new XYPlot(data, time, rate, renderer);
        plot.setBackgroundPaint(Color.WHITE);
        plot.setDomainGridlinePaint(new Color(0xdd, 0xdd, 0xdd));
        plot.setRangeGridlinePaint(new Color(0xdd, 0xdd, 0xdd));
        final Font labelFont = new Font(Font.SANS_SERIF, Font.PLAIN, 11);
        Double blackoutStart = null;
        for (DemoReport.Mark m : marks) {
            final int kind = List.of(EVENTS).indexOf(m.event());
            if (m.event().equals("finalize")) {
                blackoutStart = m.ms();
            }
            if (m.event().equals("reopen") && blackoutStart != null) {
                final IntervalMarker band = new IntervalMarker(blackoutStart, m.ms(), new Color(0xff, 0xe0, 0x82, 0x70));
                plot.addDomainMarker(band, Layer.BACKGROUND);
                blackoutStart = null;
            }
            final ValueMarker marker = new ValueMarker(m.ms(), EVENT_COLORS[Math.max(kind, 0)], new BasicStroke(1f,
                    BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {4f, 3f}, 0f));
            marker.setLabel(m.event() + " " + (m.event().equals("finalize") || m.event().equals("kexec") ? m.update() : m.update() + 1));
            marker.setLabelFont(labelFont);
            marker.setLabelPaint(EVENT_COLORS[Math.max(kind, 0)]);
            marker.setLabelBackgroundColor(new Color(255, 255, 255, 210));
            marker.setLabelAnchor(RectangleAnchor.TOP_RIGHT);
            marker.setLabelTextAnchor(TextAnchor.TOP_LEFT);
            // Staggered, so four marks a few ms apart stay readable.
            marker.setLabelOffset(new RectangleInsets(4 + 14 * Math.max(kind, 0), 3, 0, 0));
            plot.addDomainMarker(marker, Layer.FOREGROUND);
        }
        final String title = String.format(Locale.ROOT, "DMA completions per ms across %d live update%s (shaded: VMM blackout, finalize to reopen)",
                marks.stream().filter(m -> m.event().equals("finalize")).count(),
                marks.stream().filter(m -> m.event().equals("finalize")).count() == 1 ? "" : "s");
        final JFreeChart chart = new JFreeChart(title, new Font(Font.SANS_SERIF, Font.BOLD, 15), plot, true);
        chart.setBackgroundPaint(Color.WHITE);
        ChartUtils.saveChartAsPNG(png.toFile(), chart, WIDTH, HEIGHT);
    }
}
