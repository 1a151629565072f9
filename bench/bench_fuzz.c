/*
 * rewind-bench fuzz: AFL++ fuzzing the same target three ways, each for the
 * same time in one run:
 *
 *   rewind      afl-fuzz -X (nyx mode) driving the SDK guest tlv.elf through
 *               rewind's libnyx (a whole VM, reset after every input);
 *   persistent  AFL++'s persistent mode on the parser compiled natively
 *               (bench/fuzz/tlv_afl.c): the physical floor of fuzzing it;
 *   forkserver  AFL++'s plain forkserver on the same native parser.
 *
 * execs_per_s, native_persistent_execs_per_s and native_forkserver_execs_per_s
 * are AFL's own execs_per_sec (fuzzer_stats) of each campaign;
 * ratio_persistent and ratio_forkserver compare rewind with them.
 *
 * The per-exec breakdown comes from a librewind loop in this process over
 * the inputs the persistent campaign queued: run_us (hand the input over,
 * KVM_RUN to rw_done), map_us (one pass over the coverage map, as AFL makes
 * to classify and hash it), reset_us (rewind_reset).
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "bench.h"
#include "log.h"
#include "rewind.h"

extern char **environ;

#define FUZZ_INPUTS 4096
#define FUZZ_INPUT_MAX 4096

/* Run argv with extra environment variables, output to log; its exit status. */
static int spawn_wait(char *const argv[], char *const extra_env[], const char *log)
{
	posix_spawn_file_actions_t fa;
	char **env;
	size_t n = 0, k = 0;
	pid_t pid;
	int st;

	while (environ[n])
		n++;
	while (extra_env[k])
		k++;
	env = calloc(n + k + 1, sizeof(*env));
	if (!env)
		return -ENOMEM;
	memcpy(env, extra_env, k * sizeof(*env));
	memcpy(env + k, environ, n * sizeof(*env));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	int ret = posix_spawnp(&pid, argv[0], &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	if (ret)
		return -ret;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A field of AFL's fuzzer_stats ("execs_per_sec : 1234.56"); < 0 if absent. */
static double afl_stat(const char out[static 256], const char *key)
{
	char path[320], line[512];
	size_t kl = strlen(key);
	double v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/default/fuzzer_stats", out);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = line;
		if (strncmp(p, key, kl) || (p[kl] != ' ' && p[kl] != ':'))
			continue;
		p = strchr(p, ':');
		if (p)
			v = strtod(p + 1, NULL);
		break;
	}
	fclose(f);
	return v;
}

/*
 * One AFL++ campaign of `seconds` on target (argv after "--"), from the
 * seeds in in; returns AFL's execs_per_sec, or < 0 with the log named.
 */
static double campaign(const char *name, const char *tmp, const char *in, unsigned seconds,
		       char *const target[], char *const extra_env[])
{
	char out[256], log[256], secs[16];
	char *argv[32];
	unsigned a = 0;
	int rc;

	snprintf(out, sizeof(out), "%s/out-%s", tmp, name);
	snprintf(log, sizeof(log), "%s/afl-%s.log", tmp, name);
	snprintf(secs, sizeof(secs), "%u", seconds);
	argv[a++] = "afl-fuzz";
	for (unsigned i = 0; target[i] && strcmp(target[i], "--"); i++)
		argv[a++] = target[i]; /* afl-fuzz options before the target */
	argv[a++] = "-i";
	argv[a++] = (char *)in;
	argv[a++] = "-o";
	argv[a++] = out;
	argv[a++] = "-V";
	argv[a++] = secs;
	argv[a++] = "--";
	for (unsigned i = 0; target[i]; i++)
		if (!strcmp(target[i], "--"))
			for (unsigned j = i + 1; target[j] && a < 31; j++)
				argv[a++] = target[j];
	argv[a] = NULL;
	fprintf(stderr, "rewind-bench fuzz: %s: afl-fuzz for %u s\n", name, seconds);
	rc = spawn_wait(argv, extra_env, log);
	double eps = afl_stat(out, "execs_per_sec");
	if (rc != 0 || eps <= 0) {
		fprintf(stderr, "rewind-bench fuzz: %s: afl-fuzz failed (exit %d); see %s\n", name, rc,
			log);
		return -1;
	}
	return eps;
}

/* Up to max inputs from an AFL queue directory; their count. */
static size_t load_queue(const char *dir, uint8_t (*in)[FUZZ_INPUT_MAX], size_t *len, size_t max)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (!d)
		return 0;
	while (n < max && (e = readdir(d))) {
		char p[4200];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		FILE *f = fopen(p, "rb");
		if (!f)
			continue;
		len[n] = fread(in[n], 1, FUZZ_INPUT_MAX, f);
		fclose(f);
		n++;
	}
	closedir(d);
	return n;
}

