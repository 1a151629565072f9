/*
 * nyx.c - libnyx.so over librewind (nyx.h): afl-fuzz's Nyx mode runs an
 * SDK guest from a rewind share directory (fuzz_share.h).
 *
 * Only rewind.h reaches the VM: the library links the shared librewind,
 * which exports its API and nothing else.
 */
#include "nyx.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "fuzz_share.h"
#include "rewind.h"

#define CONFIG_MAGIC 0x6766636e79787772ULL /* "rwxynfcg" */
#define RUNNER_MAGIC 0x6e75726e79787772ULL /* "rwxynrun" */
/* afl-fuzz's map unless AFL_MAP_SIZE says otherwise */
#define AFL_MAP_SIZE_DEFAULT 65536u
/* the bitmap of a guest run with "coverage": false */
#define EMPTY_MAP_SIZE 64u
#define AUX_DEFAULT 4096u

/*
 * What nyx_config_load() hands out. Every one stays on the list until the
 * library is unloaded: nyx_config_free() frees its settings and leaves a
 * tombstone, so nyx_new() can tell a configuration (live or freed) from a
 * path by the pointer alone and never reads a freed object.
 */
struct nyx_config {
	uint64_t magic;
	struct nyx_config *next;
	struct fuzz_share *share;  /* NULL once freed */
	uint32_t input_buffer_size; /* 0: not set */
	int hprintf_fd;
	uint32_t aux_size;
};

struct nyx_runner {
	uint64_t magic;
	struct nyx_runner *next;  /* on the graveyard once shut down */
	bool dead;
	struct rewind_vm *vm;
	struct fuzz_share share;

	/* the input buffer: u32 length, then capacity bytes */
	uint8_t *input;
	size_t input_map;
	uint32_t capacity;
	bool no_input;            /* the last nyx_set_afl_input() had no buffer */

	/* the guest's coverage map, and the fuzzer's copy of it */
	const uint8_t *cov;
	size_t cov_size;
	uint8_t *bitmap;
	size_t bitmap_size;       /* what the fuzzer is told */
	size_t bitmap_dirty;      /* what the fuzzer may have written: 64-byte rounded */
	size_t bitmap_map;

	bool need_reset;          /* the last run left the VM away from its root */
	struct rewind_event ev;
	enum { LAST_NONE, LAST_EVENT, LAST_ERROR } last;
	char error[1024];
	char *aux;
	uint32_t aux_size;

	/* options: set, then applied */
	bool timeout_set, reload_set, reload;
	uint64_t timeout_us;
	bool reload_noted;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nyx_config *configs;
static struct nyx_runner *graveyard;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "libnyx (rewind): %s\n", line);
}

/* ------------------------------------------------------------ configs */

/* The configuration p is, or NULL if p is not one this library made. */
static struct nyx_config *config_find(const void *p)
{
	struct nyx_config *c;

	if (!p)
		return NULL;
	pthread_mutex_lock(&registry_lock);
	for (c = configs; c && (const void *)c != p; c = c->next)
		;
	pthread_mutex_unlock(&registry_lock);
	return c;
}

/* A live configuration, or NULL (with a message naming the caller). */
static struct nyx_config *config_live(void *p, const char *fn)
{
	struct nyx_config *c = config_find(p);

	if (c && c->share)
		return c;
	if (p)
		say("%s: %s", fn, c ? "the configuration was freed" : "not a configuration from nyx_config_load()");
	return NULL;
}

void *nyx_config_load(const char *sharedir)
{
	struct nyx_config *c = calloc(1, sizeof(*c));
	char why[1024];
	int ret;

	if (c)
		c->share = malloc(sizeof(*c->share));
	if (!c || !c->share) {
		free(c);
		say("nyx_config_load: out of memory");
		return NULL;
	}
	ret = fuzz_share_load(sharedir, c->share, why, sizeof(why));
	if (ret) {
		say("%s", why);
		free(c->share);
		free(c);
		return NULL;
	}
	c->magic = CONFIG_MAGIC;
	c->hprintf_fd = -1;
	c->aux_size = AUX_DEFAULT;
	pthread_mutex_lock(&registry_lock);
	c->next = configs;
	configs = c;
	pthread_mutex_unlock(&registry_lock);
	return c;
}

