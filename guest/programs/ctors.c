/*
 * ctors: checks that start-up runs the program's constructors once, in
 * order, before rw_main() and before any rw_ap_main().
 *
 * It has a .preinit_array entry, two prioritised constructors (registered
 * in the source in the opposite order of their priorities) and two plain
 * ones. Each appends a letter to a log; the expected log is "pabcd". Every
 * other vCPU checks that it sees the whole log too. Output:
 *   ctors: log pabcd runs 5 ok
 * and, with --cpus N > 1, "ctors: N cpus saw the log" before it. Exit 0,
 * or 1 when anything is off.
 */
#include <rw/rw.h>

static char trail[16];
static unsigned runs;
static unsigned ap_ok, ap_bad;

static void note(char c)
{
	if (runs < sizeof(trail) - 1)
		trail[runs] = c;
	runs++;
}

static void pre(void)
{
	note('p');
}

__attribute__((used, section(".preinit_array"))) static void (*const pre_entry)(void) = pre;

__attribute__((constructor(2000))) static void ctor_b(void)
{
	note('b');
}

__attribute__((constructor(1000))) static void ctor_a(void)
{
	note('a');
}

__attribute__((constructor)) static void ctor_c(void)
{
	note('c');
}

__attribute__((constructor)) static void ctor_d(void)
{
	note('d');
}

static int log_ok(void)
{
	return runs == 5 && strcmp(trail, "pabcd") == 0;
}

void rw_ap_main(unsigned cpu)
{
	(void)cpu;
	__atomic_fetch_add(log_ok() ? &ap_ok : &ap_bad, 1, __ATOMIC_SEQ_CST);
}

int rw_main(const char *args)
{
	unsigned others = rw_ncpus() - 1;
	int ok = log_ok();

	(void)args;
	if (others) {
		while (__atomic_load_n(&ap_ok, __ATOMIC_SEQ_CST) +
			       __atomic_load_n(&ap_bad, __ATOMIC_SEQ_CST) <
		       others)
			rw_pause();
		if (ap_bad)
			ok = 0;
		rw_printf("ctors: %u cpus saw the log\n", ap_ok + 1);
	}
	rw_printf("ctors: log %s runs %u %s\n", trail, runs, ok ? "ok" : "BAD");
	return ok ? 0 : 1;
}
