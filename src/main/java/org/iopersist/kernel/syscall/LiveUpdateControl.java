package org.iopersist.kernel.syscall;

import org.iopersist.kernel.fs.UserProcess;

/** The syscalls that end a boot: kexec_load stages the next kernel, reboot(KEXEC) starts it. */
public interface LiveUpdateControl {
    /** kexec_load(2), reduced to what the model needs: the next kernel's command line. */
    void kexecLoad(UserProcess caller, String cmdline);

    /** reboot(LINUX_REBOOT_CMD_KEXEC): does not return to the caller on success. */
    void rebootKexec(UserProcess caller);
}
