package org.iopersist.arch;

import static com.tngtech.archunit.core.domain.JavaCall.Predicates.target;
import static com.tngtech.archunit.core.domain.properties.HasName.Predicates.name;
import static com.tngtech.archunit.core.domain.properties.HasOwner.Predicates.With.owner;
import static com.tngtech.archunit.lang.conditions.ArchConditions.callMethodWhere;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;

import com.tngtech.archunit.base.DescribedPredicate;
import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.iopersist.kernel.KernelRig;
import org.junit.jupiter.api.Test;

/**
 * Issue 16's invariant check runs after every iommufd and VFIO test: a test class of those packages
 * that boots a kernel (the fixtures, and any test booting its own) ends with
 * {@link KernelRig#assertBooksBalanced}, so a leaked pin, frame, DID or object fails it. A test that
 * extends a fixture inherits the fixture's teardown.
 */
class BooksCheckedTest {
    @Test
    void everyIommufdAndVfioTestThatBootsAKernelChecksTheBooks() {
        final JavaClasses tests = new ClassFileImporter().withImportOption(ImportOption.Predefined.ONLY_INCLUDE_TESTS)
                .importPackages("org.iopersist.kernel.iommufd", "org.iopersist.vmm");
        final DescribedPredicate<JavaClass> bootsAKernel = DescribedPredicate.describe("boot a kernel", c -> c
                .getMethodCallsFromSelf().stream().anyMatch(call -> call.getTargetOwner().isEquivalentTo(KernelRig.class)
                        && call.getName().equals("boot")));
        classes().that(bootsAKernel)
                .should(callMethodWhere(target(name("assertBooksBalanced")).and(target(owner(
                        DescribedPredicate.describe("KernelRig", o -> o.isEquivalentTo(KernelRig.class)))))))
                .check(tests);
    }
}
