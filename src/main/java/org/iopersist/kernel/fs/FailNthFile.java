package org.iopersist.kernel.fs;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * {@code /proc/thread-self/fail-nth} (also {@code /proc/self/task/<tid>/fail-nth}): a task's
 * {@code fail_nth}, as {@code fs/proc/base.c} serves it. A write of N (an unsigned integer in C
 * notation, a trailing newline allowed) makes the Nth injectable site of the task's later syscalls
 * fail; 0 turns it off. A read gives {@code "%u\n"} of what is left: 0 once the failure fired.
 * Writing the file is itself a syscall with a user copy, so turning injection off can be what
 * fires it, as the Linux selftest notes.
 */
final class FailNthFile implements KernelFile {
    /** kstrtouint_from_user reads at most this many bytes (its buffer of 64, one kept for the NUL). */
    private static final int MAX_INPUT = 63;
    private final UserProcess task;

    FailNthFile(final UserProcess task) {
        this.task = task;
    }

    @Override
    public long read(final UserProcess process, final long bufVa, final long count, final long offset) {
        final byte[] text = (Integer.toUnsignedString(task.failNth().nth()) + "\n").getBytes(StandardCharsets.US_ASCII);
        if (offset >= text.length) {
            return 0;
        }
        final int n = (int) Math.min(count, text.length - offset);
        process.mm().copyToUser(bufVa, MemorySegment.ofArray(text), offset, n);
        return n;
    }

    @Override
    public long write(final UserProcess process, final long bufVa, final long count, final long offset) {
        final int len = (int) Math.min(count, MAX_INPUT);
        final byte[] buf = new byte[len];
        process.mm().copyFromUser(bufVa, MemorySegment.ofArray(buf), 0, len);
        task.failNth().nth(parseUint(new String(buf, StandardCharsets.US_ASCII)));
        return count;
    }

    /** kstrtouint with base 0: decimal, 0x hex or 0 octal, one optional leading '+' and trailing newline. */
    static int parseUint(final String s) {
        String t = s.endsWith("\n") ? s.substring(0, s.length() - 1) : s;
        if (t.startsWith("+")) {
            t = t.substring(1);
        }
        int radix = 10;
        if (t.length() > 1 && t.charAt(0) == '0' && (t.charAt(1) == 'x' || t.charAt(1) == 'X')) {
            radix = 16;
            t = t.substring(2);
        } else if (t.length() > 1 && t.charAt(0) == '0') {
            radix = 8;
            t = t.substring(1);
        }
        boolean digits = !t.isEmpty();
        for (int i = 0; i < t.length(); i++) {
            digits &= Character.digit(t.charAt(i), radix) >= 0;
        }
        if (!digits) {
            throw new KernelException(Errno.EINVAL, "fail-nth: not an unsigned integer: \"" + s.strip() + "\"");
        }
        final long v;
        try {
            v = Long.parseLong(t, radix);
        } catch (NumberFormatException e) {
            throw new KernelException(Errno.ERANGE, "fail-nth: " + s.strip() + " is out of range");
        }
        if (v > 0xFFFF_FFFFL) {
            throw new KernelException(Errno.ERANGE, "fail-nth: " + s.strip() + " is out of range");
        }
        return (int) v; // unsigned, as task_struct's fail_nth

    }

    @Override
    public String describe() {
        return "/proc/" + task.pid() + "/task/" + task.pid() + "/fail-nth";
    }
}
