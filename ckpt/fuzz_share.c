/*
 * fuzz_share.c - the fuzzing share directory (fuzz_share.h).
 *
 * Built into rw_ckpt (for the command line) and into libnyx.so, which
 * reaches the VM through librewind's API only: this file uses rewind.h,
 * jansson and libc, and of the layers below just constants.
 */
#include "fuzz_share.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memory.h"

static int fail(char *why, size_t n, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t n, int err, const char *fmt, ...)
{
	va_list ap;

	if (why && n) {
		va_start(ap, fmt);
		vsnprintf(why, n, fmt, ap);
		va_end(ap);
	}
	return err;
}

void fuzz_share_init(struct fuzz_share *s)
{
	memset(s, 0, sizeof(*s));
	s->mem_size = FUZZ_SHARE_MEM_DEFAULT;
	s->payload_size = FUZZ_SHARE_PAYLOAD_DEFAULT;
	s->timeout_ms = FUZZ_SHARE_TIMEOUT_DEFAULT_MS;
	s->coverage = true;
}

int fuzz_share_check(const struct fuzz_share *s, char *why, size_t n)
{
	const char *k = s->kernel;

	if (!k[0])
		return fail(why, n, -EINVAL, "no guest image (\"kernel\") is named");
	if (strchr(k, '/') || strcmp(k, ".") == 0 || strcmp(k, "..") == 0)
		return fail(why, n, -EINVAL, "the guest image \"%s\" must be a file name in the share "
			    "directory, without '/'", k);
	if (strcmp(k, FUZZ_SHARE_CONFIG) == 0 || strcmp(k, FUZZ_SHARE_MARKER) == 0 || k[0] == '.')
		return fail(why, n, -EINVAL, "the guest image cannot be named \"%s\" (a name the share "
			    "directory uses itself, or a hidden one)", k);
	if (s->mem_size < RW_MEM_MIN || s->mem_size > RW_MEM_MAX || s->mem_size % (2ULL << 20))
		return fail(why, n, -EINVAL, "the guest memory (%llu bytes) must be a multiple of 2 MiB "
			    "from 16 MiB to 64 GiB", (unsigned long long)s->mem_size);
	if (s->payload_size < 1 || s->payload_size > FUZZ_SHARE_PAYLOAD_MAX)
		return fail(why, n, -EINVAL, "the payload size (%u bytes) must be from 1 byte to 16 MiB",
			    s->payload_size);
	if (s->timeout_ms > FUZZ_SHARE_TIMEOUT_MAX_MS)
		return fail(why, n, -EINVAL, "the timeout (%u ms) must be at most one hour (0 = none)",
			    s->timeout_ms);
	if (strlen(s->args) > FUZZ_SHARE_ARGS_MAX)
		return fail(why, n, -EINVAL, "the guest's args are longer than %d bytes",
			    FUZZ_SHARE_ARGS_MAX);
	return 0;
}

int fuzz_share_check_image(const char *path, char *why, size_t n)
{
	Elf64_Ehdr eh;
	struct stat st;
	ssize_t got;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		return fail(why, n, err, "%s: %s", path, strerror(-err));
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(why, n, -EINVAL, "%s: not a regular file", path);
	}
	got = pread(fd, &eh, sizeof(eh), 0);
	err = got < 0 ? -errno : 0;
	close(fd);
	if (err)
		return fail(why, n, err, "%s: %s", path, strerror(-err));
	if ((size_t)got < sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64 || eh.e_type != ET_EXEC)
		return fail(why, n, -EINVAL, "%s: not a guest image (an x86-64 ELF executable, as the "
			    "guest SDK builds)", path);
	return 0;
}

/* ------------------------------------------------------------- reading */

