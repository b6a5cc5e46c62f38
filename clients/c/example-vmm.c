/* SPDX-License-Identifier: MIT */
/*
 * example-vmm: the restarted VMM of a live update, in C, on libiopersist. After the kexec the new
 * kernel holds the persisted iommufd; this VMM finds it in sysfs, reopens it (the RFC flow), checks
 * its persistent id and IOAS, rebinds every VFIO device it holds (each gets its old dev_id back,
 * still attached, DMA never stopped), and reads a device's record in guest RAM through its own
 * mapping of the guestmemfs file, the memory file and pagemap.
 *
 * With --luo, the LUO flow instead (Linux's /dev/liveupdate): RETRIEVE_SESSION of the session the
 * VMM before it preserved (the demo's: a state memfd under token 0, the RAM memfd 1, the iommufd 2,
 * device i at 16 + i), RETRIEVE_FD of each, a check that every device came back bound (its dev_id,
 * from the state's "devids=", answers IOMMU_GET_HW_INFO on the iommufd, and binding the device
 * again is EINVAL), a device record read through its own mapping of the RAM memfd, SESSION_FINISH,
 * and then everything preserved again in a new session of the same name, ready for the next update.
 *
 *   example-vmm --socket DIR/kernel.sock --memory DIR/memory [--id N] [--guest-ram NAME]
 *               [--record-at OFFSET] [--hold]
 *   example-vmm --socket DIR/kernel.sock --memory DIR/memory --luo [--session NAME]
 *               [--record-at OFFSET] [--hold]
 *
 * --id        the persistent id (default: the restored ones listed in /sys/kernel/iommufd_persisted)
 * --guest-ram the guestmemfs file holding guest RAM (default vm0-ram)
 * --record-at the guest RAM offset of a device record to show (default 0x100000, vfio0's window in the demo)
 * --luo       retrieve from a LUO session, not reopen through sysfs; --session its name (default vm0)
 * --hold      keep the iommufd (and so the devices' attachment) until stdin ends, then exit
 *
 * Prints one line per step, "example-vmm: ..."; the last is "rebound N devices" (--luo: "retrieved N
 * devices"); exits 0 once every device is back, 1 on any error.
 */
#include "iopersist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PERSISTED_DIR "/sys/kernel/iommufd_persisted"
#define MAX_IDS 64
#define MAX_DEVICES 256

/* The device record's header (docs/machine.md, "Records"). */
struct dma_record {
	uint32_t magic; /* "IOPR" */
	uint32_t sid;
	uint32_t size;
	uint32_t reserved;
	uint64_t seq;
	uint64_t iova;
	uint64_t generation;
	uint64_t checksum;
};
#define DMA_RECORD_MAGIC 0x52504f49u

static int fail(const char *what, long err)
{
	fprintf(stderr, "example-vmm: %s: %s\n", what, strerror((int)-err));
	return 1;
}

static uint64_t number(const char *s)
{
	return strtoull(s, NULL, 0);
}

