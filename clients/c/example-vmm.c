/* SPDX-License-Identifier: MIT */
/*
 * example-vmm: the restarted VMM of a live update, in C, on libiopersist. After the kexec the new
 * kernel holds the persisted iommufd; this VMM finds it in sysfs, reopens it (the RFC flow), checks
 * its persistent id and IOAS, rebinds every VFIO device it holds (each gets its old dev_id back,
 * still attached, DMA never stopped), and reads a device's record in guest RAM through its own
 * mapping of the guestmemfs file, the memory file and pagemap.
 *
 *   example-vmm --socket DIR/kernel.sock --memory DIR/memory [--id N] [--guest-ram NAME]
 *               [--record-at OFFSET] [--hold]
 *
 * --id        the persistent id (default: the restored ones found under /sys/kernel/iommufd_persisted)
 * --guest-ram the guestmemfs file holding guest RAM (default vm0-ram)
 * --record-at the guest RAM offset of a device record to show (default 0x100000, vfio0's window in the demo)
 * --hold      keep the iommufd (and so the devices' attachment) until stdin ends, then exit
 *
 * Prints one line per step, "example-vmm: ..."; exits 0 once every device is rebound, 1 on any error.
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

int main(int argc, char **argv)
{
	const char *sock = NULL, *memory = NULL, *ram = "vm0-ram";
	uint64_t record_at = 0x100000, ids[MAX_IDS];
	int hold = 0, nids = 0, rebound = 0;
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
		else {
			fprintf(stderr, "usage: %s --socket PATH --memory PATH [--id N] [--guest-ram NAME] "
				"[--record-at OFFSET] [--hold]\n", argv[0]);
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

	/* Without --id: every context the new kernel restored and nobody reopened yet. */
	if (nids == 0) {
		for (uint64_t id = 1; id <= MAX_IDS; id++) {
			snprintf(path, sizeof(path), PERSISTED_DIR "/%" PRIu64 "/state", id);
			if (iop_read_file(&c, path, buf, sizeof(buf)) >= 0 && !strcmp(buf, "restored"))
				ids[nids++] = id;
		}
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
