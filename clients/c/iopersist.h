/* SPDX-License-Identifier: MIT */
/*
 * iopersist.h: a C client of the iopersist kernel's wire ABI (docs/uapi.md).
 *
 * One connection to the kernel's Unix socket is one process. iop_syscall() sends a syscall as a
 * frame and returns its value or -errno; pointers in its arguments are virtual addresses in this
 * process's address space *inside the model*, not in the C program's own memory. The library
 * reaches that address space as a CPU does: it maps the machine's memory file and translates
 * each virtual page through /proc/self/pagemap (iop_phys, iop_read, iop_write). Every process
 * starts with a 64 KiB stack mapping whose frames the kernel names at connect; the library uses
 * it as scratch for paths and ioctl structs, so iop_ioctl() takes a pointer to a struct in C
 * memory and copies it in and out.
 *
 *     struct iop_conn c;
 *     if (iop_connect(&c, "/tmp/m1/kernel.sock", "/tmp/m1/memory") < 0) ...;
 *     int fd = iop_open(&c, "/dev/iommu", IOP_O_RDWR);
 *     struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
 *     if (iop_ioctl(&c, fd, IOMMU_IOAS_ALLOC, &alloc, sizeof(alloc)) < 0) ...;
 *     iop_exit(&c);   // closes every fd the process holds, as exit(2) does
 *
 * The Linux uAPI structs and ioctl numbers come from <linux/iommufd.h>, <linux/vfio.h> and
 * <linux/liveupdate.h> (the LUO's /dev/liveupdate sessions, Linux 6.19) when
 * the installed headers have everything used here (Linux 6.13 or later for iommufd; the iommufd
 * cdev ioctls of VFIO since 6.6); otherwise this header defines them exactly as Linux does, under
 * Linux's own include guard, so a later #include of the system header is harmless. Building with
 * -DIOP_OWN_UAPI takes this header's definitions whatever is installed (then do not include the
 * system's <linux/iommufd.h> or <linux/vfio.h> yourself): they are the ones the tests check.
 *
 * Not thread safe: one thread per connection, as a single-threaded process.
 */
#ifndef IOPERSIST_H
#define IOPERSIST_H

#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/version.h>

/* ---------------------------------------------------------------- the Linux uAPI */

#if !defined(IOP_OWN_UAPI) && defined(__has_include)
#if __has_include(<linux/iommufd.h>) && LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#include <linux/iommufd.h>
#define IOP_SYSTEM_IOMMUFD_H 1
#endif
#endif

#ifndef IOP_SYSTEM_IOMMUFD_H
/* include/uapi/linux/iommufd.h, the structs and numbers this kernel implements. */
#ifndef _UAPI_IOMMUFD_H
#define _UAPI_IOMMUFD_H

#define IOMMUFD_TYPE (';')

enum {
	IOMMUFD_CMD_BASE = 0x80,
	IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
	IOMMUFD_CMD_IOAS_ALLOC = 0x81,
	IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82,
	IOMMUFD_CMD_IOAS_COPY = 0x83,
	IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
	IOMMUFD_CMD_IOAS_MAP = 0x85,
	IOMMUFD_CMD_IOAS_UNMAP = 0x86,
	IOMMUFD_CMD_OPTION = 0x87,
	IOMMUFD_CMD_VFIO_IOAS = 0x88,
	IOMMUFD_CMD_HWPT_ALLOC = 0x89,
	IOMMUFD_CMD_GET_HW_INFO = 0x8a,
	IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b,
	IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c,
	IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d,
	IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e,
	IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f,
};

struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

struct iommu_iova_range {
	__aligned_u64 start;
	__aligned_u64 last;
};

struct iommu_ioas_iova_ranges {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
	__aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)

struct iommu_ioas_allow_iovas {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
};
#define IOMMU_IOAS_ALLOW_IOVAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS)

enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