/* IOAS ids in the reopened context: objects keep their ids, so ask IOAS_IOVA_RANGES of the first few. */
static void show_ioas(struct iop_conn *c, int iommufd, unsigned objects)
{
	for (uint32_t id = 1; id <= objects + 4; id++) {
		struct iommu_ioas_iova_ranges q = {.size = sizeof(q), .ioas_id = id};
		long ret = iop_ioctl(c, iommufd, IOMMU_IOAS_IOVA_RANGES, &q, sizeof(q));
		if (ret == -ENOENT)
			continue; /* not an IOAS, or no object */
		if (ret < 0 && ret != -EMSGSIZE) {
			fail("IOMMU_IOAS_IOVA_RANGES", ret);
			continue;
		}
		/* EMSGSIZE told us how many; fetch them into the process's own memory. */
		long va = iop_alloc(c, 4096);
		if (va < 0) {
			fail("mmap", va);
			return;
		}
		uint32_t n = q.num_iovas < 4096 / sizeof(struct iommu_iova_range) ? q.num_iovas
			: 4096 / sizeof(struct iommu_iova_range);
		q.num_iovas = n;
		q.allowed_iovas = (uint64_t)va;
		ret = iop_ioctl(c, iommufd, IOMMU_IOAS_IOVA_RANGES, &q, sizeof(q));
		if (ret < 0) {
			fail("IOMMU_IOAS_IOVA_RANGES", ret);
		} else {
			printf("example-vmm: ioas %u: allowed", id);
			for (uint32_t i = 0; i < q.num_iovas && i < n; i++) {
				struct iommu_iova_range r;
				iop_read(c, (uint64_t)va + i * sizeof(r), &r, sizeof(r));
				printf(" [0x%" PRIx64 ", 0x%" PRIx64 "]", (uint64_t)r.start, (uint64_t)r.last);
			}
			printf(", alignment 0x%" PRIx64 "\n", (uint64_t)q.out_iova_alignment);
		}
		iop_munmap(c, (uint64_t)va, 4096);
	}
}

/* Maps guest RAM as the VMM's own memory and shows the record a device wrote at offset. */
static int show_record(struct iop_conn *c, const char *name, uint64_t offset)
{
	char path[256];
	uint64_t size, phys;
	struct dma_record rec;
	long va;
	int fd, ret;

	snprintf(path, sizeof(path), "/guestmemfs/%s", name);
	ret = iop_stat(c, path, &size, NULL);
	if (ret < 0)
		return fail(path, ret);
	fd = iop_open(c, path, IOP_O_RDWR);
	if (fd < 0)
		return fail(path, fd);
	va = iop_mmap(c, 0, size, IOP_PROT_READ | IOP_PROT_WRITE, IOP_MAP_SHARED, fd, 0);
	iop_close(c, fd); /* the mapping keeps the file */
	if (va < 0)
		return fail("mmap guest RAM", va);
	if (offset + sizeof(rec) > size)
		return fail("--record-at beyond guest RAM", -EINVAL);
	ret = iop_phys(c, (uint64_t)va + offset, &phys);
	if (ret == 0)
		ret = iop_read(c, (uint64_t)va + offset, &rec, sizeof(rec));
	if (ret < 0)
		return fail("pagemap", ret);
	printf("example-vmm: guest RAM %s (%" PRIu64 " MiB) mapped at va 0x%" PRIx64 "; offset 0x%" PRIx64
	       " is phys 0x%" PRIx64 ": ", path, size >> 20, (uint64_t)va, offset, phys);
	if (rec.magic == DMA_RECORD_MAGIC)
		printf("record seq %" PRIu64 " from sid 0x%04x, iova 0x%" PRIx64 ", generation %" PRIu64 "\n", rec.seq,
		       rec.sid & 0xffff, rec.iova, rec.generation);
	else
		printf("no device record (magic 0x%08x)\n", rec.magic);
	return 0;
}

/* The LUO tokens the demo's VMM preserves under (Demo.java, LuoVmm). */
#define TOKEN_STATE 0
#define TOKEN_RAM 1
#define TOKEN_IOMMUFD 2
#define TOKEN_DEVICE 16

static long retrieve_fd(struct iop_conn *c, int session, uint64_t token)
{
	struct liveupdate_session_retrieve_fd r = {.size = sizeof(r), .token = token};
	long ret = iop_ioctl(c, session, LIVEUPDATE_SESSION_RETRIEVE_FD, &r, sizeof(r));
	return ret < 0 ? ret : r.fd;
}

