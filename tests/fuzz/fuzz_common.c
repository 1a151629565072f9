/*
 * fuzz_common.c - helpers the harnesses share (fuzz_common.h).
 */
#include "fuzz_common.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec.h"
#include "record.h"
#include "rw/abi.h"
#include "vm.h"

bool fuzz_fix_record(const uint8_t *in, size_t n, uint8_t **out)
{
	uint8_t *p;
	uint64_t seed;

	*out = NULL;
	if (n < REC_HEADER_SIZE || n - REC_HEADER_SIZE > REC_PAYLOAD_MAX)
		return false;
	p = fuzz_dup(in, n);
	/* as record.c: the payload's XXH3-64, seeded with that of bytes [0, 16) */
	put_le32(p + 12, (uint32_t)(n - REC_HEADER_SIZE));
	seed = XXH3_64bits(p, 16);
	put_le64(p + 16, XXH3_64bits_withSeed(p + REC_HEADER_SIZE, n - REC_HEADER_SIZE, seed));
	if (memcmp(p, in, n) == 0) {
		free(p);
		return false;
	}
	*out = p;
	return true;
}

void fuzz_run_fixed(void (*one)(const uint8_t *data, size_t size), const uint8_t *data,
		    size_t size)
{
	uint8_t *fixed;

	one(data, size);
	if (fuzz_fix_record(data, size, &fixed)) {
		one(fixed, size);
		free(fixed);
	}
}

uint8_t *fuzz_dup(const void *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (!q) {
		fprintf(stderr, "fuzz: out of memory\n");
		abort();
	}
	if (n)
		memcpy(q, p, n);
	return q;
}

bool fuzz_is_zero(const void *p, size_t n)
{
	static const uint8_t zero[4096];
	const uint8_t *b = p;

	/* memcmp, not a loop: the loop would be instrumented byte by byte */
	for (size_t off = 0; off < n; off += sizeof(zero)) {
		size_t k = n - off < sizeof(zero) ? n - off : sizeof(zero);

		if (memcmp(b + off, zero, k))
			return false;
	}
	return true;
}

bool fuzz_why_names(const char *why, const char *key)
{
	size_t k = strlen(key);

	return strncmp(why, key, k) == 0 && why[k] == ':' && why[k + 1] == ' ' && why[k + 2];
}

static char tmp_own[4096];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void tmp_cleanup(void)
{
	if (tmp_own[0])
		nftw(tmp_own, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(const char *tag)
{
	static char dir[4096];
	const char *base = getenv("REWIND_FUZZ_TMP");

	if (dir[0])
		return dir;
	if (base && *base) {
		snprintf(dir, sizeof(dir), "%s/%s", base, tag);
		if (mkdir(dir, 0700) == 0 || access(dir, W_OK) == 0)
			return dir;
		fprintf(stderr, "fuzz: cannot use %s\n", dir);
		exit(1);
	}
	base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(dir, sizeof(dir), "%s/rewind-fuzz-%s-XXXXXX", base, tag);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "fuzz: cannot make a scratch directory in %s\n", base);
		exit(1);
	}
	snprintf(tmp_own, sizeof(tmp_own), "%s", dir);
	atexit(tmp_cleanup);
	return dir;
}

/* MSRs KVM commonly lets a VMM save and restore, in the order vcpu_state_probe() keeps. */
static const uint32_t fuzz_msrs[] = {
	0x10,                                           /* TSC */
	0x174, 0x175, 0x176,                            /* SYSENTER_CS/ESP/EIP */
	0x1a0, 0x277, 0x3b,                             /* MISC_ENABLE, PAT, TSC_ADJUST */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR LSTAR CSTAR SFMASK */
	0xc0000102, 0xc0000103,                         /* KERNEL_GS_BASE, TSC_AUX */
	0x4b564d00, 0x4b564d01,                         /* kvmclock */
	0x6e0,                                          /* TSC_DEADLINE */
};

void fuzz_vm_init(struct vm *vm, unsigned ncpus, uint64_t mem, bool map)
{
	uint64_t low = mem < RW_GPA_PCI_HOLE ? mem : RW_GPA_PCI_HOLE;

	memset(vm, 0, sizeof(*vm));
	vm->fd = -1;
	vm->kvm.fd = -1;
	vm->ncpus = ncpus;
	vm->mem.memfd = -1;
	vm->mem.size = mem;
	vm->mem.slots[0] = (struct mem_slot){ .id = 0, .gpa = 0, .size = low, .offset = 0 };
	vm->mem.nr_slots = 1;
	if (mem > low) {
		vm->mem.slots[1] = (struct mem_slot){
			.id = 1, .gpa = RW_GPA_HIGH_RAM, .size = mem - low, .offset = low,
		};
		vm->mem.nr_slots = 2;
	}
	if (map) {
		void *p = mmap(NULL, mem, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p == MAP_FAILED) {
			perror("fuzz: guest RAM");
			exit(1);
		}
		vm->mem.hva = p;
	}
	vm->xsave_size = FUZZ_XSAVE_SIZE;
	vm->sregs2 = true;
	vm->nr_msrs = sizeof(fuzz_msrs) / sizeof(fuzz_msrs[0]);
	memcpy(vm->msr_index, fuzz_msrs, sizeof(fuzz_msrs));
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->epfd = vm->stop_efd = -1;
}
