/*
 * cli_ctl.c - `rewind ctl PATH COMMAND [ARGS] [--json]`: one request to a
 * VM's control socket, one reply printed (protocol in ckpt/control.h).
 */
#include "cli_ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "util.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
/* Longest reply accepted; a status with hook fields stays far below it. */
#define CTL_REPLY_MAX (16 * 1024 * 1024)

struct ctl_cmd {
	const char *name;
	const char *args;   /* usage text of the arguments */
	const char *help;
	int min_args, max_args;
	/* add the arguments to req; a usage error is printed and gives -EINVAL */
	int (*build)(json_t *req, char **args, int nargs);
	void (*print)(json_t *reply);
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rw_error("ctl: %s (see 'rewind ctl --help')", msg);
	return EXIT_USAGE;
}

/* ================================================================ output */

static uint64_t jget_u64(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v)
							       : 0;
}


/* "7 "label" (parent 6): 123 dirty pages, ..., persist 12 ms" from a report object. */
static void fmt_report(json_t *r, char *buf, size_t len)
{
	const char *label = json_string_value(json_object_get(r, "label"));
	json_t *err = json_object_get(r, "error");
	double persist = json_number_value(json_object_get(r, "persist_ms"));
	uint64_t parent = jget_u64(r, "parent");
	char lab[160] = "", par[48], bytes[32];

	if (label && label[0])
		snprintf(lab, sizeof(lab), " \"%s\"", label);
	if (parent)
		snprintf(par, sizeof(par), "parent %" PRIu64, parent);
	else
		snprintf(par, sizeof(par), "full");
	rw_format_size(jget_u64(r, "bytes_written"), bytes, sizeof(bytes));
	if (json_is_string(err)) {
		snprintf(buf, len, "failed (%s)%s, pause %" PRIu64 " us", json_string_value(err), lab,
			 jget_u64(r, "pause_us"));
		return;
	}
	snprintf(buf, len,
		 "%" PRIu64 "%s (%s): %" PRIu64 " dirty pages, %" PRIu64 " new chunks, %" PRIu64
		 " dedup hits, %" PRIu64 " zero pages, %s written, pause %" PRIu64
		 " us, persist %.*f ms",
		 jget_u64(r, "id"), lab, par, jget_u64(r, "dirty_pages"), jget_u64(r, "new_chunks"),
		 jget_u64(r, "dedup_hits"), jget_u64(r, "zero_pages"), bytes, jget_u64(r, "pause_us"),
		 persist < 10 ? 2 : 0, persist);
}

static void print_checkpoint(json_t *reply)
{
	char line[512];

	fmt_report(reply, line, sizeof(line));
	printf("checkpoint %s\n", line);
}

static void print_rollback(json_t *reply)
{
	printf("rolled back to checkpoint %" PRIu64 "\n", jget_u64(reply, "id"));
}

static void print_pin(json_t *reply)
{
	printf("checkpoint %" PRIu64 " %s\n", jget_u64(reply, "id"),
	       json_is_true(json_object_get(reply, "pinned")) ? "pinned: retention keeps it"
							       : "unpinned");
}

static void print_pause(json_t *reply)
{
	printf("paused\n");
}

static void print_resume(json_t *reply)
{
	printf("resumed\n");
}

static void print_quit(json_t *reply)
{
	printf("the VM is stopping\n");
}

/* Any JSON value as one human-readable string (malloc'ed). */
static char *value_text(json_t *v)
{
	char buf[64];

	switch (json_typeof(v)) {
	case JSON_STRING:
		return strdup(json_string_value(v));
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return strdup(buf);
	case JSON_REAL:
		snprintf(buf, sizeof(buf), "%g", json_real_value(v));
		return strdup(buf);
	case JSON_TRUE:
		return strdup("yes");
	case JSON_FALSE:
		return strdup("no");
	case JSON_NULL:
		return strdup("none");
	default:
		return json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(6));
	}
}

struct kv {
	char *key;
	char *val;
};

#define STATUS_MAX_LINES 64

