/*
 * echo: reads one line from the console (UART receive, interrupt driven)
 * and writes it back unchanged, then exits 0.
 */
#include <rw/rw.h>

int rw_main(const char *args)
{
	char line[1024];
	size_t n;

	(void)args;
	n = rw_read_line(line, sizeof(line));
	rw_write(line, n);
	return 0;
}
