/**
 * PCI devices: DMA engines behind a source-id, each reaching memory only through its remapping unit,
 * each with a workload generator that software programs through the device's BAR.
 *
 * <p><b>Object graph.</b>
 * <pre>
 * Machine ──owns──▶ PciDevice ──uses──▶ RemappingUnit (hw.vtd; shared by the unit's devices)
 *                       │ owns
 *                       ├──▶ Requester   its in-flight marker in the unit's drain (attached at construction)
 *                       ├──▶ DmaEngine   read / write / writeAndReadBack / copy, one transaction each
 *                       ├──▶ engine thread (platform, daemon): polls CTRL, runs the workload
 *                       └──▶ BAR window  (Mmio.Window; layout in DeviceRegisters)
 * Software, any process:  DeviceBar (program and read a BAR), RecordChecker (find records in RAM),
 *                         CanaryPages (frames that must never change)
 * Formats:                DeviceRegisters (BAR), DmaRecord (record in guest RAM)
 * Values:                 WorkloadSettings, WorkloadMode, DeviceCounters, LatencySummary
 * </pre>
 *
 * <p><b>Threads and locks.</b> Each device's workload state is confined to its engine thread; the
 * BAR is the only thing shared with software, under the MMIO contract (command bits set and cleared
 * atomically, status answered by the device, RW1C by atomic AND). Locks: {@code PciDevice.lifecycle}
 * (start/stop) and {@code PciDevice.published} (the latency copy); neither is held while taking the
 * other, nor while doing DMA. The remapping unit's invalidation drain waits for a device only while
 * the device is inside one {@link org.iopersist.hw.pci.DmaEngine} call, which never blocks.
 */
package org.iopersist.hw.pci;
