/*
 * The VM core through its C API: pause/resume barrier, SMP, many VMs, two
 * VMs at once, and fatal guest exits reported with vCPU, RIP and reason.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "board.h"
#include "rw/abi.h"
#include "testutil.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

/* Build and boot a VM whose console goes to console_path. */
static struct vm *make_vm(const char *guest, unsigned cpus, const char *args, const char *console_path,
			  enum vm_entry entry)
{
	struct vm_config cfg;
	struct vm *vm = NULL;

	config_init(&cfg);
	cfg.ncpus = cpus;
	cfg.mem_size = 64 * MiB;
	cfg.serial_in = false;
	cfg.entry = entry;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest(guest));
	if (args)
		snprintf(cfg.args, sizeof(cfg.args), "%s", args);
	if (console_path)
		snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s", console_path);
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	cr_assert_eq(board_build(vm), 0);
	cr_assert_eq(vm_boot(vm), 0);
	return vm;
}

static unsigned long long counter_checksum(const char *out)
{
	const char *p = strstr(out, "checksum=0x");
	cr_assert_not_null(p, "no checksum in: %s", out);
	return strtoull(p + 11, NULL, 16);
}

static unsigned count_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	while ((e = readdir(d)))
		n++;
	closedir(d);
	return n;
}

Test(vm, counter_same_checksum_with_100_pauses, .timeout = 300)
{
	rw_test_require_kvm();
	const char *dir = rw_test_tmpdir("pause");
	char p1[4200], p2[4200];
	struct vm_stop_info st;
	snprintf(p1, sizeof(p1), "%s/straight.txt", dir);
	snprintf(p2, sizeof(p2), "%s/paused.txt", dir);

	struct vm *vm = make_vm("counter", 1, NULL, p1, VM_ENTRY_KERNEL);
	uint64_t t0 = rw_now_ns();
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &st);
	uint64_t straight_ns = rw_now_ns() - t0;
	vm_destroy(vm);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	cr_assert_eq(st.exit_code, 0);
	unsigned long long x = counter_checksum(rw_test_slurp(p1, NULL));

	/* 100 pauses 2 ms apart: ~0.3 s of a ~1.6 s run, whatever the load */
	vm = make_vm("counter", 1, NULL, p2, VM_ENTRY_KERNEL);
	cr_assert_eq(vm_start(vm), 0);
	unsigned done = 0;
	for (; done < 100; done++) {
		usleep(2000);
		int ret = vm_pause(vm);
		if (ret == RW_ESTOPPED) { /* the guest finished first */
			vm_resume(vm);
			break;
		}
		cr_assert_eq(ret, 0);
		/* while paused, no vCPU may be in KVM_RUN: all are accounted for */
		cr_assert_eq(vm->parked, vm->ncpus);
		vm_resume(vm);
	}
	vm_wait(vm, &st);
	vm_destroy(vm);
	cr_assert_eq(done, 100, "the guest finished after only %u pauses (straight run %llu ms)", done,
		     (unsigned long long)(straight_ns / 1000000));
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	cr_assert_eq(counter_checksum(rw_test_slurp(p2, NULL)), x);
}

Test(vm, smp_reports_every_apic_id, .timeout = 120)
{
	rw_test_require_kvm();
	const char *dir = rw_test_tmpdir("smp");
	char path[4200], want[64];
	struct vm_stop_info st;
	snprintf(path, sizeof(path), "%s/smp.txt", dir);

	struct vm *vm = make_vm("smp", 4, NULL, path, VM_ENTRY_KERNEL);
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &st);
	vm_destroy(vm);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	cr_assert_eq(st.exit_code, 0);
	char *out = rw_test_slurp(path, NULL);
	for (unsigned i = 0; i < 4; i++) {
		snprintf(want, sizeof(want), "cpu %u apic %u\n", i, i);
		cr_assert(strstr(out, want) != NULL, "missing '%s' in:\n%s", want, out);
	}
}

