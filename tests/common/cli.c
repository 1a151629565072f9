#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int append(char **buf, size_t *len, const char *data, size_t n)
{
	char *p = realloc(*buf, *len + n + 1);

	if (!p)
		return -ENOMEM;
	memcpy(p + *len, data, n);
	*len += n;
	p[*len] = 0;
	*buf = p;
	return 0;
}

int cli_run(const char *const *argv, const char *stdin_data, unsigned timeout_s, unsigned uid,
	    struct cli_result *res)
{
	int in[2], out[2], err[2];
	pid_t pid;
	size_t argc = 0;

	memset(res, 0, sizeof(*res));
	res->out = calloc(1, 1);
	res->err = calloc(1, 1);
	while (argv[argc])
		argc++;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		const char **av = calloc(argc + 1, sizeof(*av));
		av[0] = REWIND_BIN;
		for (size_t i = 1; i < argc; i++)
			av[i] = argv[i];
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (uid && (setgid(uid) || setuid(uid)))
			_exit(126);
		execv(REWIND_BIN, (char *const *)av);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (stdin_data) {
		size_t n = strlen(stdin_data);
		if (write(in[1], stdin_data, n) != (ssize_t)n) {
			/* the child may have exited early; its status says why */
		}
	}
	close(in[1]);

	time_t deadline = time(NULL) + timeout_s;
	struct pollfd pfd[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
	int open_fds = 2;
	while (open_fds > 0) {
		int left = (int)(deadline - time(NULL));
		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(pfd, 2, left * 1000) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			char buf[4096];
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(pfd[i].fd, buf, sizeof(buf));
			if (n <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
			} else if (i == 0) {
				append(&res->out, &res->out_len, buf, (size_t)n);
			} else {
				append(&res->err, &res->err_len, buf, (size_t)n);
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	int st;
	waitpid(pid, &st, 0);
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

void cli_result_free(struct cli_result *res)
{
	free(res->out);
	free(res->err);
	memset(res, 0, sizeof(*res));
}

unsigned cli_count_lines(const char *s)
{
	unsigned n = 0;
	size_t len = strlen(s);

	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n')
			n++;
	if (len && s[len - 1] != '\n')
		n++;
	return n;
}
