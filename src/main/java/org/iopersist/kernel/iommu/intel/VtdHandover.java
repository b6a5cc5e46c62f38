package org.iopersist.kernel.iommu.intel;

import java.util.ArrayList;
import java.util.List;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.kernel.liveupdate.kho.FdtWriter;
import org.iopersist.kernel.liveupdate.kho.HandoverFormatException;

/**
 * The VT-d driver's handover blob, an FDT with {@code compatible = "intel-iommu-v3"}:
 *
 * <pre>
 * / {
 *     compatible = "intel-iommu-v3";
 *     unit@N {                          one per remapping unit, N = its index
 *         cap = &lt;u64&gt;;  ecap = &lt;u64&gt;;      the registers, to match against the hardware
 *         root-table = &lt;u64&gt;;              the live root table (RTADDR)
 *         context-tables = &lt;u64 ...&gt;;      (bus &lt;&lt; 52 | phys) of every present root entry
 *         qi-ring = &lt;u64&gt;;  qi-status = &lt;u64&gt;;   the invalidation ring the unit still reads
 *     };
 *     domain@P {                        one per persistent domain, named by its pgd (hex)
 *         levels = &lt;u32&gt;;                   3, 4 or 5
 *         pgd = &lt;u64&gt;;
 *         table-pages = &lt;u64&gt;;             how many table pages a walk from pgd finds
 *         table-chunks = &lt;u64 ...&gt;;        (phys | order) of every run the table pages are carved from
 *         table-usage = &lt;u64 ...&gt;;         per chunk, the bitmap of its pages in use
 *         dids = &lt;u64 ...&gt;;                 (unit &lt;&lt; 32 | did) per unit it is attached through
 *         devices = &lt;u64 ...&gt;;              (unit &lt;&lt; 32 | segment &lt;&lt; 16 | source-id) of the devices it serves
 *     };
 * };
 * </pre>
 *
 * All values big-endian, as every property of the handover. Everything here is data: the new
 * kernel checks it against the hardware and the tables before it adopts anything.
 *
 * <p>v2 (v1 had no {@code table-chunks}: each table page was preserved as a frame of its own): a
 * domain's table pages come from a few naturally aligned runs of up to 2 MiB ({@link TablePagePool}),
 * each preserved as one block, so the next kernel claims O(runs), not O(table pages).
 *
 * <p>v3 adds {@code table-usage}, so the next kernel rebuilds each domain's pool in O(chunks) and
 * reads no table at boot (v2's boot walked every directory level: O(guest size) with 4 KiB or
 * 2 MiB leaves). The walk moved to the scrub after the rebind.
 */
public final class VtdHandover {
    public static final String COMPATIBLE = "intel-iommu-v3";
    public static final String NAME = "intel-iommu";

    /** A unit as handed over. */
    public record Unit(int index, long cap, long ecap, long rootTable, long[] contextTables, long qiRing, long qiStatus) {
        public Unit {
            contextTables = contextTables.clone();
        }

        @Override
        public long[] contextTables() {
            return contextTables.clone();
        }
    }

    /** A persistent domain as handed over; {@code dids[i]} and {@code devices[i]} are packed as above. */
    public record Domain(int levels, long pgd, long tablePages, long[] tableChunks, long[] tableUsage, long[] dids,
                         long[] devices) {
        public Domain {
            tableChunks = tableChunks.clone();
            tableUsage = tableUsage.clone();
            dids = dids.clone();
            devices = devices.clone();
        }

        @Override
        public long[] tableChunks() {
            return tableChunks.clone();
        }

        @Override
        public long[] tableUsage() {
            return tableUsage.clone();
        }

        @Override
        public long[] dids() {
            return dids.clone();
        }

        @Override
        public long[] devices() {
            return devices.clone();
        }
    }

    public record Image(List<Unit> units, List<Domain> domains) {
        public Image {
            units = List.copyOf(units);
            domains = List.copyOf(domains);
        }
    }

    private VtdHandover() {
    }

    public static byte[] write(final Image image) {
        final FdtWriter w = new FdtWriter().beginNode("");
        // #address-cells/#size-cells and each node's reg give the unit addresses meaning, so dtc
        // decompiles the blob without a warning; readers go by name and ignore them.
        // Two address cells: a unit's is its index, a domain's its pgd, so no two siblings share one.
        w.propertyString("compatible", COMPATIBLE).propertyU32("#address-cells", 2).propertyU32("#size-cells", 0);
        for (Unit u : image.units()) {
            w.beginNode("unit@" + u.index()).propertyU64("reg", u.index())
                    .propertyU64("cap", u.cap()).propertyU64("ecap", u.ecap())
                    .propertyU64("root-table", u.rootTable())
                    .propertyU64Array("context-tables", u.contextTables())
                    .propertyU64("qi-ring", u.qiRing()).propertyU64("qi-status", u.qiStatus())
                    .endNode();
        }
        for (Domain d : image.domains()) {
            w.beginNode("domain@" + Long.toHexString(d.pgd())).propertyU64("reg", d.pgd())
                    .propertyU32("levels", d.levels()).propertyU64("pgd", d.pgd())
                    .propertyU64("table-pages", d.tablePages())
                    .propertyU64Array("table-chunks", d.tableChunks())
                    .propertyU64Array("table-usage", d.tableUsage())
                    .propertyU64Array("dids", d.dids()).propertyU64Array("devices", d.devices())
                    .endNode();
        }
        return w.endNode().finish();
    }

    /** Parses the blob's structure; the semantic checks against hardware and memory come after. */
    public static Image read(final FdtReader fdt) throws HandoverFormatException {
        final int root = fdt.root();
        final String compatible = fdt.string(root, "compatible");
        if (!COMPATIBLE.equals(compatible)) {
            throw new HandoverFormatException("intel-iommu blob is '" + compatible + "', this kernel reads " + COMPATIBLE);
        }
        final List<Unit> units = new ArrayList<>();
        final List<Domain> domains = new ArrayList<>();
        for (int node : fdt.children(root)) {
            final String name = fdt.nodeName(node);
            if (name.startsWith("unit@")) {
                final int index = parseIndex(name);
                if (index != units.size()) {
                    throw new HandoverFormatException("unit nodes out of order at " + name);
                }
                units.add(new Unit(index, fdt.u64(node, "cap"), fdt.u64(node, "ecap"), fdt.u64(node, "root-table"),
                        fdt.u64Array(node, "context-tables"), fdt.u64(node, "qi-ring"), fdt.u64(node, "qi-status")));
            } else if (name.startsWith("domain@")) {
                final int levels = fdt.u32(node, "levels");
                if (levels < 3 || levels > 5) {
                    throw new HandoverFormatException(name + ": " + levels + " levels");
                }
                domains.add(new Domain(levels, fdt.u64(node, "pgd"), fdt.u64(node, "table-pages"),
                        fdt.u64Array(node, "table-chunks"), fdt.u64Array(node, "table-usage"), fdt.u64Array(node, "dids"), fdt.u64Array(node, "devices")));
            } else {
                throw new HandoverFormatException("unknown node '" + name + "' in the intel-iommu blob");
            }
        }
        return new Image(units, domains);
    }

    private static int parseIndex(final String name) throws HandoverFormatException {
        try {
            return Integer.parseInt(name.substring(name.indexOf('@') + 1));
        } catch (NumberFormatException e) {
            throw new HandoverFormatException("bad node name '" + name + "'");
        }
    }
}