/* The per-exec breakdown over the inputs; 0, or -1 without a VM. */
static int breakdown(uint8_t (*in)[FUZZ_INPUT_MAX], const size_t *len, size_t n, unsigned execs,
		     json_t *o)
{
	struct rewind_config c = { .kernel = bench_guest("tlv"), .timeout_us = 1000000 };
	struct rewind_vm *vm;
	struct rewind_event ev;
	uint8_t *map;
	size_t size;
	uint64_t run = 0, mapt = 0, reset = 0, sink = 0;
	int ret;

	ret = rewind_create(&c, &vm);
	if (!ret)
		ret = rewind_run(vm, &ev);
	if (!ret && ev.kind != REWIND_EV_SNAPSHOT)
		ret = -EPROTO;
	if (!ret)
		ret = rewind_coverage(vm, &map, &size);
	if (ret) {
		json_object_set_new(o, "error", json_string(rewind_strerror(ret)));
		if (vm)
			rewind_destroy(vm);
		return -1;
	}
	for (unsigned i = 0; i < execs + execs / 10; i++) {
		size_t k = i % n;
		uint64_t t0 = rw_now_ns();
		if (rewind_set_payload(vm, in[k], len[k]) || rewind_run(vm, &ev))
			break;
		uint64_t t1 = rw_now_ns();
		sink += XXH3_64bits(map, size);
		uint64_t t2 = rw_now_ns();
		if (rewind_reset(vm))
			break;
		uint64_t t3 = rw_now_ns();
		if (i < execs / 10)
			continue; /* warm up: the hot set is learned */
		run += t1 - t0;
		mapt += t2 - t1;
		reset += t3 - t2;
	}
	rewind_destroy(vm);
	json_object_set_new(o, "run_us", json_real(bench_round((double)run / execs / 1e3)));
	json_object_set_new(o, "map_us", json_real(bench_round((double)mapt / execs / 1e3)));
	json_object_set_new(o, "reset_us", json_real(bench_round((double)reset / execs / 1e3)));
	json_object_set_new(o, "loop_execs_per_s",
			    json_real(bench_round(1e9 * execs / (double)(run + mapt + reset))));
	json_object_set_new(o, "map_bytes", json_integer((json_int_t)size));
	return sink == 42 ? 1 : 0; /* keep the hash */
}

static int usage(void)
{
	fprintf(stderr, "usage: rewind-bench fuzz [--seconds N] [--execs N]\n"
			"  AFL++ on the tlv target through rewind (-X), and natively in persistent\n"
			"  and forkserver mode, N seconds each (default 30); the per-exec breakdown\n"
			"  over N execs (default 20000) of the inputs found\n");
	return 2;
}

int bench_fuzz_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "execs", required_argument, NULL, 'e' },
		{ 0 },
	};
	unsigned seconds = 30, execs = 20000;
	char tmp[] = "/tmp/rewind-bench-fuzz.XXXXXX", in[64], seed[96], cmd[8600], q[128];
	uint64_t v;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 's' && !rw_parse_uint(optarg, 1, 3600, &v))
			seconds = (unsigned)v;
		else if (opt == 'e' && !rw_parse_uint(optarg, 100, 100000000, &v))
			execs = (unsigned)v;
		else
			return usage();
	}