Test(vm, create_destroy_200_leaks_nothing, .timeout = 300)
{
	rw_test_require_kvm();
	struct vm_config cfg;
	struct vm *vm;

	config_init(&cfg);
	cfg.mem_size = 16 * MiB;
	cfg.ncpus = 2;
	/* warm up: the first VM allocates process-wide things (signal handler) */
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	vm_destroy(vm);
	unsigned fds = count_fds();
	struct mallinfo2 m0 = mallinfo2();
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(vm_create(&cfg, &vm), 0, "VM %d", i);
		cr_assert_eq(board_build(vm), 0);
		vm_destroy(vm);
	}
	struct mallinfo2 m1 = mallinfo2();
	cr_assert_eq(count_fds(), fds, "file descriptors leaked");
	cr_assert_lt(m1.uordblks, m0.uordblks + 64 * 1024, "heap grew by %zu bytes over 200 VMs",
		     m1.uordblks - m0.uordblks);
}

struct runner {
	const char *guest;
	char path[4200];
	struct vm_stop_info st;
};

static void *run_one(void *arg)
{
	struct runner *r = arg;
	struct vm *vm = make_vm(r->guest, 1, NULL, r->path, VM_ENTRY_KERNEL);

	if (vm_start(vm) == 0)
		vm_wait(vm, &r->st);
	vm_destroy(vm);
	return NULL;
}

