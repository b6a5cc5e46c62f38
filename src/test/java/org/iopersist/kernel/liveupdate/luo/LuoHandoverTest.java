package org.iopersist.kernel.liveupdate.luo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.kernel.KernelRig;
import org.iopersist.kernel.init.Kernel;
import org.iopersist.kernel.iommu.IommuDevice;
import org.iopersist.kernel.liveupdate.kho.FdtReader;
import org.iopersist.testing.Handovers;
import org.iopersist.vmm.KernelClient;
import org.iopersist.vmm.LiveupdateHandle;
import org.iopersist.vmm.SessionHandle;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The {@code LUO} blob read by dtc, and broken on purpose: every break ends in a cold boot with
 * every device blocked and no session to retrieve, never in a half-restored machine.
 */
class LuoHandoverTest {
    private static final long MIB = 1L << 20;
    private static final String CMDLINE = "guestmemfs=64M liveupdate.finish_timeout=0";
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    @TempDir
    Path dir;
    /** Before each test, kernel A hands over on it: session vm0 (memfd RAM, iommufd, device 0) and session aux (a memfd). */
    private KernelRig rig;
    private Machine m;
    /** vm0's HWPT id. */
    private int hwpt;

    @BeforeEach
    void handOver() throws Exception {
        rig = KernelRig.boot(dir.resolve("m"), MachineConfig.small().withMemorySize(256 * MIB), CMDLINE);
        m = rig.machine;
        final KernelClient vmm = rig.connect(rig.kernel);
        final LuoVm vm = LuoVm.create(vmm, "ram", 8 * MIB, 0, 1, 7);
        hwpt = vm.hwpt();
        final LiveupdateHandle luo = LiveupdateHandle.open(vmm);
        vm.preserveIn(luo.createSession("vm0"), 1, 2, 3);
        final SessionHandle aux = luo.createSession("aux");
        LuoTestUtils.createAndPreserveMemfd(vmm, aux, 1, "aux data");
        vmm.kexecLoad(CMDLINE);
        vmm.rebootKexec();
    }

    @AfterEach
    void powerOff() {
        if (rig != null) {
            rig.close();
        }
    }

    private FdtReader luo() {
        return Handovers.subtree(m.board(), "LUO");
    }

    private static int node(final FdtReader b, final String path) {
        int n = b.root();
        for (String part : path.split("/")) {
            n = b.subnode(n, part);
        }
        return n;
    }

    /** Reseals the edited blob, boots, and expects a cold boot for {@code reason}. */
    private void assertCold(final String reason) {
        Handovers.reseal(m.board(), "LUO");
        final Kernel b = Kernel.boot(m.board());
        assertEquals(Kernel.BootKind.COLD, b.bootKind(), reason);
        assertTrue(b.coldBootReason().contains(reason), b.coldBootReason());
        for (IommuDevice d : b.iommu().devices()) {
            assertEquals(b.iommu().blockedDomain(), b.iommu().domainOf(d), "blocked: " + d);
        }
    }

    @Test
    void dtcReadsTheBlobAndTheUntouchedHandoverRestores() throws Exception {
        final String dts = Handovers.checkWithDtc(m.board()).get("LUO");
        assertTrue(dts.contains("compatible = \"luo-v1\"") && dts.contains("session-name = \"vm0\"")
                && dts.contains("session-name = \"aux\"") && dts.contains("\"memfd-v2\"") && dts.contains("\"iommufd-v1\"")
                && dts.contains("\"vfio-pci-v1\"") && dts.contains("liveupdate-number = <0x00 0x01>"), dts);
        final Kernel b = Kernel.boot(m.board());
        assertEquals(Kernel.BootKind.LIVE_UPDATE, b.bootKind(), b.coldBootReason());
    }

    @Test
    void twoSessionsOfOneNameColdBoot() throws Exception {
        final FdtReader b = luo();
        MemorySegment.copy(MemorySegment.ofArray("vm0".getBytes(StandardCharsets.US_ASCII)), 0,
                b.value(b.property(node(b, "session@1"), LuoHandover.PROP_SESSION_NAME)), 0, 3);
        assertCold("session 'vm0' appears twice");
    }

