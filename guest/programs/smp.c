/*
 * smp: every vCPU reports its LAPIC id.
 *
 * Each vCPU prints "cpu N apic M" (M read by the kernel from the LAPIC), then
 * counts itself in; vCPU 0 waits until all have, prints
 * "smp: all N cpus reported" and exits 0.
 */
#include <rw/rw.h>

static volatile uint32_t reported;

static void report(unsigned cpu)
{
	rw_printf("cpu %u apic %u\n", cpu, rw_apic_id());
	__atomic_fetch_add(&reported, 1, __ATOMIC_RELEASE);
}

void rw_ap_main(unsigned cpu)
{
	report(cpu);
}

int rw_main(const char *args)
{
	unsigned n = rw_ncpus();

	(void)args;
	report(0);
	while (__atomic_load_n(&reported, __ATOMIC_ACQUIRE) < n)
		rw_pause();
	rw_printf("smp: all %u cpus reported\n", n);
	return 0;
}
