package org.iopersist.arch;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;

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
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The package rules of DESIGN.md §2: hardware never depends on a kernel, a VMM reaches the kernel
 * only through the syscall ABI, and a kernel keeps no static mutable state, so the next boot starts
 * from the machine alone.
 */
class ArchitectureTest {
    private static JavaClasses main;

    @BeforeAll
    static void importClasses() {
        main = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("org.iopersist");
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