struct iommu_ioas_map_file {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__s32 fd;
	__aligned_u64 start;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE)

struct iommu_ioas_copy {
	__u32 size;
	__u32 flags;
	__u32 dst_ioas_id;
	__u32 src_ioas_id;
	__aligned_u64 length;
	__aligned_u64 dst_iova;
	__aligned_u64 src_iova;
};
#define IOMMU_IOAS_COPY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY)

struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

enum iommufd_option {
	IOMMU_OPTION_RLIMIT_MODE = 0,
	IOMMU_OPTION_HUGE_PAGES = 1,
};

enum iommufd_option_ops {
	IOMMU_OPTION_OP_SET = 0,
	IOMMU_OPTION_OP_GET = 1,
};

struct iommu_option {
	__u32 size;
	__u32 option_id;
	__u16 op;
	__u16 __reserved;
	__u32 object_id;
	__aligned_u64 val64;
};
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)

enum iommufd_hwpt_alloc_flags {
	IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,
	IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,
	IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,
	IOMMU_HWPT_ALLOC_PASID = 1 << 3,
};

enum iommu_hwpt_data_type {
	IOMMU_HWPT_DATA_NONE = 0,
	IOMMU_HWPT_DATA_VTD_S1 = 1,
};

struct iommu_hwpt_alloc {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 pt_id;
	__u32 out_hwpt_id;
	__u32 __reserved;
	__u32 data_type;
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 fault_id;
	__u32 __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

struct iommu_hw_info_vtd {
	__u32 flags;
	__u32 __reserved;
	__aligned_u64 cap_reg;
	__aligned_u64 ecap_reg;
};

enum iommu_hw_info_type {
	IOMMU_HW_INFO_TYPE_NONE = 0,
	IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
};

struct iommu_hw_info {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 out_data_type;
	__u8 out_max_pasid_log2;
	__u8 __reserved[3];
	__aligned_u64 out_capabilities;
};
#define IOMMU_GET_HW_INFO _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO)

#endif /* _UAPI_IOMMUFD_H */
#endif /* !IOP_SYSTEM_IOMMUFD_H */

/* include/uapi/linux/vfio.h: the system's, plus the iommufd cdev ioctls (Linux 6.6) if it lacks them. */
#ifndef IOP_OWN_UAPI
#include <linux/vfio.h>
#elif !defined(VFIO_TYPE)
#define VFIO_TYPE (';')
#define VFIO_BASE 100
#endif
#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)

struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pt_id;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)

struct vfio_device_detach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

/*
 * include/uapi/linux/liveupdate.h, the Live Update Orchestrator (Linux 6.19): the system's when
 * installed, else Linux's own definitions under its include guard.
 */
#if !defined(IOP_OWN_UAPI) && defined(__has_include)
#if __has_include(<linux/liveupdate.h>)
#include <linux/liveupdate.h>
#endif
#endif
#ifndef _UAPI_LIVEUPDATE_H
#define _UAPI_LIVEUPDATE_H

#define LIVEUPDATE_IOCTL_TYPE		0xBA
#define LIVEUPDATE_SESSION_NAME_LENGTH 64

enum {
	LIVEUPDATE_CMD_BASE = 0x00,
	LIVEUPDATE_CMD_CREATE_SESSION = LIVEUPDATE_CMD_BASE,
	LIVEUPDATE_CMD_RETRIEVE_SESSION = 0x01,
};

enum {
	LIVEUPDATE_CMD_SESSION_BASE = 0x40,
	LIVEUPDATE_CMD_SESSION_PRESERVE_FD = LIVEUPDATE_CMD_SESSION_BASE,
	LIVEUPDATE_CMD_SESSION_RETRIEVE_FD = 0x41,
	LIVEUPDATE_CMD_SESSION_FINISH = 0x42,
};

