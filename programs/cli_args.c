#include "cli_args.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "store.h"
#include "util.h"

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rw_error("%s: %s (see 'rewind %s --help')", cmd, msg, cmd);
	return EXIT_USAGE;
}

static int refuse(const char *cmd, const char *what, const char *path, const char *why)
{
	char p[1024];

	fprintf(stderr, "rewind: error: %s%s%s '%s': %s\n", cmd ? cmd : "", cmd ? ": " : "", what,
		rw_escape(path, p, sizeof(p)), why);
	return EXIT_USAGE;
}

static const char *errtext(int err)
{
	return err == EACCES || err == EPERM ? "permission denied" : strerror(err);
}

int cli_check_store(const char *cmd, const char *dir, bool must_exist)
{
	char path[PATH_MAX];
	struct stat st;

	if (stat(dir, &st)) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return refuse(cmd, "--store", dir, errno == ENOENT ? "no such store" : errtext(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return refuse(cmd, "--store", dir, "not a directory");
	if (access(dir, R_OK | X_OK))
		return refuse(cmd, "--store", dir, errtext(errno));
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (access(path, F_OK) == 0) {
		if (access(path, R_OK))
			return refuse(cmd, "--store", dir, errtext(errno));
		return 0;
	}
	if (must_exist)
		return refuse(cmd, "--store", dir, "not a rewind store (no data.mdb)");
	if (!rw_dir_is_empty(dir))
		return refuse(cmd, "--store", dir,
			      "not a rewind store and not empty: a new store needs an empty or "
			      "missing directory");
	return 0;
}

int cli_check_input_file(const char *cmd, const char *what, const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return refuse(cmd, what, path, errtext(errno));
	if (S_ISDIR(st.st_mode))
		return refuse(cmd, what, path, "a directory, not a file");
	if (access(path, R_OK))
		return refuse(cmd, what, path, errtext(errno));
	return 0;
}

int cli_check_output_file(const char *cmd, const char *what, const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (!*path)
		return refuse(cmd, what, path, "empty path");
	if (!slash)
		return 0;
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (!dir[0])
		return 0;
	if (stat(dir, &st))
		return refuse(cmd, what, path, errno == ENOENT ? "its directory does not exist"
							      : errtext(errno));
	if (!S_ISDIR(st.st_mode))
		return refuse(cmd, what, path, "its directory is not a directory");
	return 0;
}

bool cli_path_missing(const char *path)
{
	struct stat st;

	return stat(path, &st) != 0 && errno == ENOENT;
}

int cli_checkpoint_arg(const char *cmd, struct store *s, const char *arg, uint64_t *id)
{
	uint64_t ids[8];
	size_t n = 0;
	char l[512], list[256] = "";
	int rc;

	if (rw_parse_uint(arg, 1, UINT64_MAX, id) == 0)
		return 0;
	rc = store_find_label(s, arg, ids, 8, &n);
	if (rc) {
		fprintf(stderr, "rewind: error: %s: looking for label '%s': %s\n", cmd,
			rw_escape(arg, l, sizeof(l)), rw_strerror(rc));
		return 1;
	}
	if (n == 1) {
		*id = ids[0];
		return 0;
	}
	if (n == 0) {
		fprintf(stderr, "rewind: error: %s: '%s' is neither a checkpoint id nor the label "
			"of a checkpoint\n", cmd, rw_escape(arg, l, sizeof(l)));
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < n && i < 8; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%" PRIu64,
			 i ? ", " : "", ids[i]);
	fprintf(stderr, "rewind: error: %s: label '%s' names %zu checkpoints (%s%s): give an id\n",
		cmd, rw_escape(arg, l, sizeof(l)), n, list, n > 8 ? ", ..." : "");
	return EXIT_USAGE;
}

void cli_bar_cb(void *arg, uint64_t done, uint64_t total)
{
	struct cli_bar *b = arg;
	int pct = total ? (int)(done * 100 / total) : 100;
	char line[32];
	int fill = pct / 4;

	if (!b->on || pct == b->last)
		return;
	b->last = pct;
	memset(line, '#', (size_t)fill);
	memset(line + fill, '.', (size_t)(25 - fill));
	line[25] = 0;
	fprintf(stderr, "\r%s [%s] %3d%%", b->label, line, pct);
	fflush(stderr);
}

void cli_bar_clear(struct cli_bar *b)
{
	if (b->on && b->last >= 0) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	b->last = -1;
}

void cli_bar_end(struct cli_bar *b)
{
	if (b->on && b->last >= 0)
		fputc('\n', stderr);
	b->last = -1;
}
