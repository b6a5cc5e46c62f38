package org.iopersist.kernel.iommufd.persist;

import java.util.List;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.iommufd.IovaInterval;

/**
 * iommufd's handover blob, an FDT with {@code compatible = "iommufd-v1"}: per persistent context,
 * every object with its id.
 *
 * <pre>
 * / { compatible = "iommufd-v1";
 *     ctx@P { persistent-id = &lt;u32&gt;; owner-uid = &lt;u32&gt;; account-mode = &lt;u32&gt;;
 *         ioas@N  { id; alignment (u64); huge-pages; allowed = &lt;start last ...&gt;;
 *                   pages = &lt;ino offset length ...&gt; (3 x u64: one per shared iopt_pages);
 *                   areas = &lt;iova length ino offset prot pages-index ...&gt; (6 x u64 = 48 bytes per area) };
 *         hwpt@N  { id; ioas; auto; domain = &lt;the driver's handover key, the VT-d pgd&gt; };
 *         device@N { id; device = &lt;unit &lt;&lt; 32 | segment &lt;&lt; 16 | source-id&gt;; hwpt };
 *     };
 * };
 * </pre>
 *
 * All values big-endian, as every property of the handover. {@link HandoverWriter} writes it,
 * {@link HandoverValidator} reads it into a {@link Plan}, and {@link Restorer} builds the plan.
 */
public final class IommufdHandover {
    /** The KHO subtree's name. */
    public static final String NAME = "iommufd";
    public static final String COMPATIBLE = "iommufd-v1";
    /** Cells (u64) per area record: iova, length, ino, offset, prot, pages index. */
    public static final int AREA_CELLS = 6;
    /** Cells (u64) per pages record: ino, offset, length. */
    static final int PAGES_CELLS = 3;

    private IommufdHandover() {
    }

    /** What {@link HandoverValidator} checked, ready to build: every persistent context. */
    public record Plan(List<CtxPlan> contexts) {
    }

    record AreaPlan(long iova, long length, long ino, long offset, int prot, int pages) {
    }

    record PagesPlan(long ino, long offset, long length) {
    }

    record IoasPlan(int id, long alignment, boolean hugePages, List<IovaInterval> allowed, List<PagesPlan> pages,
            List<AreaPlan> areas) {
    }

    record HwptPlan(int id, int ioas, boolean auto, long domainKey) {
    }

    record DevicePlan(int id, IommuDevice dev, int hwpt) {
    }

    record CtxPlan(int persistentId, int ownerUid, int accountMode, List<IoasPlan> ioas, List<HwptPlan> hwpts,
            List<DevicePlan> devices) {
    }
}