static int join(char *out, size_t size, const char *dir, const char *name)
{
	int len = snprintf(out, size, "%s/%s", dir, name);

	return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

/* One key of rewind.json into *s; 0 or -EINVAL with why. */
static int load_key(struct fuzz_share *s, const char *file, const char *key, json_t *v, char *why,
		    size_t n)
{
	if (strcmp(key, "rewind_share") == 0) {
		if (!json_is_integer(v) || json_integer_value(v) != FUZZ_SHARE_VERSION)
			return fail(why, n, -EINVAL, "%s: \"rewind_share\" must be %d (the format this "
				    "rewind reads)", file, FUZZ_SHARE_VERSION);
	} else if (strcmp(key, "kernel") == 0) {
		if (!json_is_string(v) || json_string_length(v) > FUZZ_SHARE_NAME_MAX ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return fail(why, n, -EINVAL, "%s: \"kernel\" must be a file name of at most %d "
				    "bytes", file, FUZZ_SHARE_NAME_MAX);
		snprintf(s->kernel, sizeof(s->kernel), "%s", json_string_value(v));
	} else if (strcmp(key, "mem_size") == 0) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0)
			return fail(why, n, -EINVAL, "%s: \"mem_size\" must be a number of bytes", file);
		s->mem_size = (uint64_t)json_integer_value(v);
	} else if (strcmp(key, "payload_size") == 0) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
		    json_integer_value(v) > FUZZ_SHARE_PAYLOAD_MAX)
			return fail(why, n, -EINVAL, "%s: \"payload_size\" must be a number of bytes from 1 "
				    "to %u", file, FUZZ_SHARE_PAYLOAD_MAX);
		s->payload_size = (uint32_t)json_integer_value(v);
	} else if (strcmp(key, "timeout_ms") == 0) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > FUZZ_SHARE_TIMEOUT_MAX_MS)
			return fail(why, n, -EINVAL, "%s: \"timeout_ms\" must be a number of milliseconds "
				    "from 0 (none) to %u", file, FUZZ_SHARE_TIMEOUT_MAX_MS);
		s->timeout_ms = (uint32_t)json_integer_value(v);
	} else if (strcmp(key, "args") == 0) {
		if (!json_is_string(v) || json_string_length(v) > FUZZ_SHARE_ARGS_MAX ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return fail(why, n, -EINVAL, "%s: \"args\" must be a string of at most %d bytes",
				    file, FUZZ_SHARE_ARGS_MAX);
		snprintf(s->args, sizeof(s->args), "%s", json_string_value(v));
	} else if (strcmp(key, "coverage") == 0) {
		if (!json_is_boolean(v))
			return fail(why, n, -EINVAL, "%s: \"coverage\" must be true or false", file);
		s->coverage = json_is_true(v);
	} else {
		return fail(why, n, -EINVAL, "%s: unknown key \"%s\"", file, key);
	}
	return 0;
}

