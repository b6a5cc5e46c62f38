package org.iopersist.hw.pci;

import org.iopersist.hw.memory.Mmio;

/**
 * The settings registers of a device's BAR, as one value. Construction does not validate: the
 * device validates at START and answers through STATUS.ERR and ERROR, as hardware would, so a test
 * can program nonsense and watch it refused.
 *
 * @param iovaBase     IOVA of the first byte of the window (WIN_BASE)
 * @param length       window length in bytes (WIN_LENGTH)
 * @param mode         what to do with each slot (MODE register value; see {@link WorkloadMode})
 * @param recordSize   bytes per record (RECORD_SIZE)
 * @param generation   carried in every record and seeding its payload (GENERATION)
 * @param paceNanos    minimum ns from the start of one record to the start of the next; 0 = back to back
 * @param msiIova      IOVA of the interrupt message write (MSI_ADDR)
 * @param msiData      32-bit data of the interrupt message (MSI_DATA)
 * @param msiInterval  successful records per interrupt message; 0 = no interrupts
 */
public record WorkloadSettings(long iovaBase, long length, int mode, int recordSize, long generation,
                               long paceNanos, long msiIova, int msiData, int msiInterval) {

    /** Write-and-verify over {@code [iovaBase, iovaBase + length)}, back to back, no interrupts. */
    public static WorkloadSettings writeVerify(final long iovaBase, final long length, final int recordSize,
                                               final long generation) {
        return new WorkloadSettings(iovaBase, length, WorkloadMode.WRITE_VERIFY.code, recordSize, generation, 0, 0, 0, 0);
    }

    /** With {@code newMode}. */
    public WorkloadSettings withMode(final WorkloadMode newMode) {
        return withModeCode(newMode.code);
    }

    /** With a raw MODE value, valid or not. */
    public WorkloadSettings withModeCode(final int newMode) {
        return new WorkloadSettings(iovaBase, length, newMode, recordSize, generation, paceNanos, msiIova, msiData, msiInterval);
    }

    /** With the window {@code [newIovaBase, newIovaBase + newLength)}. */
    public WorkloadSettings withWindow(final long newIovaBase, final long newLength) {
        return new WorkloadSettings(newIovaBase, newLength, mode, recordSize, generation, paceNanos, msiIova, msiData, msiInterval);
    }

    /** With records of {@code newRecordSize} bytes. */
    public WorkloadSettings withRecordSize(final int newRecordSize) {
        return new WorkloadSettings(iovaBase, length, mode, newRecordSize, generation, paceNanos, msiIova, msiData, msiInterval);
    }

    /** With generation {@code newGeneration}. */
    public WorkloadSettings withGeneration(final long newGeneration) {
        return new WorkloadSettings(iovaBase, length, mode, recordSize, newGeneration, paceNanos, msiIova, msiData, msiInterval);
    }

    /** With at least {@code newPaceNanos} ns between record starts. */
    public WorkloadSettings withPace(final long newPaceNanos) {
        return new WorkloadSettings(iovaBase, length, mode, recordSize, generation, newPaceNanos, msiIova, msiData, msiInterval);
    }

    /** Sends {@code data} to {@code iova} after every {@code interval} successful records. */
    public WorkloadSettings withMsi(final long iova, final int data, final int interval) {
        return new WorkloadSettings(iovaBase, length, mode, recordSize, generation, paceNanos, iova, data, interval);
    }

    /** Records in the window (meaningful only for settings the device accepts). */
    public long slots() {
        return length / recordSize;
    }

    /** IOVA of slot {@code slot}. */
    public long slotIova(final long slot) {
        return iovaBase + slot * recordSize;
    }

    /** Writes every settings register of {@code bar} (software side; no command). */
    public void writeTo(final Mmio.Window bar) {
        bar.write64(DeviceRegisters.WIN_BASE, iovaBase);
        bar.write64(DeviceRegisters.WIN_LENGTH, length);
        bar.write32(DeviceRegisters.MODE, mode);
        bar.write32(DeviceRegisters.RECORD_SIZE, recordSize);
        bar.write64(DeviceRegisters.GENERATION, generation);
        bar.write64(DeviceRegisters.PACE_NS, paceNanos);
        bar.write64(DeviceRegisters.MSI_ADDR, msiIova);
        bar.write32(DeviceRegisters.MSI_DATA, msiData);
        bar.write32(DeviceRegisters.MSI_INTERVAL, msiInterval);
    }

    /** Reads every settings register of {@code bar}. */
    public static WorkloadSettings readFrom(final Mmio.Window bar) {
        return new WorkloadSettings(bar.read64(DeviceRegisters.WIN_BASE), bar.read64(DeviceRegisters.WIN_LENGTH),
                bar.read32(DeviceRegisters.MODE), bar.read32(DeviceRegisters.RECORD_SIZE),
                bar.read64(DeviceRegisters.GENERATION), bar.read64(DeviceRegisters.PACE_NS),
                bar.read64(DeviceRegisters.MSI_ADDR), bar.read32(DeviceRegisters.MSI_DATA),
                bar.read32(DeviceRegisters.MSI_INTERVAL));
    }

    /**
     * The ERROR code the device answers START with for these settings, or {@link DeviceRegisters#ERR_NONE}.
     * The device itself uses this check.
     */
    public int validate() {
        if ((iovaBase & 0xFFF) != 0 || length <= 0 || (length & 0xFFF) != 0
                || Long.compareUnsigned(iovaBase + length - 1, iovaBase) < 0) {
            return DeviceRegisters.ERR_WINDOW;
        }
        if (recordSize < DmaRecord.MIN_SIZE || recordSize > DmaRecord.MAX_SIZE || Integer.bitCount(recordSize) != 1) {
            return DeviceRegisters.ERR_RECORD_SIZE;
        }
        if (WorkloadMode.ofCode(mode) == null) {
            return DeviceRegisters.ERR_MODE;
        }
        if (msiInterval != 0 && (msiIova & 3) != 0) {
            return DeviceRegisters.ERR_MSI;
        }
        return DeviceRegisters.ERR_NONE;
    }
}
