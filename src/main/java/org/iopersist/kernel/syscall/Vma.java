package org.iopersist.kernel.syscall;

/**
 * One mapping of a process: {@code [start, start + length)} of virtual address space, backed page by
 * page by the frames in {@code frames} (anonymous memory, or a file's pages). Frames are resolved
 * when the mapping is made (MAP_POPULATE is the only mode), so a VMA always knows its frames.
 *
 * @param start  first virtual address (page aligned)
 * @param length bytes (page multiple)
 * @param prot   PROT_READ | PROT_WRITE
 * @param file   the mapped file, or null for anonymous memory
 * @param pgoff  the file page the first page maps
 * @param frames physical address of each page
 */
record Vma(long start, long length, int prot, KernelFile file, long pgoff, long[] frames) {
    static final int PAGE_SHIFT = 12;
    static final long PAGE_SIZE = 1L << PAGE_SHIFT;

    long end() {
        return start + length;
    }

    boolean contains(final long va) {
        return Long.compareUnsigned(va - start, length) < 0;
    }

    long frameOf(final long va) {
        return frames[(int) ((va - start) >>> PAGE_SHIFT)];
    }

    boolean anonymous() {
        return file == null;
    }
}
