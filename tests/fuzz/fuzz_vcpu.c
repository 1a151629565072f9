/*
 * fuzz_vcpu.c - the vCPU record decoder, state_vcpu_decode() (ckpt/state.h),
 * on a VM made by hand (fuzz_vm_init: 2 vCPUs, RAM on both sides of the
 * PCI hole, no KVM: the decoder only validates).
 *
 * The input is one record, decoded as vCPU 0, as vCPU 1 and as vCPU 2
 * (which the VM does not have). Contract: an error is one state.h lists,
 * explained as "vcpu/<i>: <field>: <reason>", with the output zeroed; an
 * accepted state passes state_vcpu_check(), has its MSRs in the VM's order,
 * and encodes to a record that decodes to the same state.
 */
#include <string.h>

#include "fuzz_common.h"
#include "state.h"
#include "vcpu_state.h"
#include "vm.h"

static struct vm vm;
static struct vcpu_state *st, *again;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_vm_init(&vm, 2, 3 * (1ULL << 30) + (64ULL << 20), false);
	st = calloc(1, sizeof(*st));
	again = calloc(1, sizeof(*again));
	if (!st || !again)
		abort();
	return 0;
}

static void one(const uint8_t *data, size_t size, unsigned index)
{
	char why[512], key[STATE_KEY_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	memset(why, 0x55, sizeof(why));
	ret = state_vcpu_decode(&vm, index, data, size, st, why, sizeof(why));
	FUZZ_CHECK(state_vcpu_key(index, key, sizeof(key)) == 0, "no key for vCPU %u", index);
	if (ret) {
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_ECHECKSUM || ret == RW_EVERSION ||
				   ret == RW_ENOKVMCAP,
			   "vcpu/%u: error %d (%s)", index, ret, rw_errname(ret));
		FUZZ_CHECK(memchr(why, 0, sizeof(why)) && fuzz_why_names(why, key),
			   "vcpu/%u: refusal explained as '%.200s'", index, why);
		FUZZ_CHECK(fuzz_is_zero(st, sizeof(*st)), "vcpu/%u: output not zeroed on refusal",
			   index);
		return;
	}
	FUZZ_CHECK(index < vm.ncpus, "accepted for vCPU %u of %u", index, vm.ncpus);
	ret = state_vcpu_check(&vm, index, st, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "vcpu/%u: decoded, then the check refuses: %s", index, why);
	/* the MSRs come in the VM's order */
	for (uint32_t i = 0, k = 0; i < st->nr_msrs; i++, k++) {
		while (k < vm.nr_msrs && vm.msr_index[k] != st->msrs[i].index)
			k++;
		FUZZ_CHECK(k < vm.nr_msrs, "vcpu/%u: MSR 0x%x out of the VM's order", index,
			   st->msrs[i].index);
	}

	ret = state_vcpu_encode(&vm, index, st, &buf, &len);
	FUZZ_CHECK(ret == 0, "vcpu/%u: an accepted state does not encode: %d", index, ret);
	ret = state_vcpu_decode(&vm, index, buf, len, again, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "vcpu/%u: its own encoding is refused: %s", index, why);
	FUZZ_CHECK(memcmp(st, again, sizeof(*st)) == 0, "vcpu/%u: the round trip changed the state",
		   index);
	free(buf);
}

static void all(const uint8_t *data, size_t size)
{
	for (unsigned i = 0; i <= vm.ncpus; i++)
		one(data, size, i);
	/* no message wanted */
	(void)!state_vcpu_decode(&vm, 0, data, size, st, NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run_fixed(all, data, size);
	return 0;
}