int fuzz_share_load(const char *dir, struct fuzz_share *s, char *why, size_t n)
{
	char file[PATH_MAX + 32];
	json_error_t jerr;
	struct stat st;
	const char *key;
	json_t *root, *v;
	int ret;

	fuzz_share_init(s);
	if (!dir || !dir[0])
		return fail(why, n, -EINVAL, "no share directory was given");
	if (strlen(dir) >= sizeof(s->dir) - FUZZ_SHARE_NAME_MAX - 2)
		return fail(why, n, -ENAMETOOLONG, "share directory %s: the path is too long", dir);
	if (stat(dir, &st)) {
		ret = -errno;
		return fail(why, n, ret, "share directory %s: %s", dir, strerror(-ret));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(why, n, -ENOTDIR, "share directory %s: not a directory", dir);
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	join(file, sizeof(file), dir, FUZZ_SHARE_CONFIG);
	if (stat(file, &st)) {
		ret = -errno;
		if (ret == -ENOENT)
			return fail(why, n, ret, "%s: missing: %s is not a rewind share directory (make "
				    "one with `rewind fuzz-share`)", file, dir);
		return fail(why, n, ret, "%s: %s", file, strerror(-ret));
	}
	if (!S_ISREG(st.st_mode))
		return fail(why, n, -EINVAL, "%s: not a regular file", file);
	root = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(why, n, -EINVAL, "%s: damaged: line %d, column %d: %s", file, jerr.line,
			    jerr.column, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return fail(why, n, -EINVAL, "%s: damaged: not a JSON object", file);
	}
	if (!json_object_get(root, "rewind_share")) {
		json_decref(root);
		return fail(why, n, -EINVAL, "%s: damaged: no \"rewind_share\" version", file);
	}
	json_object_foreach(root, key, v) {
		ret = load_key(s, file, key, v, why, n);
		if (ret) {
			json_decref(root);
			return ret;
		}
	}
	json_decref(root);
	if (!s->kernel[0])
		return fail(why, n, -EINVAL, "%s: damaged: no guest image (\"kernel\") is named", file);
	ret = fuzz_share_check(s, why, n);
	if (ret) {
		char inner[512];

		snprintf(inner, sizeof(inner), "%s", why ? why : "");
		return fail(why, n, ret, "%s: %s", file, inner);
	}
	if (join(s->kernel_path, sizeof(s->kernel_path), dir, s->kernel))
		return fail(why, n, -ENAMETOOLONG, "%s: the image path is too long", file);
	if (access(s->kernel_path, F_OK)) {
		ret = -errno;
		return fail(why, n, ret, "%s (the guest image %s names): %s", s->kernel_path, file,
			    strerror(-ret));
	}
	return fuzz_share_check_image(s->kernel_path, why, n);
}

/* ------------------------------------------------------------- writing */

json_t *fuzz_share_json(const struct fuzz_share *s)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "rewind_share", json_integer(FUZZ_SHARE_VERSION));
	json_object_set_new(o, "kernel", json_string(s->kernel));
	json_object_set_new(o, "mem_size", json_integer((json_int_t)s->mem_size));
	json_object_set_new(o, "payload_size", json_integer((json_int_t)s->payload_size));
	json_object_set_new(o, "timeout_ms", json_integer((json_int_t)s->timeout_ms));
	json_object_set_new(o, "args", json_string(s->args));
	json_object_set_new(o, "coverage", json_boolean(s->coverage));
	return o;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/*
 * Write dir/name from src (a file descriptor) or buf: a temporary file,
 * synced, renamed into place.
 */
static int put_file(const char *dir, const char *name, int src, const void *buf, size_t len,
		    char *why, size_t n)
{
	char tmp[PATH_MAX + 64], path[PATH_MAX + 32];
	char *chunk = NULL;
	int fd, ret = 0;

	if (join(path, sizeof(path), dir, name))
		return fail(why, n, -ENAMETOOLONG, "%s/%s: the path is too long", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%d", dir, name, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		return fail(why, n, ret, "%s: %s", tmp, strerror(-ret));
	}
	if (src >= 0 && !(chunk = malloc(1 << 16)))
		ret = -ENOMEM;
	if (src >= 0 && chunk) {
		for (;;) {
			ssize_t r = read(src, chunk, 1 << 16);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				ret = -errno;
				break;
			}
			if (r == 0)
				break;
			ret = write_all(fd, chunk, (size_t)r);
			if (ret)
				break;
		}
	} else if (src < 0) {
		ret = write_all(fd, buf, len);
	}
	free(chunk);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		return fail(why, n, ret, "writing %s: %s", path, strerror(-ret));
	}
	return 0;
}

static const char marker[] =
	"// A rewind share directory: afl-fuzz -X looks for this file to accept the\n"
	"// directory; rewind's libnyx.so reads its settings from " FUZZ_SHARE_CONFIG ".\n"
	"// Made by `rewind fuzz-share`.\n"
	"()\n";

