/* hello: prints one fixed line and exits 0 (the SDK's smallest program). */
#include <rw/rw.h>

int rw_main(const char *args)
{
	(void)args;
	rw_print("Hello from the rewind guest SDK!\n");
	return 0;
}