Test(vm, two_vms_at_once, .timeout = 300)
{
	rw_test_require_kvm();
	const char *dir = rw_test_tmpdir("two");
	struct runner a = { .guest = "counter" }, b = { .guest = "counter" }, c = { .guest = "counter" };
	pthread_t ta, tb;

	snprintf(a.path, sizeof(a.path), "%s/a.txt", dir);
	snprintf(b.path, sizeof(b.path), "%s/b.txt", dir);
	snprintf(c.path, sizeof(c.path), "%s/c.txt", dir);
	run_one(&c); /* reference, alone */
	cr_assert_eq(pthread_create(&ta, NULL, run_one, &a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, run_one, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	cr_assert_eq(a.st.reason, VM_STOP_EXIT, "%s", a.st.msg);
	cr_assert_eq(b.st.reason, VM_STOP_EXIT, "%s", b.st.msg);
	unsigned long long x = counter_checksum(rw_test_slurp(c.path, NULL));
	cr_assert_eq(counter_checksum(rw_test_slurp(a.path, NULL)), x);
	cr_assert_eq(counter_checksum(rw_test_slurp(b.path, NULL)), x);
}

/*
 * Replace the program with code that kills the vCPU and check the VM stops
 * with a report naming the vCPU, RIP and exit reason instead of hanging.
 */
static struct vm_stop_info run_blob(enum vm_entry entry, const uint8_t *code, size_t len, bool no_idt)
{
	struct vm *vm = make_vm("hello", 1, NULL, "/dev/null", entry);
	struct vcpu *v = vm->vcpus[0];
	struct kvm_regs regs;
	struct vm_stop_info st;
	uint64_t at = vm->image.free_start;

	cr_assert_eq(mem_write(&vm->mem, at, code, len), 0);
	cr_assert_eq(vcpu_get_regs(v, &regs), 0);
	regs.rip = at;
	cr_assert_eq(vcpu_set_regs(v, &regs), 0);
	if (no_idt) {
		struct kvm_sregs s;
		cr_assert_eq(ioctl(v->fd, KVM_GET_SREGS, &s), 0);
		s.idt.limit = 0;
		cr_assert_eq(ioctl(v->fd, KVM_SET_SREGS, &s), 0);
	}
	cr_assert_eq(vm_start(vm), 0);
	/* on a KVM that runs the code fine it loops: stop it after 10 s */
	for (int i = 0; i < 1000 && !vm_stopped(vm); i++)
		usleep(10000);
	if (!vm_stopped(vm)) {
		struct vm_stop_info why = { .reason = VM_STOP_REQUEST };
		vm_request_stop(vm, &why);
	}
	vm_wait(vm, &st);
	vm_destroy(vm);
	return st;
}

Test(vm, triple_fault_is_reported, .timeout = 60)
{
	rw_test_require_kvm();
	static const uint8_t ud2[] = { 0x0f, 0x0b };
	struct vm_stop_info st = run_blob(VM_ENTRY_USER, ud2, sizeof(ud2), true);
	char rip[64];

	cr_assert_eq(st.reason, VM_STOP_FATAL, "%s", st.msg);
	cr_assert(strstr(st.msg, "vCPU 0") && strstr(st.msg, "triple fault") &&
		  strstr(st.msg, "KVM_EXIT_SHUTDOWN"), "%s", st.msg);
	snprintf(rip, sizeof(rip), "RIP 0x");
	cr_assert(strstr(st.msg, rip), "%s", st.msg);
}

Test(vm, cpl0_emulation_failure_is_reported, .timeout = 60)
{
	rw_test_require_kvm();
	/* movd %eax, %xmm0 at CPL0: the platform's emulator may not have it */
	static const uint8_t sse[] = { 0x66, 0x0f, 0x6e, 0xc0, 0xeb, 0xfe };
	struct vm_stop_info st = run_blob(VM_ENTRY_KERNEL, sse, sizeof(sse), false);

	if (st.reason == VM_STOP_REQUEST)
		cr_skip_test("this KVM emulates SSE at CPL0; nothing to report");
	cr_assert_eq(st.reason, VM_STOP_FATAL, "%s", st.msg);
	cr_assert(strstr(st.msg, "vCPU 0") && strstr(st.msg, "KVM_EXIT_INTERNAL_ERROR") &&
		  strstr(st.msg, "RIP 0x"), "%s", st.msg);
}

Test(vm, ram_split_around_the_pci_hole, .timeout = 60)
{
	rw_test_require_kvm();
	struct vm_config cfg;
	struct vm *vm;
	struct vm_stop_info st;
	struct kvm_regs regs;
	uint8_t code[32];
	size_t n = 0;
	uint64_t high = (4ULL << 30) + 0x12345000, hc = RW_GPA_HYPERCALL + 8 * RW_HC_EXIT;

	config_init(&cfg);
	cfg.mem_size = 5ULL << 30;
	cfg.serial_in = false;
	cfg.entry = VM_ENTRY_USER;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest("hello"));
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/dev/null");
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	cr_assert_eq(board_build(vm), 0);
	cr_assert_eq(vm_boot(vm), 0);
	cr_assert_eq(vm->mem.nr_slots, 2);
	cr_assert_eq(vm->mem.slots[0].size, 3ULL << 30);
	cr_assert_eq(vm->mem.slots[1].gpa, 4ULL << 30);
	cr_assert_eq(vm->mem.slots[1].size, 2ULL << 30);
	cr_assert_null(mem_gpa_to_hva(&vm->mem, 3ULL << 30, 1), "the hole must not be RAM");
	cr_assert_null(mem_gpa_to_hva(&vm->mem, (3ULL << 30) - 4096, 8192), "a range into the hole");

	/* CPL3 code stores 0x5a above 4 GiB, then exits with code 0 */
	code[n++] = 0xb0; code[n++] = 0x5a;                       /* mov $0x5a, %al */
	code[n++] = 0x48; code[n++] = 0xa2;                       /* movabs %al, high */
	memcpy(code + n, &high, 8); n += 8;
	code[n++] = 0x31; code[n++] = 0xff;                       /* xor %edi, %edi */
	code[n++] = 0x48; code[n++] = 0xa1;                       /* movabs hc, %rax */
	memcpy(code + n, &hc, 8); n += 8;
	code[n++] = 0xeb; code[n++] = 0xfe;
	cr_assert_eq(mem_write(&vm->mem, vm->image.free_start, code, n), 0);
	cr_assert_eq(vcpu_get_regs(vm->vcpus[0], &regs), 0);
	regs.rip = vm->image.free_start;
	cr_assert_eq(vcpu_set_regs(vm->vcpus[0], &regs), 0);
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &st);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	/* it landed in the second slot, at its offset in guest RAM */
	uint8_t *p = mem_gpa_to_hva(&vm->mem, high, 1);
	cr_assert_not_null(p);
	cr_assert_eq(*p, 0x5a);
	cr_assert_eq(p, vm->mem.hva + (3ULL << 30) + 0x12345000);
	vm_destroy(vm);
}

