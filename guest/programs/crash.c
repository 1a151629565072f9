/*
 * crash: a fault at CPL3. Reads address 0x8 (page 0 is never mapped), so
 * the kernel's #PF handler reports vector 14 with the faulting RIP and
 * CR2 = 0x8, and rewind exits with status 3.
 */
#include <rw/rw.h>

int rw_main(const char *args)
{
	volatile uint64_t *p;

	(void)args;
	rw_print("crash: reading address 0x8\n");
	p = (volatile uint64_t *)8;
	__asm__("" : "+r"(p)); /* keep the compiler from reasoning about it */
	return (int)*p;
}
