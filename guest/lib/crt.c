/*
 * crt.c - the C side of program start-up: rw_main on vCPU 0, rw_ap_main on
 * the others.
 */
#include "rw/rw.h"

RW_NORETURN void rw_crt_start(uint64_t cpu, const struct rw_boot_info *bi);

__attribute__((weak)) void rw_ap_main(unsigned cpu)
{
	(void)cpu;
}

RW_NORETURN void rw_crt_start(uint64_t cpu, const struct rw_boot_info *bi)
{
	if (bi->magic != RW_BOOT_MAGIC || bi->abi_version != RW_ABI_VERSION) {
		if (cpu == 0)
			rw_print("rw: boot info missing or from another ABI version\n");
		rw_crash(0x100);
	}
	if (cpu == 0)
		rw_exit(rw_main(rw_args()));
	rw_ap_main((unsigned)cpu);
	rw_halt();
}