struct liveupdate_ioctl_create_session {
	__u32 size;
	__s32 fd;
	__u8 name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
#define LIVEUPDATE_IOCTL_CREATE_SESSION _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_CREATE_SESSION)

struct liveupdate_ioctl_retrieve_session {
	__u32 size;
	__s32 fd;
	__u8 name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
#define LIVEUPDATE_IOCTL_RETRIEVE_SESSION _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_RETRIEVE_SESSION)

struct liveupdate_session_preserve_fd {
	__u32 size;
	__s32 fd;
	__aligned_u64 token;
};
#define LIVEUPDATE_SESSION_PRESERVE_FD _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_PRESERVE_FD)

struct liveupdate_session_retrieve_fd {
	__u32 size;
	__s32 fd;
	__aligned_u64 token;
};
#define LIVEUPDATE_SESSION_RETRIEVE_FD _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_RETRIEVE_FD)

struct liveupdate_session_finish {
	__u32 size;
	__u32 reserved;
};
#define LIVEUPDATE_SESSION_FINISH _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_FINISH)

#endif /* _UAPI_LIVEUPDATE_H */

/* GET_NAME came after 6.19 (the next free session command); this kernel implements it. */
#ifndef LIVEUPDATE_SESSION_GET_NAME
struct liveupdate_session_get_name {
	__u32 size;
	__u32 reserved;
	__u8 name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
#define LIVEUPDATE_SESSION_GET_NAME _IO(LIVEUPDATE_IOCTL_TYPE, 0x43)
#endif

/*
 * The persistence option of the RFC (docs/uapi.md, "Persistent contexts"): IOMMU_OPTION with
 * OP_SET on an empty context makes it persistent and returns its persistent id in val64; OP_GET
 * returns it (0 if not persistent). This project's one addition to the uAPI, so not in Linux.
 */
#define IOP_OPTION_PERSISTENT 2

/* ---------------------------------------------------------------- the wire ABI */

#define IOP_MAGIC 0x494f5053u       /* the hello's magic, "SPOI" little-endian */
#define IOP_ABI_VERSION 1
#define IOP_PAGE_SIZE 4096ull
#define IOP_MAX_STACK_PAGES 256

/* Syscall numbers: x86-64's, whatever the host (docs/uapi.md, "Syscalls"). */
#define IOP_NR_READ 0
#define IOP_NR_WRITE 1
#define IOP_NR_OPEN 2
#define IOP_NR_CLOSE 3
#define IOP_NR_STAT 4
#define IOP_NR_LSEEK 8
#define IOP_NR_MMAP 9
#define IOP_NR_MUNMAP 11
#define IOP_NR_IOCTL 16
#define IOP_NR_PREAD64 17
#define IOP_NR_PWRITE64 18
#define IOP_NR_GETPID 39
#define IOP_NR_FTRUNCATE 77
#define IOP_NR_UNLINK 87
#define IOP_NR_GETUID 102
#define IOP_NR_STATFS 137
#define IOP_NR_REBOOT 169
#define IOP_NR_GETDENTS64 217
#define IOP_NR_KEXEC_LOAD 246
#define IOP_NR_MEMFD_CREATE 319

/* Flags as x86-64 Linux numbers them. */
#define IOP_O_RDONLY 0
#define IOP_O_WRONLY 1
#define IOP_O_RDWR 2
#define IOP_O_DIRECTORY 0200000
#define IOP_PROT_READ 1
#define IOP_PROT_WRITE 2
#define IOP_MAP_SHARED 0x01
#define IOP_MAP_PRIVATE 0x02
#define IOP_MAP_ANONYMOUS 0x20

/* struct stat (x86-64, 144 bytes): the fields the kernel fills. */
#define IOP_STAT_SIZE 144
#define IOP_STAT_INO 8
#define IOP_STAT_MODE 24
#define IOP_STAT_UID 28
#define IOP_STAT_SIZE_OFF 48

/* One process: its connection, what the hello said, and its view of physical memory. */
struct iop_conn {
	int sock;                 /* the Unix socket; -1 once exited */
	int mem_fd;               /* the machine's memory file */
	unsigned char *mem;       /* mapped whole, MAP_SHARED: physical address == offset */
	uint64_t mem_size;
	uint32_t pid, uid, gid;   /* as the kernel sees this process */
	uint64_t stack_va;        /* the 64 KiB stack mapping every process starts with */
	uint64_t stack_len;
	uint64_t stack_phys[IOP_MAX_STACK_PAGES]; /* each stack page's frame, from the hello */
	int pagemap_fd;           /* this process's /proc/self/pagemap in the kernel, or -1 */
	uint64_t tlb_vpn, tlb_phys; /* the last page translated (tlb_vpn = ~0: none) */
};

/*
 * Connects to the kernel at socket_path as a new process, and maps the machine's memory file.
 * Returns 0, or -errno (-EPROTO for a peer that is not an iopersist kernel of this ABI).
 */
int iop_connect(struct iop_conn *c, const char *socket_path, const char *memory_path);

/*
 * Process exit: shuts down the sending side and waits until the kernel closes its end, which it
 * does after every fd of the process is released (as wait(2) on an exited child); then unmaps.
 */
void iop_exit(struct iop_conn *c);

/* One syscall: its return value, or -errno (Linux numbers). -ECONNRESET if the kernel is gone. */
long iop_syscall(struct iop_conn *c, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		 uint64_t a4, uint64_t a5);

/*
 * ioctl(fd, cmd, arg) with arg a struct of len bytes in C memory: copied into the process's
 * scratch memory, passed by its address, and copied back. Pointers inside the struct (arrays,
 * data_uptr) must be addresses in the process (iop_alloc, iop_mmap), not C pointers.
 * Returns the ioctl's value or -errno.
 */
long iop_ioctl(struct iop_conn *c, int fd, unsigned long cmd, void *arg, size_t len);

/* ---- user memory: the process's virtual addresses, through pagemap and the memory file */

/* The physical address behind va, or -EFAULT if no page is mapped there. */
int iop_phys(struct iop_conn *c, uint64_t va, uint64_t *phys);
/* Copy len bytes from / to the process's memory at va. 0 or -EFAULT. */
int iop_read(struct iop_conn *c, uint64_t va, void *buf, size_t len);
int iop_write(struct iop_conn *c, uint64_t va, const void *buf, size_t len);
/* Forget cached translations (after munmap, or mmap over a range). */
void iop_flush(struct iop_conn *c);
/* Anonymous memory in the process: its virtual address, or -errno. */
long iop_alloc(struct iop_conn *c, uint64_t length);

/* ---- the calls a VMM needs, built on iop_syscall (each returns its value or -errno) */

int iop_open(struct iop_conn *c, const char *path, int flags);
int iop_close(struct iop_conn *c, int fd);
long iop_mmap(struct iop_conn *c, uint64_t addr, uint64_t length, int prot, int flags, int fd, uint64_t offset);
long iop_munmap(struct iop_conn *c, uint64_t va, uint64_t length);
/* Reads a small file (sysfs) whole into buf, NUL-terminated, trailing newline removed: its length. */
long iop_read_file(struct iop_conn *c, const char *path, char *buf, size_t size);
/* Writes value to a file (sysfs) in one write. */
long iop_write_file(struct iop_conn *c, const char *path, const char *value);
/* pread(2) of up to 16 KiB into buf (C memory): the bytes read. */
long iop_pread(struct iop_conn *c, int fd, void *buf, size_t len, uint64_t offset);
/* lseek(2): the new offset. */
long iop_lseek(struct iop_conn *c, int fd, int64_t offset, int whence);
/* stat(2): size and inode of a file of a mounted filesystem (/guestmemfs/NAME). */
int iop_stat(struct iop_conn *c, const char *path, uint64_t *size, uint64_t *ino);

#endif /* IOPERSIST_H */