static void kv_add(struct kv *kv, size_t *n, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Append one "key: value" line to kv (STATUS_MAX_LINES entries). */
static void kv_add(struct kv *kv, size_t *n, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (*n == STATUS_MAX_LINES)
		return;
	kv[*n].key = strdup(key);
	va_start(ap, fmt);
	if (vasprintf(&kv[*n].val, fmt, ap) < 0)
		kv[*n].val = NULL;
	va_end(ap);
	(*n)++;
}

static void print_status(json_t *reply)
{
	static const char *const shown[] = { "ok", "cmd", "state", "running", "paused", "ncpus",
					     "mem_size", "dirty_log", "store_dir", "store_bytes",
					     "checkpoints", "last_id", "head_id", "last" };
	struct kv kv[STATUS_MAX_LINES];
	size_t n = 0, width = 0;
	char mem[32], sz[32], line[400];
	const char *key, *str;
	json_t *v, *last = json_object_get(reply, "last");

	str = json_string_value(json_object_get(reply, "state"));
	kv_add(kv, &n, "state", "%s", str ? str : "?");
	kv_add(kv, &n, "vcpus", "%" PRIu64, jget_u64(reply, "ncpus"));
	rw_format_size(jget_u64(reply, "mem_size"), mem, sizeof(mem));
	kv_add(kv, &n, "memory", "%s", mem);
	str = json_string_value(json_object_get(reply, "dirty_log"));
	kv_add(kv, &n, "dirty log", "%s", str ? str : "?");
	str = json_string_value(json_object_get(reply, "store_dir"));
	if (str) {
		rw_format_size(jget_u64(reply, "store_bytes"), sz, sizeof(sz));
		kv_add(kv, &n, "store", "%s (%s)", str, sz);
	} else {
		kv_add(kv, &n, "store", "none");
	}
	kv_add(kv, &n, "checkpoints", "%" PRIu64, jget_u64(reply, "checkpoints"));
	if (json_is_object(last)) {
		fmt_report(last, line, sizeof(line));
		kv_add(kv, &n, "last checkpoint", "%s", line);
	} else {
		kv_add(kv, &n, "last checkpoint", "none");
	}
	if (jget_u64(reply, "head_id"))
		kv_add(kv, &n, "head", "%" PRIu64, jget_u64(reply, "head_id"));
	else
		kv_add(kv, &n, "head", "none (the boot state)");

	/* fields this client does not know (added by the VM's status hook) */
	json_object_foreach(reply, key, v) {
		bool known = false;

		for (size_t i = 0; i < ARRAY_SIZE(shown); i++)
			known = known || strcmp(shown[i], key) == 0;
		if (known || n == STATUS_MAX_LINES)
			continue;
		kv[n].key = strdup(key);
		for (char *p = kv[n].key; p && *p; p++)
			if (*p == '_')
				*p = ' ';
		kv[n++].val = value_text(v);
	}
	for (size_t i = 0; i < n; i++)
		if (kv[i].key && strlen(kv[i].key) > width)
			width = strlen(kv[i].key);
	for (size_t i = 0; i < n; i++) {
		if (kv[i].key && kv[i].val)
			printf("%s:%*s %s\n", kv[i].key, (int)(width - strlen(kv[i].key)), "",
			       kv[i].val);
		free(kv[i].key);
		free(kv[i].val);
	}
}

/* ================================================================ requests */

static int build_none(json_t *req, char **args, int nargs)
{
	return 0;
}

static int build_checkpoint(json_t *req, char **args, int nargs)
{
	json_t *l;

	if (nargs == 0)
		return 0;
	l = json_string(args[0]);
	if (!l) {
		usage_error("checkpoint: LABEL must be UTF-8 text");
		return -EINVAL;
	}
	json_object_set_new(req, "label", l);
	return 0;
}

/* A checkpoint by id, or by label when the argument is not a number. */
static int build_id(const char *cmd, json_t *req, const char *arg)
{
	uint64_t id;
	json_t *l;

	if (rw_parse_uint(arg, 1, INT64_MAX, &id) == 0) {
		json_object_set_new(req, "id", json_integer((json_int_t)id));
		return 0;
	}
	if (!*arg || arg[0] == '-' || (arg[0] >= '0' && arg[0] <= '9') || !(l = json_string(arg))) {
		usage_error("%s: give a checkpoint id (1 or more) or a label (got '%s')", cmd, arg);
		return -EINVAL;
	}
	json_object_set_new(req, "label", l);
	return 0;
}

static int build_rollback(json_t *req, char **args, int nargs)
{
	return build_id("rollback", req, args[0]);
}

static int build_pin(json_t *req, char **args, int nargs)
{
	return build_id("pin", req, args[0]);
}

static int build_unpin(json_t *req, char **args, int nargs)
{
	return build_id("unpin", req, args[0]);
}

static const struct ctl_cmd ctl_cmds[] = {
	{ "checkpoint", "[LABEL]", "take a checkpoint, reply once it is stored", 0, 1,
	  build_checkpoint, print_checkpoint },
	{ "rollback", "ID|LABEL", "bring the VM back to a checkpoint", 1, 1, build_rollback,
	  print_rollback },
	{ "pin", "ID|LABEL", "keep a checkpoint whatever --keep says", 1, 1, build_pin, print_pin },
	{ "unpin", "ID|LABEL", "let retention delete it again", 1, 1, build_unpin, print_pin },
	{ "pause", "", "stop the vCPUs", 0, 0, build_none, print_pause },
	{ "resume", "", "let paused vCPUs run again", 0, 0, build_none, print_resume },
	{ "status", "", "state, memory, store, last checkpoint", 0, 0, build_none, print_status },
	{ "quit", "", "stop the VM", 0, 0, build_none, print_quit },
};

void cli_ctl_usage(FILE *f)
{
	fprintf(f, "  rewind ctl PATH COMMAND [ARGS] [--json]\n"
		   "      talk to the control socket of a VM run with --control PATH:\n");
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++) {
		char head[64];

		snprintf(head, sizeof(head), "%s %s", ctl_cmds[i].name, ctl_cmds[i].args);
		fprintf(f, "        %-20s %s\n", head, ctl_cmds[i].help);
	}
	fprintf(f, "      --json            print the VM's reply as one JSON line\n"
		   "      exit status: 0 done; 1 the VM refused or cannot be reached; 2 usage error\n");
}

