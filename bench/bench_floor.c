/*
 * rewind-bench floor: the physical floors later benches compare against.
 *
 *  kvm_run_cpl3_us  one KVM_RUN round trip on the cheapest exit from CPL3
 *                   (an 8-byte load from the hypercall page: an MMIO exit)
 *  kvm_run_cpl0_us  the same for CPL0 (`out` to a port: a PIO exit)
 *  page_copy_ns     memcpy of one 4 KiB page (distinct pages, cache-cold set)
 *  xxh3_128_ns      XXH3-128 of one 4 KiB page
 *  lmdb_put_ns      a raw LMDB put of a 4 KiB value, durable commit amortised
 *
 * The exit loops drive the vCPU directly (no vCPU thread, no bus dispatch):
 * they measure what KVM itself costs, which is what rewind's own exits are
 * compared against.
 */
#include <errno.h>
#include <getopt.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "bench.h"
#include "log.h"
#include "rw/abi.h"
#include "vcpu.h"
#include "vm.h"

/* out %al, $0x80 ; jmp .-2 */
static const uint8_t loop_cpl0[] = { 0xe6, 0x80, 0xeb, 0xfc };
/* mov (%rbx), %rax ; jmp .-3 */
static const uint8_t loop_cpl3[] = { 0x48, 0x8b, 0x03, 0xeb, 0xfb };

struct bench_exit_loop {
	struct vm *vm;
	uint32_t want;
	int cpl;
};

/*
 * Boot an SDK image in the given entry mode and replace the program with a
 * two-instruction exit loop, warmed up (the first entries fault in shadow
 * page tables).
 */
struct bench_exit_loop *bench_exit_loop_open(const char *image, enum vm_entry entry)
{
	struct bench_exit_loop *l = calloc(1, sizeof(*l));
	struct vm_config cfg;
	struct kvm_regs regs;
	const uint8_t *code = entry == VM_ENTRY_USER ? loop_cpl3 : loop_cpl0;
	size_t code_len = entry == VM_ENTRY_USER ? sizeof(loop_cpl3) : sizeof(loop_cpl0);
	struct vcpu *v;
	uint64_t at;

	if (!l)
		return NULL;
	l->want = entry == VM_ENTRY_USER ? KVM_EXIT_MMIO : KVM_EXIT_IO;
	l->cpl = entry == VM_ENTRY_USER ? 3 : 0;
	config_init(&cfg);
	cfg.entry = entry;
	cfg.mem_size = 32 * MiB;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", image);
	if (vm_create(&cfg, &l->vm) || vm_boot(l->vm))
		goto fail;
	v = l->vm->vcpus[0];
	at = l->vm->image.free_start;
	if (mem_write(&l->vm->mem, at, code, code_len) || vcpu_get_regs(v, &regs))
		goto fail;
	regs.rip = at;
	regs.rbx = RW_GPA_HYPERCALL;
	if (vcpu_set_regs(v, &regs) || bench_exit_loop_time(l, 1000) < 0)
		goto fail;
	return l;
fail:
	bench_exit_loop_close(l);
	return NULL;
}

double bench_exit_loop_time(struct bench_exit_loop *l, unsigned n)
{
	struct vcpu *v = l->vm->vcpus[0];
	uint64_t t0 = rw_now_ns();

	for (unsigned i = 0; i < n; i++) {
		if (ioctl(v->fd, KVM_RUN, 0) || v->run->exit_reason != l->want) {
			rw_error("floor loop at CPL%d: unexpected exit %s", l->cpl,
				 vcpu_exit_name(v->run->exit_reason));
			return -1;
		}
	}
	return (double)(rw_now_ns() - t0) / 1000.0 / n;
}

void bench_exit_loop_close(struct bench_exit_loop *l)
{
	if (!l)
		return;
	vm_destroy(l->vm);
	free(l);
}

double bench_exit_roundtrip_us(const char *image, enum vm_entry entry, unsigned n)
{
	struct bench_exit_loop *l = bench_exit_loop_open(image, entry);
	double us;

	if (!l)
		return -1;
	us = bench_exit_loop_time(l, n);
	bench_exit_loop_close(l);
	return us;
}

int bench_floor_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iters", required_argument, NULL, 'n' },
		{ "image", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char image[4096];
	char dir[] = "/tmp/rewind-bench-floor-XXXXXX";
	unsigned iters = 20000;
	uint64_t v;
	int c;

	snprintf(image, sizeof(image), "%s/hello.elf", REWIND_GUEST_DIR);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (rw_parse_uint(optarg, 100, 100000000, &v)) {
				fprintf(stderr, "rewind-bench: error: --iters must be 100..100000000\n");
				return 2;
			}
			iters = (unsigned)v;
			break;
		case 'i':
			snprintf(image, sizeof(image), "%s", optarg);
			break;
		case 'h':
			printf("usage: rewind-bench floor [--iters N] [--image SDK-ELF]\n");
			return 0;
		default:
			fprintf(stderr, "rewind-bench: error: unknown option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	double cpl3 = bench_exit_roundtrip_us(image, VM_ENTRY_USER, iters);
	double cpl0 = bench_exit_roundtrip_us(image, VM_ENTRY_KERNEL, iters);
	if (cpl3 < 0 || cpl0 < 0) {
		fprintf(stderr, "rewind-bench: error: the KVM exit loops failed\n");
		return 1;
	}
	double copy = bench_memcpy_ns_per_page(16384, 5);
	double hash = bench_xxh3_ns_per_page(16384, 5);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "rewind-bench: error: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	double put = bench_lmdb_put_ns(dir, 16384);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "rewind-bench: warning: could not remove %s\n", dir);

	json_t *o = json_object();
	json_object_set_new(o, "bench", json_string("floor"));
	json_object_set_new(o, "kvm_run_cpl3_us", json_real(bench_round(cpl3)));
	json_object_set_new(o, "kvm_run_cpl0_us", json_real(bench_round(cpl0)));
	json_object_set_new(o, "page_copy_ns", json_real(bench_round(copy)));
	json_object_set_new(o, "xxh3_128_ns", json_real(bench_round(hash)));
	json_object_set_new(o, "lmdb_put_ns", json_real(bench_round(put)));
	json_object_set_new(o, "iters", json_integer(iters));
	bench_emit(o);
	return 0;
}