int fuzz_share_save(const char *dir, const char *image, struct fuzz_share *s, char *why, size_t n)
{
	struct stat st;
	char *text;
	int fd, ret;

	ret = fuzz_share_check(s, why, n);
	if (ret)
		return ret;
	ret = fuzz_share_check_image(image, why, n);
	if (ret)
		return ret;
	if (strlen(dir) >= sizeof(s->dir) - FUZZ_SHARE_NAME_MAX - 2)
		return fail(why, n, -ENAMETOOLONG, "%s: the path is too long", dir);
	if (mkdir(dir, 0755) && errno != EEXIST) {
		ret = -errno;
		return fail(why, n, ret, "creating %s: %s", dir, strerror(-ret));
	}
	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return fail(why, n, -ENOTDIR, "%s: not a directory", dir);
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	join(s->kernel_path, sizeof(s->kernel_path), dir, s->kernel);

	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		return fail(why, n, ret, "%s: %s", image, strerror(-ret));
	}
	ret = put_file(dir, s->kernel, fd, NULL, 0, why, n);
	close(fd);
	if (ret)
		return ret;

	json_t *o = fuzz_share_json(s);
	text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!text)
		return fail(why, n, -ENOMEM, "out of memory");
	size_t len = strlen(text);
	char *line = realloc(text, len + 2);
	if (!line) {
		free(text);
		return fail(why, n, -ENOMEM, "out of memory");
	}
	line[len] = '\n';
	line[len + 1] = 0;
	ret = put_file(dir, FUZZ_SHARE_CONFIG, -1, line, len + 1, why, n);
	free(line);
	if (ret)
		return ret;
	return put_file(dir, FUZZ_SHARE_MARKER, -1, marker, sizeof(marker) - 1, why, n);
}

/* ---------------------------------------------------------------- boot */

int fuzz_share_boot(const struct fuzz_share *s, const char *console, struct rewind_vm **out,
		    char *why, size_t n)
{
	struct rewind_config c;
	struct rewind_vm *vm;
	struct rewind_event ev;
	char what[600];
	uint32_t boot_ms = s->timeout_ms > FUZZ_SHARE_BOOT_TIMEOUT_MS ? s->timeout_ms
								     : FUZZ_SHARE_BOOT_TIMEOUT_MS;
	int ret;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	c.kernel = s->kernel_path;
	c.args = s->args;
	c.mem_size = s->mem_size;
	c.console = console;
	c.timeout_us = (uint64_t)boot_ms * 1000;
	ret = rewind_create(&c, &vm);
	if (ret) {
		const char *dev = getenv("REWIND_KVM_DEVICE");

		if (!dev || !*dev)
			dev = "/dev/kvm";
		if (access(dev, R_OK | W_OK))
			return fail(why, n, ret, "creating a VM from %s: %s (%s: %s: rewind runs its "
				    "VMs on KVM)", s->kernel_path, rewind_strerror(ret), dev,
				    strerror(errno));
		return fail(why, n, ret, "creating a VM from %s: %s", s->kernel_path,
			    rewind_strerror(ret));
	}
	ret = rewind_run(vm, &ev);
	if (ret) {
		rewind_destroy(vm);
		return fail(why, n, ret, "running %s to its snapshot: %s", s->kernel_path,
			    rewind_strerror(ret));
	}
	if (ev.kind != REWIND_EV_SNAPSHOT) {
		rewind_destroy(vm);
		if (ev.kind == REWIND_EV_TIMEOUT)
			return fail(why, n, -ETIMEDOUT, "%s did not reach rw_snapshot() within %u ms",
				    s->kernel_path, boot_ms);
		if (ev.kind == REWIND_EV_EXIT)
			snprintf(what, sizeof(what), "it exited with status %lld", (long long)ev.status);
		else
			fuzz_share_describe(&ev, what, sizeof(what));
		return fail(why, n, -EPROTO, "%s ended before its snapshot (%s): a fuzz target calls "
			    "rw_snapshot(), then rw_payload() and rw_done() for each input",
			    s->kernel_path, what);
	}
	ret = rewind_set_timeout(vm, (uint64_t)s->timeout_ms * 1000);
	if (ret) {
		rewind_destroy(vm);
		return fail(why, n, ret, "setting the timeout: %s", rewind_strerror(ret));
	}
	*out = vm;
	return 0;
}

