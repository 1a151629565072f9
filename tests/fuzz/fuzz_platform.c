/*
 * fuzz_platform.c - the platform record decoder, state_platform_decode()
 * (ckpt/state.h: PICs, IOAPIC, PIT, KVM clock), on a VM made by hand
 * (fuzz_vm_init; the decoder only validates).
 *
 * Contract: an error is one state.h lists, explained as
 * "vm/platform: <field>: <reason>", with the output zeroed; an accepted
 * state passes state_platform_check() and encodes to a record that decodes
 * to the same state.
 */
#include <string.h>

#include "fuzz_common.h"
#include "state.h"
#include "vcpu_state.h"
#include "vm.h"

static struct vm vm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_vm_init(&vm, 1, 64ULL << 20, false);
	return 0;
}

static void one(const uint8_t *data, size_t size)
{
	struct platform_state st, again;
	char why[512];
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	memset(why, 0x55, sizeof(why));
	ret = state_platform_decode(&vm, data, size, &st, why, sizeof(why));
	if (ret) {
		FUZZ_CHECK(ret == RW_ECORRUPT || ret == RW_ECHECKSUM || ret == RW_EVERSION,
			   "error %d (%s)", ret, rw_errname(ret));
		FUZZ_CHECK(memchr(why, 0, sizeof(why)) && fuzz_why_names(why, STATE_KEY_PLATFORM),
			   "refusal explained as '%.200s'", why);
		FUZZ_CHECK(fuzz_is_zero(&st, sizeof(st)), "output not zeroed on refusal");
		return;
	}
	ret = state_platform_check(&vm, &st, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "decoded, then the check refuses: %s", why);
	ret = state_platform_encode(&vm, &st, &buf, &len);
	FUZZ_CHECK(ret == 0, "an accepted state does not encode: %d", ret);
	ret = state_platform_decode(&vm, buf, len, &again, why, sizeof(why));
	FUZZ_CHECK(ret == 0, "its own encoding is refused: %s", why);
	FUZZ_CHECK(memcmp(&st, &again, sizeof(st)) == 0, "the round trip changed the state");
	free(buf);
	(void)!state_platform_decode(&vm, data, size, &st, NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run_fixed(one, data, size);
	return 0;
}