    @Test
    void aFileNoHandlerKnowsColdBoots() throws Exception {
        final FdtReader b = luo();
        b.value(b.property(node(b, "session@1/file@0"), "compatible")).set(ValueLayout.JAVA_BYTE, 7, (byte) '9');
        assertCold("no handler for 'memfd-v9'");
    }

    @Test
    void aMemfdPageOutsideTheTrackerColdBoots() throws Exception {
        final FdtReader b = luo();
        b.value(b.property(node(b, "session@1/file@0"), "runs")).set(BE64, 8, 0L); // run 0's first frame
        assertCold("is not preserved");
    }

    /**
     * A memfd record whose page is the VT-d domain's top-level table: both are preserved blocks of
     * order 0, each passes its own handler's check, and two owners would claim one frame (the
     * second claim failing half-way through adoption, or a guest page that is a live page table).
     * Validation plans every claim across handlers and refuses the second.
     */
    @Test
    void aMemfdPageThatIsAVtdTablePageColdBoots() throws Exception {
        final FdtReader vtd = Handovers.subtree(m.board(), org.iopersist.kernel.iommu.intel.VtdHandover.NAME);
        final int dom = vtd.children(vtd.root()).stream().filter(n -> vtd.nodeName(n).startsWith("domain@")).findFirst()
                .orElseThrow();
        final long pgd = vtd.value(vtd.property(dom, "pgd")).get(BE64, 0);
        final FdtReader b = luo();
        final MemorySegment runs = b.value(b.property(node(b, "session@1/file@0"), "runs"));
        assertEquals(1, runs.get(BE64, 16), "the aux memfd is one page");
        runs.set(BE64, 8, pgd);
        assertCold("claimed twice");
    }

    /**
     * The RAM memfd's 8 MiB run went into the tracker as one order-11 block. A record that names
     * only its first half (size and run cut to 4 MiB) asks for an order-10 block nobody preserved:
     * the split must be the one preserve made, or the claim could not take exactly what was kept.
     */
    @Test
    void aMemfdRunThatSplitsOtherwiseThanItWasPreservedColdBoots() throws Exception {
        final FdtReader b = luo();
        final int file = node(b, "session@0/file@0");
        final MemorySegment runs = b.value(b.property(file, "runs"));
        assertEquals(3 * 8, runs.byteSize(), "one run");
        assertEquals(0, runs.get(BE64, 8) % (8 * MIB), "aligned to its 8 MiB: one order-11 block");
        assertEquals(2048, runs.get(BE64, 16));
        b.value(b.property(file, "size")).set(BE64, 0, 4 * MIB);
        runs.set(BE64, 16, 1024L);
        assertCold("is not preserved as its run's block");
    }

    @Test
    void anIommufdAreaOnAFileTheSessionLacksColdBoots() throws Exception {
        final FdtReader b = luo();
        final int file = node(b, "session@0/file@1");
        final int ioas = b.children(file).stream().filter(n -> b.nodeName(n).startsWith("ioas@")).findFirst().orElseThrow();
        b.value(b.property(ioas, "pages")).set(BE64, 0, 0xdeadL); // its file token
        assertCold("past the end of file token 0xdead");
    }

    @Test
    void aDeviceIdTheIommufdUsesColdBoots() throws Exception {
        final FdtReader b = luo();
        b.value(b.property(node(b, "session@0/file@2"), "dev-id")).set(BE32, 0, hwpt);
        assertCold("object id " + hwpt + " is invalid or taken in its iommufd");
    }

    @Test
    void aDeviceWhoseIommufdIsNotInItsSessionColdBoots() throws Exception {
        final FdtReader b = luo();
        b.value(b.property(node(b, "session@0/file@2"), "iommufd")).set(BE64, 0, 1L); // the memfd's token
        assertCold("is not translating through a preserved HWPT of its iommufd");
    }
}
