/**
 * iommufd: a file per object kind, as in Linux's {@code drivers/iommu/iommufd/}.
 *
 * <table>
 *   <caption>Where each part of Linux's iommufd lives</caption>
 *   <tr><th>Linux</th><th>here</th></tr>
 *   <tr><td>{@code main.c}</td><td>{@link org.iopersist.kernel.iommufd.IommufdCtx} (context, dispatch, DESTROY,
 *       OPTION), {@link org.iopersist.kernel.iommufd.ObjectTable}, {@link org.iopersist.kernel.iommufd.IoctlOp},
 *       {@link org.iopersist.kernel.iommufd.IommufdFile}</td></tr>
 *   <tr><td>{@code ioas.c}</td><td>{@link org.iopersist.kernel.iommufd.Ioas}</td></tr>
 *   <tr><td>{@code io_pagetable.c}, {@code io_pagetable.h}</td><td>{@link org.iopersist.kernel.iommufd.IoPagetable},
 *       {@link org.iopersist.kernel.iommufd.IoptArea}</td></tr>
 *   <tr><td>{@code pages.c}</td><td>{@link org.iopersist.kernel.iommufd.IoptPages}</td></tr>
 *   <tr><td>{@code device.c}</td><td>{@link org.iopersist.kernel.iommufd.IommufdDevice},
 *       {@link org.iopersist.kernel.iommufd.Access}</td></tr>
 *   <tr><td>{@code hw_pagetable.c}</td><td>{@link org.iopersist.kernel.iommufd.HwptPaging} (with dirty tracking's
 *       two ioctls; {@code iova_bitmap.c}: {@link org.iopersist.kernel.iommufd.IovaBitmap})</td></tr>
 *   <tr><td>{@code vfio_compat.c}</td><td>{@link org.iopersist.kernel.iommufd.VfioCompat}</td></tr>
 *   <tr><td>{@code selftest.c}, {@code iommufd_test.h}</td><td>{@link org.iopersist.kernel.iommufd.Selftest}
 *       (IOMMU_TEST_CMD), {@link org.iopersist.kernel.iommufd.MockIommu} and
 *       {@link org.iopersist.kernel.iommufd.MockDomain} (the mock IOMMU driver the iommu core probes its
 *       devices with), {@link org.iopersist.kernel.iommufd.SelftestObject},
 *       {@link org.iopersist.kernel.iommufd.SelftestAccess}; only with {@code iommufd.selftest=1}</td></tr>
 *   <tr><td>{@code iommufd_should_fail()}, and the {@code kzalloc}s fail_nth reaches</td><td>{@link
 *       org.iopersist.kernel.iommufd.FailPoints}, one per context, called where Linux's code has them</td></tr>
 *   <tr><td>the RFC's {@code serialise.c}</td><td>{@code org.iopersist.kernel.iommufd.persist}, reached only
 *       through {@link org.iopersist.kernel.iommufd.PersistentIommufds}</td></tr>
 * </table>
 *
 * <p><b>Object graph.</b> An arrow is a counted reference: an object's {@code users}, the context's
 * file count (iommufd_ctx_get/put), or a pages' kref; each names the call that takes it and the one
 * that releases it.
 * <pre>
 * IommufdFile ──▶ IommufdCtx ◀── iommufd_ctx_get: every DEVICE bound, every ACCESS,
 *                    │              the kernel's hold on a restored context
 *                    │ owns the ObjectTable: one users + one shorttermUsers on every published object
 *                    ▼
 *   IOAS ◀──── HWPT_PAGING ◀──── DEVICE     HWPT to IOAS: alloc or restore, until HwptPaging.destroy
 *    ▲                                       DEVICE to HWPT: attach, until detach (replace moves it)
 *    └──────── ACCESS                        ACCESS to IOAS: Access.attach, until Access.detach
 *
 *   an IOAS owns its IoPagetable ──▶ IoptArea ──▶ IoptPages   (kref: one per area and per pages-list
 *                                    element; pin users: the domains' one, each access pin)
 *
 * DEVICE  ◀── the binding driver (IommufdDevice.bind → unbind), its own attach (→ detach)
 * ACCESS  ◀── the creating driver (Access.create → Access.destroy)
 * any     ◀── an ioctl that named it: a short-term reference (ObjectTable.getObject → putObject)
 * </pre>
 * An object is destroyed when the table's reference is the last: IOMMU_DESTROY answers EBUSY
 * otherwise, including while an ioctl holds it short-term (iommufd_object_remove without
 * REMOVE_WAIT_SHORTTERM); unbind and access destroy wait for short-term users to drain
 * (REMOVE_WAIT_SHORTTERM); an auto HWPT goes with its last device (put_and_try_destroy); close
 * destroys leaf first (iommufd_fops_release).
 *
 * <p><b>Lock order</b>, outermost first: a thread holding one of these takes only later ones.
 * <ol>
 *   <li>{@code IommufdCtx.attachLock}: attach, replace, detach, HWPT_ALLOC and the auto-domain
 *       search; it moves references between a device and its HWPTs;</li>
 *   <li>an {@code IommufdCtx}'s monitor: its persistent id;</li>
 *   <li>the {@link org.iopersist.kernel.iommufd.PersistentIommufds} registry's monitor (freeze reads
 *       every IOAS under it; a device's HWPT is a lock-free read);</li>
 *   <li>{@code IoPagetable.domainsLock} (domains_rwsem), or an {@code Access}'s monitor (ioas_lock;
 *       never held together with domainsLock);</li>
 *   <li>{@code IoPagetable.iovaLock} (iova_rwsem);</li>
 *   <li>an {@code Access}'s pin list, or an {@code IoptPages}' monitor (pages::mutex); never nested;</li>
 *   <li>{@code ObjectTable}'s monitor (the xa lock), innermost: it calls nothing out, and a destroy
 *       waits for short-term users with it released.</li>
 * </ol>
 * An access's unmap callback runs with no IOAS lock held, and a kernel-side destroy (unbind, access
 * destroy) waits for short-term users with no lock held. The iommu core's and guestmemfs's locks
 * are below all of these.
 */
package org.iopersist.kernel.iommufd;
