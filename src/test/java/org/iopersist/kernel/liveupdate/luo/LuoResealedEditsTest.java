package org.iopersist.kernel.liveupdate.luo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AddLifecycleHook;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.hw.pci.WorkloadSettings;
import org.iopersist.kernel.DeviceStates;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.testing.EditableHandover;
import org.iopersist.testing.EditableHandover.Edit;
import org.iopersist.testing.Reach;
import org.iopersist.vmm.GuestRam;
import org.iopersist.vmm.IommufdHandle;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.VfioDeviceHandle;
import org.iopersist.testing.Trees;

/**
 * Resealed semantic edits of a LUO handover (the flow's blob, the VT-d blob and the KHO tree), as
 * {@code ResealedEditsTest} does for the RFC's: one cell of one property changed and its checksum
 * made good again, so only the checks behind it can refuse it. Whatever the edit, the next boot
 * either refuses the handover in validation (a cold boot, for a reason it names) or boots from it
 * without throwing: adopt never fails half-way, no device is left in a half state, no device can
 * reach a free frame, and after the core's finish (sessions nobody retrieved are freed and their
 * devices blocked) the same still holds and every pin belongs to an area. CI tries 40 edits;
 * {@code -Diopersist.edits.full=true} adds 1000 more.
 */
class LuoResealedEditsTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "liveupdate.finish_timeout=0 page_poison=on";
    private static final List<String> BLOBS = List.of("LUO", "intel-iommu", "tree");

    private static Path dir;
    private static KernelRig rig;
    private static Machine machine;
    private static DeviceBar bar;
    private static EditableHandover handover;

    @BeforeContainer
    static void handOver() throws Exception {
        dir = Files.createTempDirectory("iopersist-luo-edits");
        rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small().withMemorySize(64 * MIB), CMDLINE);
        machine = rig.machine;
        try (KernelClient vmm = rig.connect(rig.kernel)) {
            final GuestRam ram = GuestRam.createMemfd(vmm, "ram", 4 * MIB);
            final IommufdHandle iommufd = IommufdHandle.open(vmm);
            final VfioDeviceHandle dev = VfioDeviceHandle.open(vmm, 0);
            final int ioas = iommufd.ioasAlloc(); // before the bind (LuoVm.create binds first): this handover's object ids as they were
            final int hwpt = iommufd.hwptAlloc(dev.bind(iommufd), ioas);
            final LuoVm vm = new LuoVm(ram, iommufd, ioas, hwpt, dev, dev.attach(hwpt));
            ram.mapForDma(iommufd, ioas, 2);
            iommufd.markPreserve(hwpt, 7);
            final LiveupdateHandle luo = LiveupdateHandle.open(vmm);
            vm.preserveIn(luo.createSession("vm0"), 1, 2, 3);
            LuoTestUtils.createAndPreserveMemfd(vmm, luo.createSession("aux"), 1, "aux data");
            bar = rig.bar(0);
            bar.start(WorkloadSettings.writeVerify(MIB, MIB, 512, 1));
            bar.awaitSeq(100);
            vmm.kexecLoad(CMDLINE);
            vmm.rebootKexec();
        }
        rig.server(rig.kernel).close();
        bar.stop();
        handover = new EditableHandover(machine, dir.resolve("m"), BLOBS);
        assertTrue(Kernel.validateHandover(machine.board()).restoring(), "the handover as written restores");
    }

    @AfterContainer
    static void powerOff() throws Exception {
        rig.close();
        Trees.delete(dir);
    }

    @Provide
    Arbitrary<Edit> edits() {
        return EditableHandover.edits(6, 3, 1); // LUO, intel-iommu, the KHO tree
    }

    @Property(tries = 40)
    void aResealedEditColdBootsOrRestoresWithoutAHalfState(@ForAll("edits") final Edit edit) throws Exception {
        judge(edit);
    }

    @Property(tries = 1000)
    @AddLifecycleHook(EditableHandover.FullRunOnly.class)
    void manyResealedEdits(@ForAll("edits") final Edit edit) throws Exception {
        judge(edit);
    }

    private static void judge(final Edit edit) throws Exception {
        final EditableHandover.Tried tried = handover.tryEdit(edit);
        if (tried.refused()) {
            return;
        }
        final String what = tried.what();
        final Kernel k = Kernel.boot(machine.board()); // a throw here is a boot that stopped half-way
        try {
            assertEquals(List.of(), DeviceStates.halfStates(k), what);
            assertEquals(List.of(), Reach.freeButReachable(machine.board(), k.frames()::isFree, 10), what);
            if (k.bootKind() == Kernel.BootKind.COLD) {
                net.jqwik.api.statistics.Statistics.collect("cold (boot)");
                for (IommuDevice d : k.iommu().devices()) {
                    assertEquals(k.iommu().blockedDomain(), k.iommu().domainOf(d), what + ": cold, " + d + " blocked");
                }
                return;
            }
            k.liveUpdate().finish();
            assertEquals(List.of(), DeviceStates.halfStates(k), what + " after finish");
            assertEquals(List.of(), Reach.freeButReachable(machine.board(), k.frames()::isFree, 10), what + " after finish");
            assertEquals(List.of(), k.accounting().pinMismatches(), what);
            for (IommuDevice d : k.iommu().devices()) {
                assertEquals(k.iommu().blockedDomain(), k.iommu().domainOf(d), what + ": nobody retrieved " + d);
            }
            net.jqwik.api.statistics.Statistics.collect("restored, finished unretrieved");
        } finally {
            k.kexecLoad(KernelRig.root(), CMDLINE);
            k.kexec();
        }
    }
}