/* Opens /dev/liveupdate just long enough (one open at a time) for one session command. */
static long session_cmd(struct iop_conn *c, unsigned long cmd, const char *name)
{
	struct liveupdate_ioctl_retrieve_session s = {.size = sizeof(s)};
	int lu = iop_open(c, "/dev/liveupdate", IOP_O_RDWR);
	long ret;
	if (lu < 0)
		return lu;
	strncpy((char *)s.name, name, sizeof(s.name) - 1);
	ret = iop_ioctl(c, lu, cmd, &s, sizeof(s));
	iop_close(c, lu);
	return ret < 0 ? ret : s.fd;
}

/* Maps the RAM memfd and shows the device record at offset, through pagemap and the memory file. */
static int show_memfd_record(struct iop_conn *c, int fd, uint64_t offset)
{
	struct dma_record rec;
	uint64_t phys;
	long size = iop_lseek(c, fd, 0, 2 /* SEEK_END */), va;
	int ret;
	if (size < 0)
		return fail("lseek RAM memfd", size);
	iop_lseek(c, fd, 0, 0);
	if (offset + sizeof(rec) > (uint64_t)size)
		return fail("--record-at beyond guest RAM", -EINVAL);
	va = iop_mmap(c, 0, (uint64_t)size, IOP_PROT_READ | IOP_PROT_WRITE, IOP_MAP_SHARED, fd, 0);
	if (va < 0)
		return fail("mmap RAM memfd", va);
	ret = iop_phys(c, (uint64_t)va + offset, &phys);
	if (ret == 0)
		ret = iop_read(c, (uint64_t)va + offset, &rec, sizeof(rec));
	if (ret < 0)
		return fail("pagemap", ret);
	printf("example-vmm: guest RAM memfd (%ld MiB) mapped at va 0x%lx; offset 0x%" PRIx64 " is phys 0x%" PRIx64 ": ",
	       size >> 20, va, offset, phys);
	if (rec.magic == DMA_RECORD_MAGIC)
		printf("record seq %" PRIu64 " from sid 0x%04x, iova 0x%" PRIx64 ", generation %" PRIu64 "\n", rec.seq,
		       rec.sid & 0xffff, rec.iova, rec.generation);
	else
		printf("no device record (magic 0x%08x)\n", rec.magic);
	return rec.magic == DMA_RECORD_MAGIC ? 0 : 1;
}

