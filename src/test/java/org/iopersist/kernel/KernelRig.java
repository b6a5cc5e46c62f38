package org.iopersist.kernel;

import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.init.Accounting;

import org.iopersist.kernel.init.Kernel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;

/**
 * A machine running in this JVM with a kernel booted on it from a given command line, and the
 * kernel's books as the boot left them: the iommufd and VFIO tests end with
 * {@link #assertBooksBalanced}, issue 16's invariant that once the last process has exited no pin,
 * frame, DID or object it held is left.
 */
public final class KernelRig implements AutoCloseable {
    public final Machine machine;
    public final Kernel kernel;
    /** The books right after boot, before any process connected. */
    public final Accounting booted;

    private KernelRig(final Machine machine, final Kernel kernel) {
        this.machine = machine;
        this.kernel = kernel;
        this.booted = kernel.accounting();
    }

    /**
     * The invariant check: no process is left (close the servers first: a process's exit runs its
     * releases before its connection closes), each count of the books ({@link Accounting}: frames
     * allocated, user frames, DIDs, DMA owners, attached devices, guestmemfs pins, persistent
     * contexts) is back where the boot left it, and no process was charged other than what its
     * areas pin on the way.
     */
    public void assertBooksBalanced(final String when) {
        final Accounting now = kernel.accounting();
        org.junit.jupiter.api.Assertions.assertEquals(java.util.List.of(), now.leaksAgainst(booted),
                "the kernel's books " + when + " (after the last process exited)");
    }

    /** The kernel's last FAULT_INJECTION line, where a fail_nth run was made to fail, for a failure's message. */
    public String lastInjection() {
        final java.util.List<String> d = kernel.log().dmesg();
        for (int i = d.size() - 1; i >= 0; i--) {
            if (d.get(i).contains("FAULT_INJECTION")) {
                return d.get(i);
            }
        }
        return "nothing injected";
    }

    /** A root caller for the kernel's entry points that check credentials (kexec_load). */
    public static UserProcess root() {
        return new UserProcess(1, 0, 0, null, 0, 0);
    }

    public static KernelRig boot(final Path dir, final MachineConfig config, final String cmdline) {
        final Machine machine = Machine.create(dir, config).start();
        try {
            Files.writeString(dir.resolve("boot").resolve(Kernel.CMDLINE_FILE), cmdline);
            return new KernelRig(machine, Kernel.boot(machine.board()));
        } catch (IOException e) {
            machine.close();
            throw new UncheckedIOException(e);
        } catch (RuntimeException | Error e) {
            machine.close();
            throw e;
        }
    }

    public DeviceBar bar(final int device) {
        return new DeviceBar(machine.board().deviceBar(device));
    }

    @Override
    public void close() {
        for (int i = 0; i < machine.devices().size(); i++) {
            bar(i).stop();
        }
        machine.close();
    }
}
