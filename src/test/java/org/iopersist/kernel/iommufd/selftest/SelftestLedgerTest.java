package org.iopersist.kernel.iommufd.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The ledger of the selftest port: every TEST_F of {@code tools/testing/selftests/iommu/iommufd.c}
 * (the v6.9 file, commit 33335584; its copies carry the READABLE/WRITEABLE flag Linux's later fix
 * added) and every TEST_FAIL_NTH of {@code iommufd_fail_nth.c}, fixture by fixture, with every
 * FIXTURE_VARIANT_ADD (TEST_FAIL_NTH cases are the methods of {@link BasicFailNthTest}): each case is a test method of the fixture's class, run once per variant
 * subclass, or named here with why it does not apply. {@code docs/selftest.md} is this ledger
 * rendered; the test fails if the two differ.
 */
class SelftestLedgerTest {
    /** One FIXTURE: its cases class, its variants (FIXTURE_VARIANT_ADD name to subclass), its TEST_Fs. */
    record Fixture(String name, Class<?> cases, Map<String, Class<?>> variants, List<String> tests) {
    }

    static final List<Fixture> FIXTURES = List.of(
            new Fixture("iommufd", IommufdTest.class, Map.of(), List.of("simple_close", "cmd_fail", "cmd_length",
                    "cmd_ex_fail", "global_options", "simple_ioctls", "unmap_cmd", "map_cmd", "info_cmd", "set_iommu_cmd",
                    "vfio_ioas")),
            new Fixture("iommufd_ioas", IommufdIoasCases.class, ordered("no_domain", IommufdIoasNoDomainTest.class,
                    "mock_domain", IommufdIoasMockDomainTest.class, "two_mock_domain", IommufdIoasTwoMockDomainTest.class,
                    "mock_domain_limit", IommufdIoasMockDomainLimitTest.class),
                    List.of("ioas_auto_destroy", "ioas_destroy", "alloc_hwpt_nested", "hwpt_attach", "ioas_area_destroy",
                            "ioas_area_auto_destroy", "get_hw_info", "area", "unmap_fully_contained_areas", "area_auto_iova",
                            "area_allowed", "copy_area", "iova_ranges", "access_domain_destory", "access_pin", "access_pin_unmap",
                            "access_rw", "access_rw_unaligned", "fork_gone", "fork_present", "ioas_option_huge_pages",
                            "ioas_iova_alloc", "ioas_align_change", "copy_sweep")),
            new Fixture("iommufd_mock_domain", IommufdMockDomainCases.class, ordered("one_domain", IommufdMockDomainOneDomainTest.class,
                    "two_domains", IommufdMockDomainTwoDomainsTest.class, "one_domain_hugepage",
                    IommufdMockDomainOneDomainHugepageTest.class, "two_domains_hugepage", IommufdMockDomainTwoDomainsHugepageTest.class),
                    List.of("basic", "ro_unshare", "all_aligns", "all_aligns_copy", "user_copy", "replace", "alloc_hwpt")),
            new Fixture("iommufd_dirty_tracking", IommufdDirtyTrackingCases.class, ordered(
                    "domain_dirty8k", IommufdDirtyTrackingDirty8kTest.class, "domain_dirty16k", IommufdDirtyTrackingDirty16kTest.class,
                    "domain_dirty128k", IommufdDirtyTrackingDirty128kTest.class, "domain_dirty256k",
                    IommufdDirtyTrackingDirty256kTest.class, "domain_dirty640k", IommufdDirtyTrackingDirty640kTest.class,
                    "domain_dirty128M", IommufdDirtyTrackingDirty128MTest.class, "domain_dirty128M_huge",
                    IommufdDirtyTrackingDirty128MHugeTest.class, "domain_dirty256M", IommufdDirtyTrackingDirty256MTest.class,
                    "domain_dirty256M_huge", IommufdDirtyTrackingDirty256MHugeTest.class),
                    List.of("enforce_dirty", "set_dirty_tracking", "device_dirty_capability", "get_dirty_bitmap",
                            "get_dirty_bitmap_no_clear")),
            new Fixture("vfio_compat_mock_domain", VfioCompatMockDomainCases.class, ordered("Ver1v2",
                    VfioCompatMockDomainVer1v2Test.class, "Ver1v0", VfioCompatMockDomainVer1v0Test.class),
                    List.of("simple_close", "option_huge_pages", "get_info", "map", "huge_map")),
            new Fixture("basic_fail_nth", BasicFailNthTest.class, Map.of(), List.of("basic", "map_domain", "map_file_domain",
                    "map_two_domains", "access_rw", "access_pin", "access_pin_domain", "device")));

