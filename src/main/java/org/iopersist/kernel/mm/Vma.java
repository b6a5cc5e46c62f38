package org.iopersist.kernel.mm;


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
 * @param frames the frames behind its pages, in runs
 */
public record Vma(long start, long length, int prot, MappableFile file, long pgoff, FrameRuns frames) {
    public static final int PAGE_SHIFT = 12;
    public static final long PAGE_SIZE = 1L << PAGE_SHIFT;

    public long end() {
        return start + length;
    }

    public boolean contains(final long va) {
        return Long.compareUnsigned(va - start, length) < 0;
    }

    public long frameOf(final long va) {
        return frames.frameOf((va - start) >>> PAGE_SHIFT);
    }

    public boolean anonymous() {
        return file == null;
    }
}