#ifndef REWIND_AFL_TARGETS
	fprintf(stderr, "rewind-bench fuzz: built without AFL++ (apt-get install afl++, then "
			"configure again)\n");
	return 1;
#else
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(in, sizeof(in), "%s/in", tmp);
	snprintf(seed, sizeof(seed), "%s/seed", in);
	mkdir(in, 0700);
	snprintf(cmd, sizeof(cmd), "'%s/tlv_native' --sample > '%s'", REWIND_GUEST_DIR, seed);
	if (system(cmd)) {
		fprintf(stderr, "rewind-bench fuzz: cannot write the seed with %s/tlv_native\n",
			REWIND_GUEST_DIR);
		return 1;
	}
	char *quiet[] = { "AFL_NO_UI=1", "AFL_SKIP_CPUFREQ=1",
			  "AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1", "AFL_QUIET=1", NULL };
	char *persistent[] = { "--", REWIND_AFL_TARGETS "/tlv_afl_persistent", NULL };
	char *forkserver[] = { "--", REWIND_AFL_TARGETS "/tlv_afl_forkserver", "@@", NULL };
	double p = campaign("persistent", tmp, in, seconds, persistent, quiet);
	double f = campaign("forkserver", tmp, in, seconds, forkserver, quiet);

	char share[96], nyxpath[4200];
	snprintf(share, sizeof(share), "%s/share", tmp);
	snprintf(nyxpath, sizeof(nyxpath), "AFL_PATH=%s", REWIND_NYX_DIR);
	snprintf(cmd, sizeof(cmd), "'%s' fuzz-share '%s' --kernel '%s' >/dev/null", REWIND_BIN, share,
		 bench_guest("tlv"));
	double r = -1;
	if (system(cmd) == 0) {
		char *nyx_env[] = { nyxpath, "AFL_NO_UI=1", "AFL_SKIP_CPUFREQ=1",
				    "AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1", NULL };
		char *rewind_target[] = { "-X", "--", share, NULL };
		r = campaign("rewind", tmp, in, seconds, rewind_target, nyx_env);
	} else {
		fprintf(stderr, "rewind-bench fuzz: rewind fuzz-share failed\n");
	}

	json_t *o = json_object();
	json_object_set_new(o, "bench", json_string("fuzz"));
	json_object_set_new(o, "target", json_string("tlv"));
	json_object_set_new(o, "seconds", json_integer(seconds));
	json_object_set_new(o, "execs_per_s", r > 0 ? json_real(bench_round(r)) : json_null());
	json_object_set_new(o, "native_persistent_execs_per_s",
			    p > 0 ? json_real(bench_round(p)) : json_null());
	json_object_set_new(o, "native_forkserver_execs_per_s",
			    f > 0 ? json_real(bench_round(f)) : json_null());
	json_object_set_new(o, "ratio_persistent",
			    r > 0 && p > 0 ? json_real(bench_round(r / p)) : json_null());
	json_object_set_new(o, "ratio_forkserver",
			    r > 0 && f > 0 ? json_real(bench_round(r / f)) : json_null());

	static uint8_t inputs[FUZZ_INPUTS][FUZZ_INPUT_MAX];
	static size_t lens[FUZZ_INPUTS];
	snprintf(q, sizeof(q), "%s/out-persistent/default/queue", tmp);
	size_t n = load_queue(q, inputs, lens, FUZZ_INPUTS);
	if (!n)
		n = load_queue(in, inputs, lens, FUZZ_INPUTS);
	json_object_set_new(o, "breakdown_inputs", json_integer((json_int_t)n));
	if (n)
		breakdown(inputs, lens, n, execs, o);
	bench_emit(o);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd))
		fprintf(stderr, "rewind-bench fuzz: could not remove %s\n", tmp);
	return r > 0 && p > 0 && f > 0 ? 0 : 1;
#endif
}
