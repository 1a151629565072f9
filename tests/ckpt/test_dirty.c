/*
 * Dirty tracking: no page is lost, in either mode, whether the guest writes
 * from natively running CPL3 code or from emulated CPL0 code (which, on
 * hosts that emulate it in batches, can overflow a small dirty ring), and
 * the VMM's own writes are seen too.
 */
#include <criterion/criterion.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "dirty.h"
#include "rw/abi.h"
#include "testutil.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

#define DST (16ULL << 20)
#define LEN (32ULL << 20) /* 8192 pages */

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/*
 * Dirty [DST, DST+LEN), then make the exit hypercall with code 0.
 *
 * rep_bytes == 0: one store per page, in a loop (8192 stores). That is the
 * shape of real CPL0 code; a ring too small for 8192 entries loses pages.
 * rep_bytes > 0: additionally one `rep stosb` of rep_bytes bytes at DST. On a
 * host that emulates CPL0 code (PVM) every emulated store takes a ring entry
 * and a long string instruction can overflow any ring KVM offers, so this
 * form is only used where it is exact: with the bitmap.
 */
static size_t make_blob(uint8_t *b, uint64_t rep_bytes)
{
	size_t n = 0;

	b[n++] = 0xb8; b[n++] = 0x5a; b[n++] = 0; b[n++] = 0; b[n++] = 0; /* mov $0x5a, %eax */
	if (rep_bytes) {
		b[n++] = 0x48; b[n++] = 0xbf; put64(b + n, DST); n += 8;       /* mov $DST, %rdi */
		b[n++] = 0x48; b[n++] = 0xb9; put64(b + n, rep_bytes); n += 8; /* mov $len, %rcx */
		b[n++] = 0xf3; b[n++] = 0xaa;                                  /* rep stosb */
	}
	b[n++] = 0x48; b[n++] = 0xbf; put64(b + n, DST); n += 8;               /* mov $DST, %rdi */
	b[n++] = 0x48; b[n++] = 0xb9; put64(b + n, LEN / 4096); n += 8;        /* mov $pages, %rcx */
	b[n++] = 0x88; b[n++] = 0x07;                                          /* 1: mov %al, (%rdi) */
	b[n++] = 0x48; b[n++] = 0x81; b[n++] = 0xc7; put64(b + n, 4096); n += 4; /* add $4096, %rdi */
	b[n++] = 0x48; b[n++] = 0xff; b[n++] = 0xc9;                           /* dec %rcx */
	b[n++] = 0x75; b[n++] = (uint8_t)-14;                                  /* jnz 1b */
	b[n++] = 0x31; b[n++] = 0xff;                              /* xor %edi, %edi */
	b[n++] = 0x48; b[n++] = 0xa1;                              /* movabs hc, %rax */
	put64(b + n, RW_GPA_HYPERCALL + 8 * RW_HC_EXIT); n += 8;
	b[n++] = 0xeb; b[n++] = 0xfe;                              /* jmp . */
	return n;
}

static void run_blob_and_check(bool ring, enum vm_entry entry, uint64_t rep_bytes)
{
	struct vm_config cfg;
	struct vm *vm;
	struct dirty_tracker *t;
	struct kvm_regs regs;
	struct vm_stop_info st;
	uint8_t blob[96];
	size_t n = make_blob(blob, rep_bytes);

	rw_test_require_kvm();
	config_init(&cfg);
	cfg.mem_size = 64 * MiB;
	cfg.serial_in = false;
	cfg.entry = entry;
	cfg.dirty_ring_entries = ring ? DIRTY_RING_ENTRIES : 0;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest("hello"));
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "/dev/null");
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	cr_assert_eq(board_build(vm), 0);
	cr_assert_eq(vm_boot(vm), 0);
	cr_assert_eq(dirty_start(vm, ring, &t), 0);
	/* loading the image was a VMM write: those pages are marked */
	cr_assert_gt(dirty_count(t, DIRTY_CKPT), 0);
	dirty_clear(t, DIRTY_CKPT);
	dirty_clear(t, DIRTY_RESET);

	uint64_t at = vm->image.free_start;
	cr_assert_eq(mem_write(&vm->mem, at, blob, n), 0); /* marks its page */
	cr_assert(dirty_test(t, DIRTY_CKPT, at / RW_PAGE_SIZE));
	cr_assert(dirty_test(t, DIRTY_RESET, at / RW_PAGE_SIZE));
	dirty_clear(t, DIRTY_CKPT);
	dirty_clear(t, DIRTY_RESET);

	cr_assert_eq(vcpu_get_regs(vm->vcpus[0], &regs), 0);
	regs.rip = at;
	cr_assert_eq(vcpu_set_regs(vm->vcpus[0], &regs), 0);
	cr_assert_eq(vm_start(vm), 0);
	vm_wait(vm, &st);
	cr_assert_eq(st.reason, VM_STOP_EXIT, "%s", st.msg);
	cr_assert_eq(dirty_harvest(t), 0);

	uint64_t missing = 0;
	for (uint64_t p = DST / RW_PAGE_SIZE; p < (DST + LEN) / RW_PAGE_SIZE; p++)
		for (int e = 0; e < DIRTY_NR_EPOCHS; e++)
			if (!dirty_test(t, e, p))
				missing++;
	cr_assert_eq(missing, 0, "%llu page marks lost (%s, CPL%d)", (unsigned long long)missing,
		     ring ? "ring" : "bitmap", entry == VM_ENTRY_USER ? 3 : 0);
	/* and the memory really holds what the guest wrote */
	cr_assert_eq(vm->mem.hva[DST], 0x5a);
	cr_assert_eq(vm->mem.hva[DST + LEN - 4096], 0x5a);
	dirty_stop(t);
	vm_destroy(vm);
}

