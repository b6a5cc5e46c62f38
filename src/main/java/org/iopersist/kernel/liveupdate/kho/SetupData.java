package org.iopersist.kernel.liveupdate.kho;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The boot parameters that carry a handover, x86's {@code struct kho_data} in a
 * {@code SETUP_KEXEC_KHO} record: four little-endian u64 values.
 *
 * @param fdtAddr     physical address of the KHO tree
 * @param fdtSize     bytes reserved for it
 * @param scratchAddr physical address of the scratch region
 * @param scratchSize its size
 */
public record SetupData(long fdtAddr, long fdtSize, long scratchAddr, long scratchSize) {
    public static final int SIZE = 32;

    public byte[] encode() {
        return ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN)
                .putLong(fdtAddr).putLong(fdtSize).putLong(scratchAddr).putLong(scratchSize).array();
    }

    /**
     * Decodes a record; an empty input means no handover (null).
     *
     * @throws HandoverFormatException if the record is not exactly 32 bytes
     */
    public static SetupData decode(final byte[] bytes) throws HandoverFormatException {
        if (bytes.length == 0) {
            return null;
        }
        if (bytes.length != SIZE) {
            throw new HandoverFormatException("setup_data is " + bytes.length + " bytes, not " + SIZE);
        }
        final ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        return new SetupData(b.getLong(), b.getLong(), b.getLong(), b.getLong());
    }
}
