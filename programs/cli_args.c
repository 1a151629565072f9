#include "cli_args.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

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