    /** Cases that do not apply here, by fixture.case, with why. */
    static final Map<String, String> NOT_APPLICABLE = ordered(
            "iommufd_ioas.alloc_hwpt_nested", "nesting: no VT-d unit of the model can nest, so the mock builds no nested "
                    + "domain either (HWPT_NESTED, IOMMU_HWPT_INVALIDATE and the mock IOTLB MD_CHECK_IOTLB reads are not "
                    + "modelled); a nested HWPT_ALLOC answers EOPNOTSUPP, over a parent that is no NEST_PARENT EINVAL",
            "iommufd_ioas.fork_gone", "needs fork(2): a process here is one socket connection and none inherits another's "
                    + "memory or descriptors",
            "iommufd_ioas.fork_present", "needs fork(2), as fork_gone",
            "iommufd_mock_domain.ro_unshare", "needs a MAP_PRIVATE (copy-on-write) mapping of /proc/self/exe: the model maps "
                    + "files MAP_SHARED only and runs no executable");

    /** What passes with a caveat, by fixture.case. */
    static final Map<String, String> NOTES = ordered(
            "iommufd.cmd_length", "all but the TEST_LENGTH line of IOMMU_HWPT_INVALIDATE (nesting is not modelled: that "
                    + "command answers ENOTTY)",
            "iommufd_ioas.copy_area", "with IOMMU_IOAS_MAP_WRITEABLE on the copy, as Linux's later fix requires",
            "iommufd_ioas.copy_sweep", "with IOMMU_IOAS_MAP_WRITEABLE on the copy, as Linux's later fix requires",
            "iommufd_mock_domain.user_copy", "with IOMMU_IOAS_MAP_WRITEABLE on the copies, as Linux's later fix requires",
            "vfio_compat_mock_domain.get_info", "also reads the whole chain once (argsz = its size), which the selftest's "
                    + "loop stops short of");

    private static <V> Map<String, V> ordered(final Object... kv) {
        final Map<String, V> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            @SuppressWarnings("unchecked")
            final V v = (V) kv[i + 1];
            m.put((String) kv[i], v);
        }
        return m;
    }

    private static Set<String> testMethods(final Class<?> k) {
        final Set<String> out = new HashSet<>();
        for (Method m : k.getDeclaredMethods()) {
            if (m.isAnnotationPresent(Test.class)) {
                out.add(m.getName());
            }
        }
        return out;
    }

    @Test
    void everyCaseRunsOrSaysWhyNot() {
        int run = 0;
        for (Fixture f : FIXTURES) {
            final Set<String> methods = testMethods(f.cases());
            for (String t : f.tests()) {
                final String key = f.name() + "." + t;
                final boolean done = methods.contains(t);
                final boolean skipped = NOT_APPLICABLE.containsKey(key);
                assertTrue(done ^ skipped, key + (done ? " runs and is marked not applicable" : " neither runs nor says why"));
                if (done) {
                    run += Math.max(1, f.variants().size());
                }
            }
            final Set<String> extra = new HashSet<>(methods);
            extra.removeAll(f.tests());
            assertEquals(Set.of(), extra, f.cases().getSimpleName() + " has test methods the selftest does not");
            for (Map.Entry<String, Class<?>> v : f.variants().entrySet()) {
                assertTrue(f.cases().isAssignableFrom(v.getValue()), v.getValue() + " is not a variant of " + f.cases());
                assertTrue(v.getValue().getSimpleName().endsWith("Test"), "surefire runs " + v.getValue());
            }
        }
        for (String k : NOT_APPLICABLE.keySet()) {
            assertTrue(FIXTURES.stream().anyMatch(f -> k.equals(f.name() + "." + k.substring(k.indexOf('.') + 1))
                    && f.tests().contains(k.substring(k.indexOf('.') + 1))), k + " is not a selftest case");
        }
        assertTrue(run > 150, "cases run, counting variants: " + run);
    }

    /** The ledger as docs/selftest.md shows it. */
    static String render() {
        final StringBuilder b = new StringBuilder();
        b.append("| fixture | case | variants | result |\n|---|---|---|---|\n");
        for (Fixture f : FIXTURES) {
            final Set<String> methods = testMethods(f.cases());
            for (String t : f.tests()) {
                final String key = f.name() + "." + t;
                final String variants = f.variants().isEmpty() ? "—" : String.join(", ", f.variants().keySet());
                final String result;
                if (methods.contains(t)) {
                    result = "passes" + (NOTES.containsKey(key) ? ": " + NOTES.get(key) : "");
                } else {
                    result = "does not apply: " + NOT_APPLICABLE.get(key);
                }
                b.append("| ").append(f.name()).append(" | ").append(t).append(" | ").append(variants).append(" | ")
                        .append(result).append(" |\n");
            }
        }
        return b.toString();
    }

    @Test
    void docsShowThisLedger() throws Exception {
        final String doc = Files.readString(Path.of("docs", "selftest.md"));
        final String table = render();
        assertTrue(doc.contains(table), "docs/selftest.md does not contain the ledger as rendered now:\n" + table);
        final List<String> missing = new ArrayList<>();
        for (String k : NOTES.keySet()) {
            if (!doc.contains(k.substring(k.indexOf('.') + 1))) {
                missing.add(k);
            }
        }
        assertEquals(List.of(), missing);
    }
}