/* The LUO flow: retrieve, check, finish, preserve again. Returns the devices retrieved, or -1. */
static int luo_retrieve(struct iop_conn *c, const char *name, uint64_t record_at)
{
	char state[256] = "";
	unsigned ioas = 0, hwpt = 0, devids[MAX_DEVICES];
	int ndevids = 0, ndev = 0, fds[TOKEN_DEVICE + MAX_DEVICES];
	long ret, session;

	session = session_cmd(c, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
	if (session < 0)
		return fail("LIVEUPDATE_IOCTL_RETRIEVE_SESSION", session), -1;
	printf("example-vmm: retrieved session %s as fd %ld\n", name, session);

	/* The state memfd: the ids this VMM needs, as the VMM before wrote them. */
	fds[TOKEN_STATE] = (int)(ret = retrieve_fd(c, (int)session, TOKEN_STATE));
	if (ret < 0)
		return fail("RETRIEVE_FD state (token 0)", ret), -1;
	ret = iop_pread(c, fds[TOKEN_STATE], state, sizeof(state) - 1, 0);
	if (ret < 0)
		return fail("pread state memfd", ret), -1;
	state[ret] = '\0';
	const char *ids = strstr(state, "devids=");
	if (sscanf(state, "ioas=%u hwpt=%u", &ioas, &hwpt) != 2 || !ids)
		return fprintf(stderr, "example-vmm: state memfd says '%s', not 'ioas=N hwpt=N devids=...'\n", state), -1;
	for (char *p = (char *)ids + 7, *end; ndevids < MAX_DEVICES; p = end + 1) {
		unsigned long v = strtoul(p, &end, 10);
		if (end == p)
			break;
		devids[ndevids++] = (unsigned)v;
		if (*end != ',')
			break;
	}
	printf("example-vmm: state memfd (token 0) as fd %d: \"%s\"\n", fds[TOKEN_STATE], state);

	fds[TOKEN_RAM] = (int)(ret = retrieve_fd(c, (int)session, TOKEN_RAM));
	if (ret < 0)
		return fail("RETRIEVE_FD RAM (token 1)", ret), -1;
	fds[TOKEN_IOMMUFD] = (int)(ret = retrieve_fd(c, (int)session, TOKEN_IOMMUFD));
	if (ret < 0)
		return fail("RETRIEVE_FD iommufd (token 2)", ret), -1;
	printf("example-vmm: RAM memfd (token 1) as fd %d, iommufd (token 2) as fd %d\n", fds[TOKEN_RAM], fds[TOKEN_IOMMUFD]);
	show_ioas(c, fds[TOKEN_IOMMUFD], ioas);

	/* Every device token until the first absent one: each comes back bound and attached. */
	for (int i = 0; i < MAX_DEVICES; i++) {
		ret = retrieve_fd(c, (int)session, TOKEN_DEVICE + (uint64_t)i);
		if (ret == -ENOENT)
			break;
		if (ret < 0)
			return fail("RETRIEVE_FD device", ret), -1;
		fds[TOKEN_DEVICE + i] = (int)ret;
		if (i >= ndevids)
			return fprintf(stderr, "example-vmm: device token %d but the state names %d dev_ids\n", TOKEN_DEVICE + i,
				       ndevids), -1;
		/* The dev_id is a device of this iommufd: GET_HW_INFO answers for it (ENOENT otherwise). */
		struct iommu_hw_info info = {.size = sizeof(info), .dev_id = devids[i]};
		ret = iop_ioctl(c, fds[TOKEN_IOMMUFD], IOMMU_GET_HW_INFO, &info, sizeof(info));
		if (ret < 0)
			return fail("IOMMU_GET_HW_INFO", ret), -1;
		/* And this device file is the one bound: binding it again is EINVAL. */
		struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .iommufd = fds[TOKEN_IOMMUFD]};
		ret = iop_ioctl(c, fds[TOKEN_DEVICE + i], VFIO_DEVICE_BIND_IOMMUFD, &bind, sizeof(bind));
		if (ret != -EINVAL)
			return fprintf(stderr, "example-vmm: vfio%d: bind again answered %ld, not -EINVAL: not bound\n", i, ret), -1;
		printf("example-vmm: vfio%d (token %d) retrieved as fd %d: bound, dev_id %u (IOMMU_GET_HW_INFO type %u, "
		       "bind again EINVAL), on hwpt %u per the state\n", i, TOKEN_DEVICE + i, fds[TOKEN_DEVICE + i],
		       devids[i], info.out_data_type, hwpt);
		ndev++;
	}
	if (ndev != ndevids)
		return fprintf(stderr, "example-vmm: %d devices in the session, %d dev_ids in the state\n", ndev, ndevids), -1;
	if (show_memfd_record(c, fds[TOKEN_RAM], record_at) != 0)
		return -1;

	struct liveupdate_session_finish fin = {.size = sizeof(fin)};
	ret = iop_ioctl(c, (int)session, LIVEUPDATE_SESSION_FINISH, &fin, sizeof(fin));
	if (ret < 0)
		return fail("LIVEUPDATE_SESSION_FINISH", ret), -1;
	iop_close(c, (int)session);
	printf("example-vmm: session %s finished\n", name);

	/* Ready for the next update: the same files under the same tokens in a new session, kept open. */
	session = session_cmd(c, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
	if (session < 0)
		return fail("LIVEUPDATE_IOCTL_CREATE_SESSION", session), -1;
	for (int t = 0; t < TOKEN_DEVICE + ndev; t++) {
		if (t > TOKEN_IOMMUFD && t < TOKEN_DEVICE)
			continue;
		struct liveupdate_session_preserve_fd p = {.size = sizeof(p), .fd = fds[t], .token = (uint64_t)t};
		ret = iop_ioctl(c, (int)session, LIVEUPDATE_SESSION_PRESERVE_FD, &p, sizeof(p));
		if (ret < 0)
			return fail("LIVEUPDATE_SESSION_PRESERVE_FD", ret), -1;
	}
	printf("example-vmm: state, RAM, iommufd and %d devices preserved again in a new session %s (fd %ld)\n", ndev, name,
	       session);
	return ndev;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *memory = NULL, *ram = "vm0-ram", *session = "vm0";
	uint64_t record_at = 0x100000, ids[MAX_IDS];
	int hold = 0, nids = 0, rebound = 0, luo = 0;
	struct iop_conn c;
	char buf[512], path[256];
	long ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "--memory") && i + 1 < argc)
			memory = argv[++i];
		else if (!strcmp(argv[i], "--id") && i + 1 < argc && nids < MAX_IDS)
			ids[nids++] = number(argv[++i]);
		else if (!strcmp(argv[i], "--guest-ram") && i + 1 < argc)
			ram = argv[++i];
		else if (!strcmp(argv[i], "--record-at") && i + 1 < argc)
			record_at = number(argv[++i]);
		else if (!strcmp(argv[i], "--hold"))
			hold = 1;
		else if (!strcmp(argv[i], "--luo"))
			luo = 1;
		else if (!strcmp(argv[i], "--session") && i + 1 < argc)
			session = argv[++i];
		else {
			fprintf(stderr, "usage: %s --socket PATH --memory PATH [--id N] [--guest-ram NAME] "
				"[--record-at OFFSET] [--hold]\n       %s --socket PATH --memory PATH --luo [--session NAME] "
				"[--record-at OFFSET] [--hold]\n", argv[0], argv[0]);
			return 2;
		}
	}
	if (!sock || !memory) {
		fprintf(stderr, "example-vmm: --socket and --memory are required\n");
		return 2;
	}
	ret = iop_connect(&c, sock, memory);
	if (ret < 0)
		return fail(sock, ret);
	printf("example-vmm: connected to %s as pid %u (uid %u)\n", sock, c.pid, c.uid);

	if (luo) {
		int n = luo_retrieve(&c, session, record_at);
		if (n > 0)
			printf("example-vmm: retrieved %d devices\n", n);
		fflush(stdout);
		if (n > 0 && hold) {
			char sink[64];
			while (read(0, sink, sizeof(sink)) > 0)
				;
		}
		iop_exit(&c);
		return n > 0 ? 0 : 1;
	}

	/* Without --id: every context the new kernel restored and nobody reopened yet, as ls lists them. */
	if (nids == 0) {
		int dir = iop_open(&c, PERSISTED_DIR, IOP_O_RDONLY | IOP_O_DIRECTORY);
		long dents_va = dir < 0 ? -1 : iop_alloc(&c, 4096);
		long n;
		while (dents_va >= 0 && (n = iop_syscall(&c, IOP_NR_GETDENTS64, dir, dents_va, 4096, 0, 0, 0)) > 0) {
			char dents[4096];
			if (iop_read(&c, dents_va, dents, n) < 0)
				break;
			for (long off = 0; off < n && nids < MAX_IDS;) {
				uint16_t reclen; /* struct linux_dirent64: d_reclen at 16, d_name at 19 */
				memcpy(&reclen, dents + off + 16, sizeof(reclen));
				snprintf(path, sizeof(path), PERSISTED_DIR "/%s/state", dents + off + 19);
				if (iop_read_file(&c, path, buf, sizeof(buf)) >= 0 && !strcmp(buf, "restored"))
					ids[nids++] = strtoull(dents + off + 19, NULL, 10);
				off += reclen;
			}
		}
		if (dir >= 0)
			iop_close(&c, dir);
		if (nids == 0) {
			fprintf(stderr, "example-vmm: no restored iommufd under " PERSISTED_DIR " (no live update?)\n");
			iop_exit(&c);
			return 1;
		}
	}

	for (int k = 0; k < nids; k++) {
		char owner[32] = "?", objects[32] = "0", ioas[32] = "?", hwpt[32] = "?", devices[32] = "?";
		snprintf(path, sizeof(path), PERSISTED_DIR "/%" PRIu64 "/owner", ids[k]);
		iop_read_file(&c, path, owner, sizeof(owner));
		snprintf(path, sizeof(path), PERSISTED_DIR "/%" PRIu64 "/objects", ids[k]);
		iop_read_file(&c, path, objects, sizeof(objects));
		snprintf(path, sizeof(path), PERSISTED_DIR "/%" PRIu64 "/ioas", ids[k]);
		iop_read_file(&c, path, ioas, sizeof(ioas));
		snprintf(path, sizeof(path), PERSISTED_DIR "/%" PRIu64 "/hwpt", ids[k]);
		iop_read_file(&c, path, hwpt, sizeof(hwpt));
		snprintf(path, sizeof(path), PERSISTED_DIR "/%" PRIu64 "/devices", ids[k]);
		iop_read_file(&c, path, devices, sizeof(devices));
		printf("example-vmm: persisted iommufd %" PRIu64 ": owner uid %s, %s objects (%s ioas, %s hwpt, %s devices)\n",
		       ids[k], owner, objects, ioas, hwpt, devices);

		/* The RFC flow: opening the node hands the restored context to this process. */
		snprintf(path, sizeof(path), PERSISTED_DIR "/%" PRIu64 "/iommufd", ids[k]);
		int iommufd = iop_open(&c, path, IOP_O_RDWR);
		if (iommufd < 0)
			return fail(path, iommufd);
		struct iommu_option opt = {.size = sizeof(opt), .option_id = IOP_OPTION_PERSISTENT, .op = IOMMU_OPTION_OP_GET};
		ret = iop_ioctl(&c, iommufd, IOMMU_OPTION, &opt, sizeof(opt));
		if (ret < 0)
			return fail("IOMMU_OPTION(PERSISTENT, GET)", ret);
		printf("example-vmm: reopened %s as fd %d: persistent id %" PRIu64 "\n", path, iommufd, (uint64_t)opt.val64);
		if (opt.val64 != ids[k]) {
			fprintf(stderr, "example-vmm: the context says persistent id %" PRIu64 ", sysfs %" PRIu64 "\n",
				(uint64_t)opt.val64, ids[k]);
			return 1;
		}
		show_ioas(&c, iommufd, (unsigned)number(objects));

		/* Rebind: a device the context holds comes back with its old id, still attached. */
		for (int n = 0; n < MAX_DEVICES; n++) {
			snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", n);
			int dev = iop_open(&c, path, IOP_O_RDWR);
			if (dev == -ENOENT)
				break;
			if (dev < 0)
				return fail(path, dev);
			struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .iommufd = iommufd};
			ret = iop_ioctl(&c, dev, VFIO_DEVICE_BIND_IOMMUFD, &bind, sizeof(bind));
			if (ret == -EBUSY) {
				iop_close(&c, dev); /* another context owns it */
				continue;
			}
			if (ret < 0)
				return fail("VFIO_DEVICE_BIND_IOMMUFD", ret);
			printf("example-vmm: vfio%d rebound to iommufd %" PRIu64 ": dev_id %u\n", n, ids[k], bind.out_devid);
			rebound++;
		}
	}
	show_record(&c, ram, record_at);
	printf("example-vmm: rebound %d devices\n", rebound);
	fflush(stdout);
	if (hold) {
		/* The devices stay attached while this process lives: wait for stdin to end. */
		char sink[64];
		while (read(0, sink, sizeof(sink)) > 0)
			;
	}
	iop_exit(&c);
	return rebound > 0 ? 0 : 1;
}