void nyx_config_free(void *config)
{
	struct nyx_config *c = config_find(config);

	if (!c)
		return;
	pthread_mutex_lock(&registry_lock);
	free(c->share);
	c->share = NULL;
	pthread_mutex_unlock(&registry_lock);
}

void nyx_config_set_workdir_path(void *config, const char *workdir)
{
	/* rewind keeps no files in a workdir */
	(void)config_live(config, "nyx_config_set_workdir_path");
	(void)workdir;
}

void nyx_config_set_input_buffer_size(void *config, uint32_t input_buffer_size)
{
	struct nyx_config *c = config_live(config, "nyx_config_set_input_buffer_size");

	if (c)
		c->input_buffer_size = input_buffer_size;
}

void nyx_config_set_input_buffer_write_protection(void *config, bool enable)
{
	/* the guest gets a copy of the input: it cannot write the fuzzer's */
	(void)config_live(config, "nyx_config_set_input_buffer_write_protection");
	(void)enable;
}

void nyx_config_set_hprintf_fd(void *config, int32_t fd)
{
	struct nyx_config *c = config_live(config, "nyx_config_set_hprintf_fd");

	if (c)
		c->hprintf_fd = fd;
}

void nyx_config_set_process_role(void *config, enum NyxProcessRole role)
{
	/* every runner starts its own VM: parents and children alike */
	(void)config_live(config, "nyx_config_set_process_role");
	(void)role;
}

void nyx_config_set_reuse_snapshot_path(void *config, const char *path)
{
	if (config_live(config, "nyx_config_set_reuse_snapshot_path"))
		say("a snapshot to reuse (%s) does not apply: rewind takes the root by running the "
		    "guest to rw_snapshot(), which costs milliseconds", path ? path : "(null)");
}

bool nyx_config_set_aux_buffer_size(void *config, uint32_t size)
{
	struct nyx_config *c = config_live(config, "nyx_config_set_aux_buffer_size");

	if (!c || size < 4096 || size % 4096)
		return false;
	c->aux_size = size;
	return true;
}

static int hash_file(XXH3_state_t *st, const char *path)
{
	uint8_t buf[1 << 14];
	size_t got;
	FILE *f = fopen(path, "rb");

	if (!f)
		return -errno;
	while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
		XXH3_64bits_update(st, buf, got);
	int err = ferror(f) ? -EIO : 0;
	fclose(f);
	return err;
}

