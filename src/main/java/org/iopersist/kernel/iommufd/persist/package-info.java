/**
 * iommufd's live update, split by step; {@link org.iopersist.kernel.iommufd.persist.IommufdLiveUpdate}
 * is the {@link org.iopersist.kernel.liveupdate.LiveUpdateHandler} that wires them.
 *
 * <table>
 *   <caption>The file of each step</caption>
 *   <tr><th>step</th><th>file</th></tr>
 *   <tr><td>persistent ids, the registry of persistent contexts, frozen</td>
 *       <td>{@code PersistentIds}, {@code PersistentContexts}</td></tr>
 *   <tr><td>the {@code iommufd-v1} format and the plan read from it</td><td>{@code IommufdHandover}</td></tr>
 *   <tr><td>serialize (at freeze)</td><td>{@code HandoverWriter}</td></tr>
 *   <tr><td>validate (next boot, memory only)</td><td>{@code HandoverValidator}</td></tr>
 *   <tr><td>adopt (kernel-held contexts)</td><td>{@code Restorer}</td></tr>
 *   <tr><td>{@code /sys/kernel/iommufd_persisted}, reopen</td><td>{@code PersistedSysfs}</td></tr>
 *   <tr><td>finish</td><td>{@code IommufdLiveUpdate.finish}</td></tr>
 * </table>
 *
 * <p><b>Object graph.</b> The registry holds every persistent context of this boot by persistent
 * id: live ones (made persistent here, or reopened) are held by their fds; restored ones by the
 * kernel, one context reference each, dropped by the reopener's close or by finish. A restored
 * context's objects are built by the objects themselves ({@code Ioas.restore},
 * {@code HwptPaging.restore}, {@code IommufdDevice.restore}), which take and name the same
 * references an ioctl would. iommufd reaches this package only through
 * {@link org.iopersist.kernel.iommufd.PersistentIommufds}.
 *
 * <p><b>Locks.</b> The registry's monitor, taken after a context's monitor and before any IOAS lock
 * (see {@code org.iopersist.kernel.iommufd}); sysfs reads take sysfs's lock, then the registry's,
 * and nothing here calls into sysfs while holding the registry's.
 */
package org.iopersist.kernel.iommufd.persist;