/* ================================================================ the exchange */

/* Connect, send line, read one reply line into *reply (malloc'ed, no newline). */
static int exchange(const char *path, const char *line, char **reply)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(line), off = 0, cap = 0, rlen = 0;
	char *buf = NULL;
	int fd, ret;

	*reply = NULL;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		rw_error("ctl: socket: %s", strerror(-ret));
		return ret;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		rw_error("ctl: cannot connect to control socket %s: %s", path, strerror(-ret));
		goto out;
	}
	while (off < len) {
		ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			rw_error("ctl: sending to control socket %s: %s", path, strerror(-ret));
			goto out;
		}
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		char *nl;
		ssize_t n;

		if (cap - rlen < 4096) {
			char *p;

			if (cap >= CTL_REPLY_MAX) {
				ret = RW_ELIMIT;
				rw_error("ctl: the reply from control socket %s is longer than %d bytes",
					 path, CTL_REPLY_MAX);
				goto out;
			}
			cap = cap ? cap * 2 : 8192;
			p = realloc(buf, cap);
			if (!p) {
				ret = -ENOMEM;
				rw_error("ctl: out of memory");
				goto out;
			}
			buf = p;
		}
		n = recv(fd, buf + rlen, cap - rlen - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			rw_error("ctl: reading from control socket %s: %s", path, strerror(-ret));
			goto out;
		}
		if (n == 0) {
			ret = -ECONNRESET;
			rw_error("ctl: control socket %s closed the connection without a reply", path);
			goto out;
		}
		nl = memchr(buf + rlen, '\n', (size_t)n);
		rlen += (size_t)n;
		if (nl) {
			*nl = 0;
			*reply = buf;
			buf = NULL;
			ret = 0;
			goto out;
		}
	}
