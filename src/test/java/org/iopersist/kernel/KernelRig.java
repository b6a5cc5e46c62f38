package org.iopersist.kernel;

import org.iopersist.kernel.fs.UserProcess;
import org.iopersist.kernel.init.Accounting;

import org.iopersist.kernel.init.Kernel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.iopersist.hw.Machine;
import org.iopersist.hw.MachineConfig;
import org.iopersist.hw.pci.DeviceBar;
import org.iopersist.kernel.liveupdate.luo.Luo;
import org.iopersist.kernel.liveupdate.luo.LuoFileHandler;
import org.iopersist.kernel.syscall.SyscallServer;
import org.iopersist.vmm.KernelClient;

/**
 * A machine running in this JVM with a kernel booted on it from a given command line, and the
 * kernel's books as the boot left them: the iommufd and VFIO tests end with
 * {@link #assertBooksBalanced}, issue 16's invariant that once the last process has exited no pin,
 * frame, DID or object it held is left. The live-update tests boot the next kernel on the same
 * machine ({@link #bootNext}) and connect processes to either ({@link #connect}).
 */
public final class KernelRig implements AutoCloseable {
    public final Machine machine;
    public final Kernel kernel;
    /** The books right after boot, before any process connected. */
    public final Accounting booted;
    private final Path dir;
    /** Each kernel's syscall server, made at its first {@link #connect}; guarded by {@code this}. */
    private final Map<Kernel, SyscallServer> servers = new IdentityHashMap<>();

    private KernelRig(final Path dir, final Machine machine, final Kernel kernel) {
        this.dir = dir;
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
        return boot(dir, config, cmdline, List.of());
    }

    /**
     * As {@link #boot(Path, MachineConfig, String)}, with the file handlers of LUO modules loaded
     * before the live-update core validates (as {@code Kernel.boot} takes them).
     */
    public static KernelRig boot(final Path dir, final MachineConfig config, final String cmdline,
            final List<Function<Luo, LuoFileHandler>> luoModules) {
        final Machine machine = Machine.create(dir, config).start();
        try {
            Files.writeString(dir.resolve("boot").resolve(Kernel.CMDLINE_FILE), cmdline);
            return new KernelRig(dir, machine, Kernel.boot(machine.board(), null, luoModules));
        } catch (IOException e) {
            machine.close();
            throw new UncheckedIOException(e);
        } catch (RuntimeException | Error e) {
            machine.close();
            throw e;
        }
    }

    /** The next kernel, booted from the board alone (after a kexec): what the boot record hands it decides its boot kind. */
    public Kernel bootNext() {
        return bootNext(List.of());
    }

    /** As {@link #bootNext()}, with the file handlers of LUO modules. */
    public Kernel bootNext(final List<Function<Luo, LuoFileHandler>> luoModules) {
        return Kernel.boot(machine.board(), null, luoModules);
    }

    /**
     * {@code k}'s syscall server (this rig's kernel or one booted after it), serving on a socket of
     * its own in the machine's folder from the first call on; the caller may close it.
     */
    public synchronized SyscallServer server(final Kernel k) {
        return servers.computeIfAbsent(k, kk -> {
            try {
                return kk.serve(dir.resolve("k" + servers.size() + ".sock"));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** A new process of {@code k}, on its {@link #server}, that sees the machine's memory. */
    public KernelClient connect(final Kernel k) throws IOException {
        return KernelClient.connect(server(k).path(), dir.resolve("memory"));
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
