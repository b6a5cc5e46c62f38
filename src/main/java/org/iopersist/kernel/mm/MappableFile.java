package org.iopersist.kernel.mm;

import org.iopersist.kernel.KernelException;
import org.iopersist.uapi.Errno;

/**
 * What a VMA needs of the file it maps: the frames behind its pages, and to hear when a mapping
 * begins or ends. The mmap half of Linux's {@code file_operations}; {@code fs.KernelFile} extends
 * it, so address spaces know files without depending on the VFS above them.
 */
public interface MappableFile {
    /**
     * The frame behind page {@code pageIndex} of a shared file mapping, allocating it if the file
     * allows, or {@link KernelException} (ENODEV if the file cannot be mapped, EINVAL past its end).
     */
    default long mmapFrame(final long pageIndex) {
        throw new KernelException(Errno.ENODEV, "mmap of " + describe());
    }

    /**
     * The frames behind {@code pages} pages from {@code firstPage}, appended to {@code out} as
     * {@link #mmapFrame} gives them one by one; a file whose pages come in larger contiguous pieces
     * appends whole pieces, so mapping it costs one step per piece.
     */
    default void mmapRuns(final long firstPage, final long pages, final FrameRuns.Builder out) {
        for (long i = 0; i < pages; i++) {
            out.add(mmapFrame(firstPage + i), 1);
        }
    }

    /** A file mapping began or ended; files that pin their pages while mapped count these. */
    default void mapped(final long pageIndex, final long pages, final boolean map) {
    }

    /**
     * As {@link #mapped(long, long, boolean)}, saying whether the mapping may write: a memfd counts
     * its writable mappings, which {@code F_SEAL_WRITE} must not find.
     */
    default void mapped(final long pageIndex, final long pages, final boolean map, final boolean writable) {
        mapped(pageIndex, pages, map);
    }

    /** A shared mapping with {@code prot} is about to be made: EPERM if the file forbids it (a write seal). */
    default void mmapCheck(final int prot) {
    }

    String describe();
}
