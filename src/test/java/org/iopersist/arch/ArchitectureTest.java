package org.iopersist.arch;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.domain.JavaField;
import com.tngtech.archunit.core.domain.JavaModifier;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.lang.ArchCondition;
import com.tngtech.archunit.lang.ConditionEvents;
import com.tngtech.archunit.lang.SimpleConditionEvent;
import com.tngtech.archunit.lang.syntax.ArchRuleDefinition;
import com.tngtech.archunit.lang.ArchRule;
import com.tngtech.archunit.library.Architectures;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The package rules of DESIGN.md §2: hardware never depends on a kernel, a VMM reaches the kernel
 * only through the syscall ABI, and a kernel keeps no static mutable state, so the next boot starts
 * from the machine alone. Inside the kernel, layers import downward only, in the order of
 * {@link #KERNEL_LAYERS}, and no package has a cycle with another.
 */
class ArchitectureTest {
    private static JavaClasses main;

    @BeforeAll
    static void importClasses() {
        main = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("org.iopersist");
    }

    /**
     * The kernel's layers, lowest first: each may use only the ones before it. Common holds the
     * errno exception and the log; mm the frames and address spaces; fs the VFS, fd table, sysfs and
     * /proc; memfd is a file over mm; liveupdate the KHO core every preserving subsystem plugs into.
     */
    static final List<String[]> KERNEL_LAYERS = List.of(
            new String[] {"common", "org.iopersist.kernel"},
            new String[] {"mm", "org.iopersist.kernel.mm"},
            new String[] {"fs", "org.iopersist.kernel.fs.."},
            new String[] {"memfd", "org.iopersist.kernel.mm.memfd.."},
            new String[] {"liveupdate", "org.iopersist.kernel.liveupdate.."},
            new String[] {"guestmemfs", "org.iopersist.kernel.guestmemfs.."},
            new String[] {"iommu", "org.iopersist.kernel.iommu.."},
            new String[] {"iommufd", "org.iopersist.kernel.iommufd.."},
            new String[] {"vfio", "org.iopersist.kernel.vfio.."},
            new String[] {"syscall", "org.iopersist.kernel.syscall.."},
            new String[] {"init", "org.iopersist.kernel.init.."});

    static ArchRule kernelLayering() {
        Architectures.LayeredArchitecture rule = layeredArchitecture().consideringOnlyDependenciesInLayers();
        for (String[] l : KERNEL_LAYERS) {
            rule = rule.layer(l[0]).definedBy(l[1]);
        }
        for (int i = 0; i < KERNEL_LAYERS.size() - 1; i++) {
            final String[] above = KERNEL_LAYERS.subList(i + 1, KERNEL_LAYERS.size()).stream().map(l -> l[0])
                    .toArray(String[]::new);
            rule = rule.whereLayer(KERNEL_LAYERS.get(i)[0]).mayOnlyBeAccessedByLayers(above);
        }
        return rule.whereLayer("init").mayNotBeAccessedByAnyLayer();
    }

    @Test
    void kernelLayersImportDownwardOnly() {
        kernelLayering().check(main);
    }

    @Test
    void noPackageHasACycle() {
        slices().matching("org.iopersist.(**)").should().beFreeOfCycles().check(main);
    }

    @Test
    void layerRuleRejectsAnUpwardImport() {
        // The rule itself must bite: an mm class that uses iommufd breaks it.
        final JavaClasses withProbe = new ClassFileImporter().importClasses(
                org.iopersist.kernel.mm.LayerViolationProbe.class, org.iopersist.kernel.iommufd.IommufdCtx.class);
        org.junit.jupiter.api.Assertions.assertTrue(kernelLayering().evaluate(withProbe).hasViolation(),
                "mm -> iommufd must violate the layering");
    }

    @Test
    void hardwareNeverDependsOnKernel() {
        noClasses().that().resideInAPackage("org.iopersist.hw..")
                .should().dependOnClassesThat().resideInAnyPackage("org.iopersist.kernel..", "org.iopersist.vmm..",
                        "org.iopersist.cli..")
                .check(main);
    }

    @Test
    void aVmmReachesTheKernelOnlyThroughSyscalls() {
        // The VMM library is what a separate process links: the uAPI, and the machine's memory file
        // it maps to follow its own pointers, never a kernel object.
        noClasses().that().resideInAPackage("org.iopersist.vmm..")
                .should().dependOnClassesThat().resideInAnyPackage("org.iopersist.kernel..", "org.iopersist.cli..")
                .check(main);
    }

    @Test
    void theKernelKnowsNoVmmAndTheUapiNothingElse() {
        noClasses().that().resideInAPackage("org.iopersist.kernel..")
                .should().dependOnClassesThat().resideInAnyPackage("org.iopersist.vmm..", "org.iopersist.cli..")
                .check(main);
        noClasses().that().resideInAPackage("org.iopersist.uapi..")
                .should().dependOnClassesThat().resideInAnyPackage("org.iopersist.kernel..", "org.iopersist.hw..",
                        "org.iopersist.vmm..", "org.iopersist.cli..")
                .check(main);
    }

    @Test
    void kernelKeepsNoStaticMutableState() {
        ArchRuleDefinition.fields().that().areDeclaredInClassesThat().resideInAPackage("org.iopersist.kernel..")
                .and().areStatic()
                .should(beImmutableConstants())
                .allowEmptyShould(true)
                .check(main);
    }

    private static final Set<String> IMMUTABLE_TYPES = Set.of(
            "java.lang.String", "java.lang.Long", "java.lang.Integer", "java.lang.Short", "java.lang.Byte",
            "java.lang.Boolean", "java.lang.Character", "java.time.Duration",
            "java.lang.foreign.ValueLayout$OfLong", "java.lang.foreign.ValueLayout$OfInt",
            "java.lang.foreign.ValueLayout$OfShort", "java.lang.foreign.ValueLayout$OfByte",
            "java.lang.foreign.StructLayout", "java.lang.foreign.SequenceLayout", "java.lang.invoke.VarHandle",
            "java.util.regex.Pattern");

    /** Static fields must be final and of a primitive, string, enum, or record-of-those type. */
    static ArchCondition<JavaField> beImmutableConstants() {
        return new ArchCondition<>("be immutable constants (final primitives, strings, enums or records of those)") {
            @Override
            public void check(final JavaField field, final ConditionEvents events) {
                final boolean ok = field.getModifiers().contains(JavaModifier.FINAL) && immutable(field.getRawType(), 0)
                        || field.getModifiers().contains(JavaModifier.SYNTHETIC);
                events.add(new SimpleConditionEvent(field, ok, field.getFullName() + " is static mutable state ("
                        + field.getRawType().getName() + ")"));
            }
        };
    }

    private static boolean immutable(final JavaClass type, final int depth) {
        if (type.isPrimitive() || type.isEnum() || IMMUTABLE_TYPES.contains(type.getName())) {
            return true;
        }
        if (depth < 3 && type.isRecord()) {
            return type.getFields().stream().filter(f -> !f.getModifiers().contains(JavaModifier.STATIC))
                    .allMatch(f -> immutable(f.getRawType(), depth + 1));
        }
        return false;
    }

    @Test
    void ruleRejectsAStaticCollection() {
        // The rule itself must bite: a class with a static list fails it.
        final JavaClasses bad = new ClassFileImporter().importClasses(BadKernelState.class);
        final var result = ArchRuleDefinition.fields().that().areStatic().and().areDeclaredIn(BadKernelState.class)
                .should(beImmutableConstants()).evaluate(bad);
        org.junit.jupiter.api.Assertions.assertTrue(result.hasViolation(), "static List must violate the rule");
    }

    static final class BadKernelState {
        static final java.util.List<String> DEVICES = new java.util.ArrayList<>();
    }
}