out:
	free(buf);
	close(fd);
	return ret;
}

int cli_ctl_main(int argc, char **argv)
{
	const struct ctl_cmd *cmd = NULL;
	char *pos[8], *line = NULL, *reply_text = NULL;
	int npos = 0, rc = EXIT_RUNTIME, ret;
	bool json = false, opts_done = false;
	json_t *req = NULL, *reply = NULL;
	json_error_t jerr;
	struct sockaddr_un sa;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!opts_done && a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
			if (strcmp(a, "--") == 0) {
				opts_done = true;
			} else if (strcmp(a, "--json") == 0) {
				json = true;
			} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
				printf("usage:\n");
				cli_ctl_usage(stdout);
				return 0;
			} else {
				return usage_error("unknown option '%s'", a);
			}
			continue;
		}
		if (npos == (int)ARRAY_SIZE(pos))
			return usage_error("too many arguments");
		pos[npos++] = argv[i];
	}
	if (npos < 1)
		return usage_error("missing the control socket PATH");
	if (npos < 2)
		return usage_error("missing a COMMAND (checkpoint, rollback, pin, unpin, pause, resume, status, quit)");
	if (!pos[0][0] || strlen(pos[0]) >= sizeof(sa.sun_path))
		return usage_error("control socket path '%s' is %s (at most %zu bytes)", pos[0],
				   pos[0][0] ? "too long" : "empty", sizeof(sa.sun_path) - 1);
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
		if (strcmp(ctl_cmds[i].name, pos[1]) == 0)
			cmd = &ctl_cmds[i];
	if (!cmd)
		return usage_error("unknown command '%s'", pos[1]);
	if (npos - 2 < cmd->min_args)
		return usage_error("%s needs %s", cmd->name, cmd->args);
	if (npos - 2 > cmd->max_args)
		return usage_error("unexpected argument '%s' after %s", pos[2 + cmd->max_args],
				   cmd->name);

	req = json_object();
	if (!req || json_object_set_new(req, "cmd", json_string(cmd->name))) {
		rw_error("ctl: out of memory");
		goto out;
	}
	if (cmd->build(req, pos + 2, npos - 2)) {
		rc = EXIT_USAGE;
		goto out;
	}
	line = json_dumps(req, JSON_COMPACT);
	if (!line) {
		rw_error("ctl: out of memory");
		goto out;
	}
	{
		size_t n = strlen(line);
		char *p = realloc(line, n + 2);

		if (!p) {
			rw_error("ctl: out of memory");
			goto out;
		}
		line = p;
		memcpy(line + n, "\n", 2);
	}
	ret = exchange(pos[0], line, &reply_text);
	if (ret) {
		/* no socket at that path is a wrong argument, not a failure */
		if (ret == -ENOENT || ret == -ENOTDIR || ret == -ENOTSOCK)
			rc = EXIT_USAGE;
		goto out;
	}
	reply = json_loads(reply_text, 0, &jerr);
	if (!json_is_object(reply) || !json_is_boolean(json_object_get(reply, "ok"))) {
		rw_error("ctl: control socket %s sent a malformed reply: %.200s", pos[0], reply_text);
		goto out;
	}
	if (json) {
		printf("%s\n", reply_text);
		rc = json_is_true(json_object_get(reply, "ok")) ? 0 : EXIT_RUNTIME;
		goto out;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *msg = json_string_value(json_object_get(reply, "message"));
		const char *err = json_string_value(json_object_get(reply, "error"));

		rw_error("%s%s%s%s", msg ? msg : "the VM refused the request", err ? " (" : "",
			 err ? err : "", err ? ")" : "");
		goto out;
	}
	cmd->print(reply);
	rc = 0;
out:
	fflush(stdout);
	json_decref(reply);
	json_decref(req);
	free(reply_text);
	free(line);
	return rc;
}