/*
 * The exit counters read from the vCPU's stats fd: a CPL3 loop of MMIO
 * loads makes one MMIO exit per KVM_RUN and, host interrupts aside, nothing
 * else; a guest that sleeps on its LAPIC timer makes exits of other kinds.
 */
static struct vcpu_exit_counts counts_after(struct vcpu *v, unsigned runs, uint32_t want)
{
	struct vcpu_exit_counts c;

	for (unsigned i = 0; i < runs; i++) {
		cr_assert_eq(ioctl(v->fd, KVM_RUN, 0), 0);
		cr_assert_eq(v->run->exit_reason, want, "exit %s", vcpu_exit_name(v->run->exit_reason));
	}
	cr_assert_eq(vcpu_exit_counts(v, &c), 0, "no exit counters on this KVM");
	return c;
}

static void exit_loop_counts(enum vm_entry entry, const uint8_t *code, size_t len, uint32_t want)
{
	struct vm *vm = make_vm("hello", 1, NULL, "/dev/null", entry);
	struct vcpu *v = vm->vcpus[0];
	struct kvm_regs regs;

	cr_assert_eq(mem_write(&vm->mem, vm->image.free_start, code, len), 0);
	cr_assert_eq(vcpu_get_regs(v, &regs), 0);
	regs.rip = vm->image.free_start;
	regs.rbx = RW_GPA_HYPERCALL;
	cr_assert_eq(vcpu_set_regs(v, &regs), 0);
	struct vcpu_exit_counts a = counts_after(v, 10, want); /* first entries fault in pages */
	struct vcpu_exit_counts first = a;
	unsigned clean = 0;

	/* host interrupts also make exits now and then: most windows are clean */
	for (unsigned i = 0; i < 200; i++) {
		struct vcpu_exit_counts b = counts_after(v, 1, want);

		cr_assert_geq(b.exits - a.exits, 1);
		clean += vcpu_exits_all_seen(&a, &b);
		a = b;
	}
	cr_assert_eq((a.mmio - first.mmio) + (a.io - first.io), 200, "mmio %llu io %llu",
		     (unsigned long long)(a.mmio - first.mmio), (unsigned long long)(a.io - first.io));
	cr_assert_geq(clean, 100, "only %u of 200 single exits were seen as clean", clean);
	vm_destroy(vm);
}

Test(vm, exit_counters_see_mmio_exits_as_seen, .timeout = 60)
{
	rw_test_require_kvm();
	static const uint8_t mmio_cpl3[] = { 0x48, 0x8b, 0x03, 0xeb, 0xfb }; /* mov (%rbx),%rax; jmp */

	exit_loop_counts(VM_ENTRY_USER, mmio_cpl3, sizeof(mmio_cpl3), KVM_EXIT_MMIO);
}

Test(vm, exit_counters_see_a_timer_sleep, .timeout = 60)
{
	rw_test_require_kvm();
	struct vm *vm = make_vm("dirtier", 1, "pages=1 rounds=3 sleep=100000", "/dev/null",
				VM_ENTRY_KERNEL);
	struct vcpu_exit_counts a, b;
	struct vm_stop_info st;

	cr_assert_eq(vcpu_exit_counts(vm->vcpus[0], &a), 0);
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &st);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	cr_assert_eq(vcpu_exit_counts(vm->vcpus[0], &b), 0);
	/* it halts until its LAPIC timer interrupt: exits that are not I/O */
	cr_assert_gt(b.exits, a.exits);
	cr_assert(!vcpu_exits_all_seen(&a, &b), "exits %llu mmio %llu io %llu emulated %llu",
		  (unsigned long long)(b.exits - a.exits), (unsigned long long)(b.mmio - a.mmio),
		  (unsigned long long)(b.io - a.io), (unsigned long long)(b.emulated - a.emulated));
	vm_destroy(vm);
}
