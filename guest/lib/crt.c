/*
 * crt.c - the C side of program start-up: constructors and rw_main on
 * vCPU 0, rw_ap_main on the others.
 *
 * Every vCPU enters here at about the same time. vCPU 0 runs the program's
 * constructors (.preinit_array, then .init_array, delimited by rw.ld) once,
 * then calls rw_main(). The other vCPUs wait until the constructors have
 * finished before they call rw_ap_main(), so code on any vCPU sees what the
 * constructors set up, as a hosted C program's threads would. An image
 * without constructors does not wait at all.
 */
#include "rw/rw.h"

RW_NORETURN void rw_crt_start(uint64_t cpu, const struct rw_boot_info *bi);

typedef void (*rw_ctor_fn)(void);

extern rw_ctor_fn __preinit_array_start[] __attribute__((visibility("hidden")));
extern rw_ctor_fn __preinit_array_end[] __attribute__((visibility("hidden")));
extern rw_ctor_fn __init_array_start[] __attribute__((visibility("hidden")));
extern rw_ctor_fn __init_array_end[] __attribute__((visibility("hidden")));

/* Set (release) by vCPU 0 once every constructor has returned. */
static volatile uint32_t ctors_done;

__attribute__((weak)) void rw_ap_main(unsigned cpu)
{
	(void)cpu;
}

/*
 * Entries between two linker-script symbols, counted through integers: to C
 * the start and end are distinct objects, which it may assume never meet.
 */
static size_t entries(rw_ctor_fn *start, rw_ctor_fn *end)
{
	return ((uintptr_t)end - (uintptr_t)start) / sizeof(rw_ctor_fn);
}

static int have_ctors(void)
{
	size_t n = entries(__preinit_array_start, __preinit_array_end) +
		   entries(__init_array_start, __init_array_end);

	return n != 0;
}

static void run_ctors(void)
{
	size_t n = entries(__preinit_array_start, __preinit_array_end);

	for (size_t i = 0; i < n; i++)
		__preinit_array_start[i]();
	n = entries(__init_array_start, __init_array_end);
	for (size_t i = 0; i < n; i++)
		__init_array_start[i]();
	__atomic_store_n(&ctors_done, 1, __ATOMIC_RELEASE);
}

RW_NORETURN void rw_crt_start(uint64_t cpu, const struct rw_boot_info *bi)
{
	if (bi->magic != RW_BOOT_MAGIC || bi->abi_version != RW_ABI_VERSION) {
		if (cpu == 0)
			rw_print("rw: boot info missing or from another ABI version\n");
		rw_crash(0x100);
	}
	if (cpu == 0) {
		run_ctors();
		rw_exit(rw_main(rw_args()));
	}
	if (have_ctors())
		while (!__atomic_load_n(&ctors_done, __ATOMIC_ACQUIRE))
			rw_pause();
	rw_ap_main((unsigned)cpu);
	rw_halt();
}
