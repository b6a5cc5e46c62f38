package org.iopersist.kernel;

import org.iopersist.kernel.fs.UserProcess;

import org.iopersist.kernel.init.Kernel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;

/** A machine running in this JVM with a kernel booted on it from a given command line. */
public final class KernelRig implements AutoCloseable {
    public final Machine machine;
    public final Kernel kernel;

    private KernelRig(final Machine machine, final Kernel kernel) {
        this.machine = machine;
        this.kernel = kernel;
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