uint64_t nyx_get_target_hash64(void *config)
{
	struct nyx_config *c = config_live(config, "nyx_get_target_hash64");
	char settings[PATH_MAX + 32];
	XXH3_state_t *st;
	uint64_t h = 0;

	if (!c || !(st = XXH3_createState()))
		return 0;
	snprintf(settings, sizeof(settings), "%s/%s", c->share->dir, FUZZ_SHARE_CONFIG);
	XXH3_64bits_reset(st);
	if (hash_file(st, c->share->kernel_path) == 0 && hash_file(st, settings) == 0)
		h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

bool nyx_remove_work_dir(const char *workdir)
{
	if (!workdir)
		return false;
	if (rmdir(workdir) == 0)
		return true;
	/* rewind keeps no files there: anything inside is someone else's */
	say("not removing workdir %s: %s (rewind only removes an empty one)", workdir, strerror(errno));
	return false;
}

/* ------------------------------------------------------------ runners */

static struct nyx_runner *runner_of(void *p)
{
	struct nyx_runner *r = p;

	return r && r->magic == RUNNER_MAGIC ? r : NULL;
}

static void runner_free_parts(struct nyx_runner *r)
{
	rewind_destroy(r->vm);
	r->vm = NULL;
	if (r->input)
		munmap(r->input, r->input_map);
	r->input = NULL;
	if (r->bitmap)
		munmap(r->bitmap, r->bitmap_map);
	r->bitmap = NULL;
	free(r->aux);
	r->aux = NULL;
}

static void *map_zeroed(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static size_t page_up(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) / pg * pg;
}

static void pin(uint32_t cpu)
{
	cpu_set_t set;

	if (cpu >= CPU_SETSIZE) {
		say("CPU %u is out of range: running unpinned", cpu);
		return;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		say("cannot pin this thread to CPU %u: %s (running unpinned)", cpu, strerror(errno));
}

/*
 * A runner for the settings in *share: pinned to cpu (if >= 0), its input
 * buffer holding input_size bytes (0: the default), the guest at its root.
 */
static struct nyx_runner *runner_start(const struct fuzz_share *share, int64_t cpu, uint32_t input_size,
				       int console_fd, uint32_t aux_size)
{
	struct nyx_runner *r = calloc(1, sizeof(*r));
	char console[64], why[1024];
	uint8_t *map;
	size_t size;
	int ret;

	if (!r) {
		say("share directory %s: out of memory", share->dir);
		return NULL;
	}
	r->magic = RUNNER_MAGIC;
	r->share = *share;
	r->capacity = input_size ? input_size
				 : share->payload_size > NYX_DEFAULT_INPUT_BUFFER ? share->payload_size
										 : NYX_DEFAULT_INPUT_BUFFER;
	r->input_map = page_up((size_t)r->capacity + 4);
	r->input = map_zeroed(r->input_map);
	r->aux_size = aux_size;
	r->aux = malloc(aux_size);
	if (!r->input || !r->aux) {
		say("share directory %s: cannot allocate an input buffer of %u bytes", share->dir,
		    r->capacity);
		goto fail;
	}
	if (cpu >= 0)
		pin((uint32_t)cpu);
	if (console_fd >= 0)
		snprintf(console, sizeof(console), "/proc/self/fd/%d", console_fd);
	ret = fuzz_share_boot(share, console_fd >= 0 ? console : NULL, &r->vm, why, sizeof(why));
	if (ret) {
		say("share directory %s: %s", share->dir, why);
		goto fail;
	}
	ret = rewind_coverage(r->vm, &map, &size);
	if (ret == -ENOENT && share->coverage) {
		say("share directory %s: the guest %s announced no coverage map before its snapshot: "
		    "build it with the guest SDK's coverage runtime (rw_guest_program(... COVERAGE), "
		    "or RW_COVERAGE=1 with rewind-guest.mk), or set \"coverage\": false in %s/%s to "
		    "run it without coverage", share->dir, share->kernel, share->dir, FUZZ_SHARE_CONFIG);
		goto fail;
	}
	if (ret && ret != -ENOENT) {
		say("share directory %s: reading the guest's coverage map: %s", share->dir,
		    rewind_strerror(ret));
		goto fail;
	}
	r->cov = ret ? NULL : map;
	r->cov_size = ret ? 0 : size;
	r->bitmap_size = r->cov ? r->cov_size : EMPTY_MAP_SIZE;
	r->bitmap_dirty = (r->bitmap_size + 63) / 64 * 64;
	r->bitmap_map = page_up(r->bitmap_dirty);
	r->bitmap = map_zeroed(r->bitmap_map);
	if (!r->bitmap) {
		say("share directory %s: cannot allocate a bitmap of %zu bytes", share->dir,
		    r->bitmap_size);
		goto fail;
	}
	if (r->bitmap_size > AFL_MAP_SIZE_DEFAULT && !getenv("AFL_MAP_SIZE"))
		say("the coverage map has %zu bytes: set AFL_MAP_SIZE=%zu (afl-fuzz 4.0x restarts its "
		    "backend for a map larger than its own and then loses it)", r->bitmap_size,
		    r->bitmap_size);
	return r;
fail:
	runner_free_parts(r);
	free(r);
	return NULL;
}

/* A runner from a share directory's path (AFL++ 4.0x). */
static void *runner_from_dir(const char *sharedir, int64_t cpu, uint32_t input_size)
{
	struct fuzz_share *share = malloc(sizeof(*share));
	struct nyx_runner *r = NULL;
	char why[1024];

	if (!share) {
		say("nyx_new: out of memory");
		return NULL;
	}
	if (!sharedir)
		say("nyx_new: no share directory (or configuration) was given");
	else if (fuzz_share_load(sharedir, share, why, sizeof(why)))
		say("%s", why);
	else
		r = runner_start(share, cpu, input_size, -1, AUX_DEFAULT);
	free(share);
	return r;
}

/*
 * Both interfaces' nyx_new (nyx.h): (config, worker_id) or (sharedir,
 * workdir, cpu_id, input_buffer_size, input_buffer_write_protection). The
 * second argument is a u32 in one and a pointer in the other: only its low
 * 32 bits are used as the worker id, and the workdir is never read. The
 * last three are read only for a share directory, whose callers pass them.
 */
void *nyx_new(void *first, uintptr_t second, uint32_t cpu_id, uint32_t input_buffer_size,
	      bool input_buffer_write_protection);

void *nyx_new(void *first, uintptr_t second, uint32_t cpu_id, uint32_t input_buffer_size,
	      bool input_buffer_write_protection)
{
	struct nyx_config *c = config_find(first);

	(void)input_buffer_write_protection;
	if (c) {
		uint32_t worker_id = (uint32_t)second;

		(void)worker_id; /* every worker runs its own VM */
		if (!c->share) {
			say("nyx_new: the configuration was freed");
			return NULL;
		}
		return runner_start(c->share, -1, c->input_buffer_size, c->hprintf_fd, c->aux_size);
	}
	return runner_from_dir(first, cpu_id, input_buffer_size);
}

void *nyx_new_parent(const char *sharedir, const char *workdir, uint32_t cpu_id,
		     uint32_t input_buffer_size, bool input_buffer_write_protection)
{
	(void)workdir;
	(void)input_buffer_write_protection;
	return runner_from_dir(sharedir, cpu_id, input_buffer_size);
}

void *nyx_new_child(const char *sharedir, const char *workdir, uint32_t cpu_id, uint32_t worker_id)
{
	(void)workdir;
	(void)worker_id;
	return runner_from_dir(sharedir, cpu_id, 0);
}

void nyx_shutdown(void *runner)
{
	struct nyx_runner *r = runner_of(runner);

	if (!r || r->dead)
		return;
	runner_free_parts(r);
	r->dead = true;
	/* kept, so a call after this one finds a dead runner, not freed memory */
	pthread_mutex_lock(&registry_lock);
	r->next = graveyard;
	graveyard = r;
	pthread_mutex_unlock(&registry_lock);
}

/* A runner that can run, or NULL (saying why, once per call site's kind). */
static struct nyx_runner *runner_live(void *runner, const char *fn)
{
	struct nyx_runner *r = runner_of(runner);

	if (r && !r->dead)
		return r;
	say("%s: %s", fn, r ? "the runner was shut down (nyx_shutdown)" : "not a runner from nyx_new()");
	return NULL;
}

void nyx_option_set_reload_mode(void *runner, bool enable)
{
	struct nyx_runner *r = runner_live(runner, "nyx_option_set_reload_mode");

	if (r) {
		r->reload_set = true;
		r->reload = enable;
	}
}

void nyx_option_set_timeout(void *runner, uint8_t timeout_sec, uint32_t timeout_usec)
{
	struct nyx_runner *r = runner_live(runner, "nyx_option_set_timeout");

	if (r) {
		r->timeout_set = true;
		r->timeout_us = (uint64_t)timeout_sec * 1000000 + timeout_usec;
	}
}

static enum NyxReturnValue exec_error(struct nyx_runner *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static enum NyxReturnValue exec_error(struct nyx_runner *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	r->last = LAST_ERROR;
	say("share directory %s: %s", r->share.dir, r->error);
	return NYX_ERROR;
}

void nyx_option_apply(void *runner)
{
	struct nyx_runner *r = runner_live(runner, "nyx_option_apply");
	int ret;

	if (!r)
		return;
	if (r->timeout_set) {
		r->timeout_set = false;
		ret = rewind_set_timeout(r->vm, r->timeout_us);
		if (ret)
			exec_error(r, "setting the timeout to %llu us: %s",
				   (unsigned long long)r->timeout_us, rewind_strerror(ret));
	}
	if (r->reload_set) {
		r->reload_set = false;
		if (!r->reload && !r->reload_noted) {
			r->reload_noted = true;
			say("rewind resets the VM to its snapshot after every run: turning the "
			    "reload mode off (NYX_DISABLE_SNAPSHOT_MODE) has no effect");
		}
	}
}

void nyx_set_afl_input(void *runner, uint8_t *buffer, uint32_t size)
{
	struct nyx_runner *r = runner_live(runner, "nyx_set_afl_input");

	if (!r)
		return;
	/* too long: the length alone is kept, and nyx_exec() refuses it */
	memcpy(r->input, &size, sizeof(size));
	r->no_input = !buffer && size;
	if (size <= r->capacity && size && buffer)
		memmove(r->input + 4, buffer, size); /* it may be the input buffer itself */
}

uint8_t *nyx_get_input_buffer(void *runner)
{
	struct nyx_runner *r = runner_live(runner, "nyx_get_input_buffer");

	return r ? r->input : NULL;
}

enum NyxReturnValue nyx_exec(void *runner)
{
	struct nyx_runner *r = runner_live(runner, "nyx_exec");
	uint32_t len;
	int ret;

	if (!r)
		return NYX_ERROR;
	if (r->need_reset) {
		ret = rewind_reset(r->vm);
		if (ret)
			return exec_error(r, "resetting the VM to its snapshot: %s", rewind_strerror(ret));
		r->need_reset = false;
	}
	memcpy(&len, r->input, sizeof(len));
	if (r->no_input) {
		r->no_input = false;
		return exec_error(r, "nyx_set_afl_input was given no buffer for its %u bytes: not run", len);
	}
	if (len > r->capacity)
		return exec_error(r, "the input has %u bytes, more than the input buffer holds (%u "
				  "bytes): not run", len, r->capacity);
	ret = rewind_set_payload(r->vm, r->input + 4, len < r->share.payload_size ? len : r->share.payload_size);
	if (ret)
		return exec_error(r, "handing over the input: %s", rewind_strerror(ret));
	ret = rewind_run(r->vm, &r->ev);
	r->need_reset = true;
	if (ret)
		return exec_error(r, "running the guest: %s", rewind_strerror(ret));
	if (r->cov)
		memcpy(r->bitmap, r->cov, r->cov_size);
	if (r->bitmap_dirty > r->cov_size)
		memset(r->bitmap + r->cov_size, 0, r->bitmap_dirty - r->cov_size);
	r->last = LAST_EVENT;
	switch (fuzz_share_outcome(r->ev.kind)) {
	case FUZZ_NORMAL:
		return NYX_NORMAL;
	case FUZZ_TIMEOUT:
		return NYX_TIMEOUT;
	case FUZZ_CRASH:
		/* what happened (a dead VM, an exit) is in the aux string */
		return NYX_CRASH;
	case FUZZ_UNEXPECTED:
		break;
	}
	return exec_error(r, "the guest took its snapshot again (event %d)", (int)r->ev.kind);
}

uint8_t *nyx_get_bitmap_buffer(void *runner)
{
	struct nyx_runner *r = runner_live(runner, "nyx_get_bitmap_buffer");

	return r ? r->bitmap : NULL;
}

size_t nyx_get_bitmap_buffer_size(void *runner)
{
	struct nyx_runner *r = runner_live(runner, "nyx_get_bitmap_buffer_size");

	return r ? r->bitmap_size : 0;
}

/*
 * The last run in one line, composed when asked for (not on every run):
 * len bytes copied, and a NUL after them if there is room.
 */
uint32_t nyx_get_aux_string(void *runner, uint8_t *buffer, uint32_t size)
{
	static const char dead[] = "error: the runner was shut down";
	struct nyx_runner *r = runner_of(runner);
	const char *text = dead;
	size_t len;
	int n;

	if (!r || !buffer || !size)
		return 0;
	if (!r->dead) {
		text = r->aux;
		if (r->last == LAST_ERROR) {
			n = snprintf(r->aux, r->aux_size, "error: %s", r->error);
			len = n < 0 ? 0 : (size_t)n;
		} else if (r->last == LAST_EVENT) {
			len = fuzz_share_describe(&r->ev, r->aux, r->aux_size);
		} else {
			len = 0;
			r->aux[0] = 0;
		}
		if (len >= r->aux_size)
			len = r->aux_size - 1;
	} else {
		len = sizeof(dead) - 1;
	}
	if (len > size)
		len = size;
	memcpy(buffer, text, len);
	if (len < size)
		buffer[len] = 0;
	return (uint32_t)len;
}

/* Unloading frees the dead: shut-down runners and freed configurations. */
__attribute__((destructor)) static void nyx_unload(void)
{
	pthread_mutex_lock(&registry_lock);
	while (graveyard) {
		struct nyx_runner *r = graveyard;
		graveyard = r->next;
		free(r);
	}
	struct nyx_config **p = &configs;
	while (*p) {
		struct nyx_config *c = *p;
		if (c->share) {
			p = &c->next;
			continue;
		}
		*p = c->next;
		free(c);
	}
	pthread_mutex_unlock(&registry_lock);
}
