/* SPDX-License-Identifier: MIT */
/*
 * iopersist.c: the wire ABI of docs/uapi.md in C. Frames are little-endian; this file assumes a
 * little-endian host (x86-64, arm64) and says so at compile time.
 *
 * Scratch: the process's stack mapping, whose frames the hello names, so the library can build
 * a path or an ioctl struct in user memory before it can read pagemap:
 *   stack_va + 0       paths (up to 4 KiB)
 *   stack_va + 4 KiB   read / write buffers (up to 16 KiB)
 *   stack_va + 24 KiB  the ioctl struct (up to 8 KiB)
 *   stack_va + 32 KiB  pagemap entries (up to 32 KiB: 4096 pages per read)
 */
#define _GNU_SOURCE
#include "iopersist.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "iopersist.c reads little-endian frames in place: build it for a little-endian host"
#endif

#define HELLO_SIZE 48
#define REQUEST_SIZE 56
#define REPLY_SIZE 16

#define SCRATCH_PATH 0
#define SCRATCH_BUF 4096
#define SCRATCH_BUF_LEN 16384
#define SCRATCH_IOCTL (24 * 1024)
#define SCRATCH_IOCTL_LEN 8192
#define SCRATCH_PAGEMAP (32 * 1024)
#define PAGEMAP_BATCH 4096

#define PM_PRESENT (1ull << 63)
#define PM_PFN_MASK ((1ull << 55) - 1)