/* ------------------------------------------------------------ describe */

static const char *const vector_names[32] = {
	[0] = "#DE", [1] = "#DB", [2] = "NMI", [3] = "#BP", [4] = "#OF", [5] = "#BR",
	[6] = "#UD", [7] = "#NM", [8] = "#DF", [10] = "#TS", [11] = "#NP", [12] = "#SS",
	[13] = "#GP", [14] = "#PF", [16] = "#MF", [17] = "#AC", [18] = "#MC", [19] = "#XM",
	[20] = "#VE", [21] = "#CP",
};

const char *fuzz_share_event_name(enum rewind_event_kind kind)
{
	switch (kind) {
	case REWIND_EV_SNAPSHOT:
		return "snapshot";
	case REWIND_EV_DONE:
		return "done";
	case REWIND_EV_CRASH:
		return "crash";
	case REWIND_EV_EXIT:
		return "exit";
	case REWIND_EV_FATAL:
		return "fatal";
	case REWIND_EV_TIMEOUT:
		return "timeout";
	}
	return "unknown";
}

enum fuzz_outcome fuzz_share_outcome(enum rewind_event_kind kind)
{
	switch (kind) {
	case REWIND_EV_DONE:
		return FUZZ_NORMAL;
	case REWIND_EV_CRASH:
	case REWIND_EV_FATAL:
	case REWIND_EV_EXIT:
		return FUZZ_CRASH;
	case REWIND_EV_TIMEOUT:
		return FUZZ_TIMEOUT;
	case REWIND_EV_SNAPSHOT:
		break;
	}
	return FUZZ_UNEXPECTED;
}

const char *fuzz_share_outcome_name(enum fuzz_outcome o)
{
	switch (o) {
	case FUZZ_NORMAL:
		return "normal";
	case FUZZ_CRASH:
		return "crash";
	case FUZZ_TIMEOUT:
		return "timeout";
	case FUZZ_UNEXPECTED:
		break;
	}
	return "unexpected";
}

size_t fuzz_share_describe(const struct rewind_event *ev, char *buf, size_t n)
{
	int len = 0;

	if (!n)
		return 0;
	switch (ev->kind) {
	case REWIND_EV_DONE:
		len = snprintf(buf, n, "done: status %lld", (long long)ev->status);
		break;
	case REWIND_EV_CRASH:
		if (ev->vector != REWIND_NO_VECTOR) {
			const char *name = ev->vector < 32 ? vector_names[ev->vector] : NULL;
			len = snprintf(buf, n, "crash: exception %s (vector %u) at RIP 0x%llx, error "
				       "code 0x%llx, CR2 0x%llx", name ? name : "?", ev->vector,
				       (unsigned long long)ev->pc, (unsigned long long)ev->error_code,
				       (unsigned long long)ev->cr2);
		} else {
			len = snprintf(buf, n, "crash: the target reported code 0x%llx at 0x%llx",
				       (unsigned long long)ev->code, (unsigned long long)ev->pc);
		}
		break;
	case REWIND_EV_TIMEOUT:
		len = snprintf(buf, n, "timeout: %s", ev->message);
		break;
	case REWIND_EV_FATAL:
		len = snprintf(buf, n, "fatal: the VM died: %s", ev->message);
		break;
	case REWIND_EV_EXIT:
		len = snprintf(buf, n, "exit: the guest exited with status %lld instead of saying done",
			       (long long)ev->status);
		break;
	case REWIND_EV_SNAPSHOT:
		len = snprintf(buf, n, "snapshot: the root was taken");
		break;
	default:
		len = snprintf(buf, n, "unknown event %d", (int)ev->kind);
		break;
	}
	if (len < 0) {
		buf[0] = 0;
		return 0;
	}
	return (size_t)len < n ? (size_t)len : n - 1;
}