Test(dirty, ring_cpl0_loses_nothing, .timeout = 120) { run_blob_and_check(true, VM_ENTRY_KERNEL, 0); }
Test(dirty, ring_cpl3_loses_nothing, .timeout = 120) { run_blob_and_check(true, VM_ENTRY_USER, 8 << 20); }
Test(dirty, bitmap_cpl0_loses_nothing, .timeout = 120) { run_blob_and_check(false, VM_ENTRY_KERNEL, 8 << 20); }
Test(dirty, bitmap_cpl3_loses_nothing, .timeout = 120) { run_blob_and_check(false, VM_ENTRY_USER, 8 << 20); }

Test(dirty, epochs_take_give_back_and_restore)
{
	struct vm_config cfg;
	struct vm *vm;
	struct dirty_tracker *t;
	uint64_t *pages;
	uint8_t page[4096];

	rw_test_require_kvm();
	config_init(&cfg);
	cfg.mem_size = 32 * MiB;
	cr_assert_eq(vm_create(&cfg, &vm), 0);
	cr_assert_eq(dirty_start(vm, false, &t), 0);
	dirty_clear(t, DIRTY_CKPT);
	memset(page, 7, sizeof(page));
	cr_assert_eq(mem_write(&vm->mem, 5 * 4096, page, 4096), 0);
	cr_assert_eq(mem_write(&vm->mem, 9 * 4096 + 100, page, 4096), 0); /* spans 9 and 10 */
	cr_assert_eq(dirty_count(t, DIRTY_CKPT), 3);
	cr_assert_eq(dirty_count(t, DIRTY_RESET), 3);

	/* the checkpoint epoch takes its bits; the reset epoch keeps its own */
	int64_t n = dirty_take(t, DIRTY_CKPT, &pages);
	cr_assert_eq(n, 3);
	cr_assert_eq(pages[0], 5);
	cr_assert_eq(pages[1], 9);
	cr_assert_eq(pages[2], 10);
	cr_assert_eq(dirty_count(t, DIRTY_CKPT), 0);
	cr_assert_eq(dirty_count(t, DIRTY_RESET), 3);
	/* a new write while the checkpoint is persisting */
	cr_assert_eq(mem_write(&vm->mem, 20 * 4096, page, 1), 0);
	/* the checkpoint failed: its pages come back, next to the new one */
	dirty_give_back(t, DIRTY_CKPT, pages, (uint64_t)n);
	free(pages);
	cr_assert_eq(dirty_count(t, DIRTY_CKPT), 4);
	cr_assert(dirty_test(t, DIRTY_CKPT, 20));

	/* a rollback rewriting page 30 changes nothing for the checkpoint epoch */
	dirty_clear(t, DIRTY_CKPT);
	dirty_clear(t, DIRTY_RESET);
	dirty_note_restored(t, DIRTY_CKPT, 30, 2);
	cr_assert_eq(dirty_count(t, DIRTY_CKPT), 0);
	cr_assert(dirty_test(t, DIRTY_RESET, 30) && dirty_test(t, DIRTY_RESET, 31));
	dirty_stop(t);
	vm_destroy(vm);
}