static int read_fully(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET; /* the kernel is gone: a kexec, or a halt */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_fully(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EPIPE ? -ECONNRESET : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

int iop_connect(struct iop_conn *c, const char *socket_path, const char *memory_path)
{
	struct sockaddr_un addr;
	unsigned char hello[HELLO_SIZE + 8 * IOP_MAX_STACK_PAGES];
	struct stat st;
	uint32_t size;
	int ret;

	memset(c, 0, sizeof(*c));
	c->sock = -1;
	c->mem_fd = -1;
	c->pagemap_fd = -1;
	c->tlb_vpn = ~0ull;
	if (strlen(socket_path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG; /* sun_path holds 107 bytes and a NUL */
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, socket_path);

	c->mem_fd = open(memory_path, O_RDWR | O_CLOEXEC);
	if (c->mem_fd < 0)
		return -errno;
	if (fstat(c->mem_fd, &st) < 0) {
		ret = -errno;
		goto fail;
	}
	c->mem_size = (uint64_t)st.st_size;
	c->mem = mmap(NULL, c->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->mem_fd, 0);
	if (c->mem == MAP_FAILED) {
		c->mem = NULL;
		ret = -errno;
		goto fail;
	}

	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		ret = -errno;
		goto fail;
	}
	if (connect(c->sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		goto fail;
	}
	ret = read_fully(c->sock, hello, HELLO_SIZE);
	if (ret < 0)
		goto fail;
	size = get32(hello);
	if (get32(hello + 4) != IOP_MAGIC || get32(hello + 8) != IOP_ABI_VERSION || size < HELLO_SIZE
	    || size > sizeof(hello) || (size - HELLO_SIZE) % 8 != 0) {
		ret = -EPROTO;
		goto fail;
	}
	ret = read_fully(c->sock, hello + HELLO_SIZE, size - HELLO_SIZE);
	if (ret < 0)
		goto fail;
	c->pid = get32(hello + 12);
	c->uid = get32(hello + 16);
	c->gid = get32(hello + 20);
	c->stack_va = get64(hello + 24);
	c->stack_len = get64(hello + 32);
	if (c->stack_len / IOP_PAGE_SIZE != (size - HELLO_SIZE) / 8 || c->stack_len < 64 * 1024) {
		ret = -EPROTO;
		goto fail;
	}
	for (uint64_t i = 0; i < c->stack_len / IOP_PAGE_SIZE; i++) {
		c->stack_phys[i] = get64(hello + HELLO_SIZE + 8 * i);
		if (c->stack_phys[i] + IOP_PAGE_SIZE > c->mem_size) {
			ret = -EPROTO;
			goto fail;
		}
	}
	return 0;
fail:
	if (c->sock >= 0)
		close(c->sock);
	if (c->mem)
		munmap(c->mem, c->mem_size);
	if (c->mem_fd >= 0)
		close(c->mem_fd);
	c->sock = c->mem_fd = -1;
	c->mem = NULL;
	return ret;
}

void iop_exit(struct iop_conn *c)
{
	if (c->sock >= 0) {
		unsigned char sink[256];
		shutdown(c->sock, SHUT_WR);
		/* The kernel closes its end once every release of this process has run. */
		for (;;) {
			ssize_t n = read(c->sock, sink, sizeof(sink));
			if (n == 0 || (n < 0 && errno != EINTR))
				break;
		}
		close(c->sock);
		c->sock = -1;
	}
	if (c->mem) {
		munmap(c->mem, c->mem_size);
		c->mem = NULL;
	}
	if (c->mem_fd >= 0) {
		close(c->mem_fd);
		c->mem_fd = -1;
	}
}

long iop_syscall(struct iop_conn *c, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		 uint64_t a4, uint64_t a5)
{
	unsigned char req[REQUEST_SIZE], rep[REPLY_SIZE];
	const uint32_t len = REQUEST_SIZE, num = (uint32_t)nr;
	const uint64_t args[6] = {a0, a1, a2, a3, a4, a5};
	int64_t ret;
	int err;

	if (c->sock < 0)
		return -ECONNRESET;
	memcpy(req, &len, 4);
	memcpy(req + 4, &num, 4);
	memcpy(req + 8, args, sizeof(args));
	err = write_fully(c->sock, req, sizeof(req));
	if (err == 0)
		err = read_fully(c->sock, rep, sizeof(rep));
	if (err < 0)
		return err;
	if (get32(rep) != REPLY_SIZE)
		return -EPROTO;
	memcpy(&ret, rep + 8, 8);
	return (long)ret;
}

/* ---------------------------------------------------------------- user memory */

void iop_flush(struct iop_conn *c)
{
	c->tlb_vpn = ~0ull;
}

/* The frame of a stack page, known from the hello without asking. */
static int stack_phys(const struct iop_conn *c, uint64_t va, uint64_t *phys)
{
	if (va < c->stack_va || va - c->stack_va >= c->stack_len)
		return 0;
	*phys = c->stack_phys[(va - c->stack_va) / IOP_PAGE_SIZE] + (va & (IOP_PAGE_SIZE - 1));
	return 1;
}

static void *stack_ptr(const struct iop_conn *c, uint64_t offset)
{
	uint64_t phys = 0;
	stack_phys(c, c->stack_va + offset, &phys);
	return c->mem + phys;
}

/* Copies len bytes into the stack scratch at offset, page by page (the frames need not be contiguous). */
static void stack_write(struct iop_conn *c, uint64_t offset, const void *src, size_t len)
{
	const unsigned char *s = src;
	while (len > 0) {
		size_t chunk = IOP_PAGE_SIZE - (offset & (IOP_PAGE_SIZE - 1));
		if (chunk > len)
			chunk = len;
		memcpy(stack_ptr(c, offset), s, chunk);
		offset += chunk;
		s += chunk;
		len -= chunk;
	}
}

static void stack_read(struct iop_conn *c, uint64_t offset, void *dst, size_t len)
{
	unsigned char *d = dst;
	while (len > 0) {
		size_t chunk = IOP_PAGE_SIZE - (offset & (IOP_PAGE_SIZE - 1));
		if (chunk > len)
			chunk = len;
		memcpy(d, stack_ptr(c, offset), chunk);
		offset += chunk;
		d += chunk;
		len -= chunk;
	}
}

static long put_path(struct iop_conn *c, const char *path)
{
	size_t len = strlen(path) + 1;
	if (len > SCRATCH_BUF - SCRATCH_PATH)
		return -ENAMETOOLONG;
	stack_write(c, SCRATCH_PATH, path, len);
	return 0;
}

int iop_phys(struct iop_conn *c, uint64_t va, uint64_t *phys)
{
	const uint64_t vpn = va / IOP_PAGE_SIZE;
	uint64_t entry;
	long n;

	if (stack_phys(c, va, phys))
		return 0;
	if (vpn == c->tlb_vpn) {
		*phys = c->tlb_phys + (va & (IOP_PAGE_SIZE - 1));
		return 0;
	}
	if (c->pagemap_fd < 0) {
		if (put_path(c, "/proc/self/pagemap") < 0)
			return -EFAULT;
		n = iop_syscall(c, IOP_NR_OPEN, c->stack_va + SCRATCH_PATH, IOP_O_RDONLY, 0, 0, 0, 0);
		if (n < 0)
			return (int)n;
		c->pagemap_fd = (int)n;
	}
	/* One u64 per page at offset vpn * 8; the answer lands in the stack, whose frames are known. */
	n = iop_syscall(c, IOP_NR_PREAD64, (uint64_t)c->pagemap_fd, c->stack_va + SCRATCH_PAGEMAP, 8, vpn * 8, 0, 0);
	if (n < 0)
		return (int)n;
	if (n != 8)
		return -EFAULT;
	stack_read(c, SCRATCH_PAGEMAP, &entry, 8);
	if (!(entry & PM_PRESENT))
		return -EFAULT;
	c->tlb_vpn = vpn;
	c->tlb_phys = (entry & PM_PFN_MASK) * IOP_PAGE_SIZE;
	if (c->tlb_phys + IOP_PAGE_SIZE > c->mem_size)
		return -EFAULT;
	*phys = c->tlb_phys + (va & (IOP_PAGE_SIZE - 1));
	return 0;
}

static int copy_user(struct iop_conn *c, uint64_t va, void *buf, size_t len, int to_user)
{
	unsigned char *b = buf;
	while (len > 0) {
		uint64_t phys;
		size_t chunk = IOP_PAGE_SIZE - (va & (IOP_PAGE_SIZE - 1));
		int ret = iop_phys(c, va, &phys);
		if (ret < 0)
			return ret;
		if (chunk > len)
			chunk = len;
		if (to_user)
			memcpy(c->mem + phys, b, chunk);
		else
			memcpy(b, c->mem + phys, chunk);
		va += chunk;
		b += chunk;
		len -= chunk;
	}
	return 0;
}

int iop_read(struct iop_conn *c, uint64_t va, void *buf, size_t len)
{
	return copy_user(c, va, buf, len, 0);
}

int iop_write(struct iop_conn *c, uint64_t va, const void *buf, size_t len)
{
	return copy_user(c, va, (void *)buf, len, 1);
}

long iop_ioctl(struct iop_conn *c, int fd, unsigned long cmd, void *arg, size_t len)
{
	long ret;
	if (len > SCRATCH_IOCTL_LEN)
		return -E2BIG;
	stack_write(c, SCRATCH_IOCTL, arg, len);
	ret = iop_syscall(c, IOP_NR_IOCTL, (uint64_t)fd, cmd, c->stack_va + SCRATCH_IOCTL, 0, 0, 0);
	stack_read(c, SCRATCH_IOCTL, arg, len);
	return ret;
}

/* ---------------------------------------------------------------- calls */

int iop_open(struct iop_conn *c, const char *path, int flags)
{
	long ret = put_path(c, path);
	if (ret < 0)
		return (int)ret;
	return (int)iop_syscall(c, IOP_NR_OPEN, c->stack_va + SCRATCH_PATH, (uint64_t)flags, 0, 0, 0, 0);
}

int iop_close(struct iop_conn *c, int fd)
{
	if (fd == c->pagemap_fd)
		c->pagemap_fd = -1;
	return (int)iop_syscall(c, IOP_NR_CLOSE, (uint64_t)fd, 0, 0, 0, 0, 0);
}

long iop_mmap(struct iop_conn *c, uint64_t addr, uint64_t length, int prot, int flags, int fd, uint64_t offset)
{
	iop_flush(c);
	return iop_syscall(c, IOP_NR_MMAP, addr, length, (uint64_t)prot, (uint64_t)flags, (uint64_t)(int64_t)fd, offset);
}

long iop_munmap(struct iop_conn *c, uint64_t va, uint64_t length)
{
	iop_flush(c);
	return iop_syscall(c, IOP_NR_MUNMAP, va, length, 0, 0, 0, 0);
}

long iop_alloc(struct iop_conn *c, uint64_t length)
{
	return iop_mmap(c, 0, length, IOP_PROT_READ | IOP_PROT_WRITE, IOP_MAP_PRIVATE | IOP_MAP_ANONYMOUS, -1, 0);
}

long iop_read_file(struct iop_conn *c, const char *path, char *buf, size_t size)
{
	long n;
	int fd;
	if (size == 0)
		return -EINVAL;
	fd = iop_open(c, path, IOP_O_RDONLY);
	if (fd < 0)
		return fd;
	n = iop_syscall(c, IOP_NR_PREAD64, (uint64_t)fd, c->stack_va + SCRATCH_BUF,
			size - 1 < SCRATCH_BUF_LEN ? size - 1 : SCRATCH_BUF_LEN, 0, 0, 0);
	iop_close(c, fd);
	if (n < 0)
		return n;
	stack_read(c, SCRATCH_BUF, buf, (size_t)n);
	while (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	return n;
}

long iop_write_file(struct iop_conn *c, const char *path, const char *value)
{
	size_t len = strlen(value);
	long n;
	int fd;
	if (len > SCRATCH_BUF_LEN)
		return -E2BIG;
	fd = iop_open(c, path, IOP_O_WRONLY);
	if (fd < 0)
		return fd;
	stack_write(c, SCRATCH_BUF, value, len);
	n = iop_syscall(c, IOP_NR_WRITE, (uint64_t)fd, c->stack_va + SCRATCH_BUF, len, 0, 0, 0);
	iop_close(c, fd);
	return n;
}

long iop_pread(struct iop_conn *c, int fd, void *buf, size_t len, uint64_t offset)
{
	long n;
	if (len > SCRATCH_BUF_LEN)
		return -E2BIG;
	n = iop_syscall(c, IOP_NR_PREAD64, (uint64_t)fd, c->stack_va + SCRATCH_BUF, len, offset, 0, 0);
	if (n > 0)
		stack_read(c, SCRATCH_BUF, buf, (size_t)n);
	return n;
}

long iop_lseek(struct iop_conn *c, int fd, int64_t offset, int whence)
{
	return iop_syscall(c, IOP_NR_LSEEK, (uint64_t)fd, (uint64_t)offset, (uint64_t)whence, 0, 0, 0);
}

int iop_stat(struct iop_conn *c, const char *path, uint64_t *size, uint64_t *ino)
{
	unsigned char st[IOP_STAT_SIZE];
	long ret = put_path(c, path);
	if (ret < 0)
		return (int)ret;
	ret = iop_syscall(c, IOP_NR_STAT, c->stack_va + SCRATCH_PATH, c->stack_va + SCRATCH_BUF, 0, 0, 0, 0);
	if (ret < 0)
		return (int)ret;
	stack_read(c, SCRATCH_BUF, st, sizeof(st));
	if (size)
		*size = get64(st + IOP_STAT_SIZE_OFF);
	if (ino)
		*ino = get64(st + IOP_STAT_INO);
	return 0;
}
