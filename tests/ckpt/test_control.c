/*
 * The control socket, driven as a client against a real machine running the
 * counter guest: every command, every kind of malformed input (each answered
 * with an error while the VM keeps running), several clients at once, the
 * socket's mode and file handling; then `rewind ctl` through the binary.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "machine.h"
#include "testutil.h"
#include "util.h"

/* ================================================================ fixture */

struct fx {
	const char *dir;
	char sock[512];
	char store[512];
	struct machine *m;
	struct control *c;
};

/* A counter guest that runs for minutes, with a store and a control socket. */
static void fx_start(struct fx *f, const char *tag)
{
	struct vm_config cfg;
	struct machine_opts o = { 0 };
	int ret;

	rw_test_require_kvm();
	memset(f, 0, sizeof(*f));
	f->dir = rw_test_tmpdir(tag);
	config_init(&cfg);
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", rw_test_guest("counter"));
	snprintf(cfg.args, sizeof(cfg.args), "n=4000000000");
	snprintf(cfg.serial_out, sizeof(cfg.serial_out), "%s/console.txt", f->dir);
	cfg.serial_in = false;
	snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
	snprintf(f->sock, sizeof(f->sock), "%s/ctl.sock", f->dir);
	o.store_dir = f->store;
	o.console_stdin = false;
	ret = machine_create(&cfg, &o, &f->m);
	cr_assert_eq(ret, 0, "machine_create: %s", rw_strerror(ret));
	ret = machine_start(f->m);
	cr_assert_eq(ret, 0, "machine_start: %s", rw_strerror(ret));
	ret = control_start(f->m, f->sock, &f->c);
	cr_assert_eq(ret, 0, "control_start: %s", rw_strerror(ret));
}

static void fx_stop(struct fx *f)
{
	control_stop(f->c);
	machine_destroy(f->m);
	cr_expect_neq(access(f->sock, F_OK), 0, "control_stop left the socket file behind");
}

/* ================================================================ client */

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
};

static int sock_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* A non-blocking connect: the fd once connected or in progress, or -errno. */
static int connect_nonblock(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	size_t n = strlen(path);

	cr_assert_geq(fd, 0);
	cr_assert_lt(n, sizeof(sa.sun_path), "socket path too long: %s", path);
	memcpy(sa.sun_path, path, n + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void conn_open(struct conn *c, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->fd = sock_connect(path);
	cr_assert_geq(c->fd, 0, "connect %s: %s", path, strerror(-c->fd));
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	free(c->buf);
	c->fd = -1;
	c->buf = NULL;
}

/* Send raw bytes; returns 0 or -errno (EPIPE once the server hung up). */
static int conn_send(struct conn *c, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Next reply line (malloc'ed, newline stripped), or NULL at end of stream. */
static char *conn_line(struct conn *c)
{
	for (;;) {
		char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - c->buf);
			char *line = strndup(c->buf, l);

			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			return line;
		}
		if (c->cap - c->len < 4096) {
			c->cap = c->cap ? c->cap * 2 : 8192;
			c->buf = realloc(c->buf, c->cap);
			cr_assert_not_null(c->buf);
		}
		cr_assert_eq(poll(&pfd, 1, 120000), 1, "no reply within 120 s");
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
}

/* The next reply, parsed; it must be one JSON object with a boolean "ok". */
static json_t *conn_reply(struct conn *c)
{
	json_error_t jerr;
	char *line = conn_line(c);
	json_t *j;

	cr_assert_not_null(line, "the server closed the connection without a reply");
	j = json_loads(line, 0, &jerr);
	cr_assert_not_null(j, "reply is not JSON (%s): %s", jerr.text, line);
	cr_assert(json_is_object(j), "reply is not an object: %s", line);
	cr_assert(json_is_boolean(json_object_get(j, "ok")), "reply has no boolean ok: %s", line);
	free(line);
	return j;
}

static json_t *conn_req(struct conn *c, const char *line)
{
	cr_assert_eq(conn_send(c, line, strlen(line)), 0);
	cr_assert_eq(conn_send(c, "\n", 1), 0);
	return conn_reply(c);
}

/* One request on a fresh connection. */
static json_t *req_once(struct fx *f, const char *line)
{
	struct conn c;
	json_t *j;

	conn_open(&c, f->sock);
	j = conn_req(&c, line);
	conn_close(&c);
	return j;
}

static bool is_ok(json_t *j)
{
	return json_is_true(json_object_get(j, "ok"));
}

static const char *jstr(json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key));
}

static json_int_t jint(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	cr_assert(json_is_integer(v), "\"%s\" is not an integer", key);
	return json_integer_value(v);
}

static void expect_ok(json_t *j, const char *cmd)
{
	char *s = json_dumps(j, JSON_COMPACT);

	cr_assert(is_ok(j), "%s failed: %s", cmd, s);
	cr_assert_str_eq(jstr(j, "cmd"), cmd, "%s", s);
	free(s);
}

/* ok:false with the given error name and a non-empty message */
static void expect_error(json_t *j, const char *err, const char *what)
{
	char *s = json_dumps(j, JSON_COMPACT);

	cr_expect(json_is_false(json_object_get(j, "ok")), "%s: not refused: %s", what, s);
	cr_expect(jstr(j, "error") && strcmp(jstr(j, "error"), err) == 0,
		  "%s: error is not %s: %s", what, err, s);
	cr_expect(jstr(j, "message") && jstr(j, "message")[0], "%s: no message: %s", what, s);
	free(s);
}

static json_t *status(struct fx *f)
{
	json_t *j = req_once(f, "{\"cmd\":\"status\"}");

	expect_ok(j, "status");
	return j;
}

static void expect_running(struct fx *f)
{
	json_t *j = status(f);

	cr_expect_str_eq(jstr(j, "state"), "running");
	json_decref(j);
}

static uint64_t checkpoint(struct fx *f, const char *label)
{
	char line[256];
	json_t *j;
	uint64_t id;

	snprintf(line, sizeof(line), "{\"cmd\":\"checkpoint\",\"label\":\"%s\"}", label);
	j = req_once(f, line);
	expect_ok(j, "checkpoint");
	id = (uint64_t)jint(j, "id");
	json_decref(j);
	return id;
}

/* ================================================================ commands */

Test(control, status_has_every_field)
{
	struct fx f;
	json_t *j;

	fx_start(&f, "ctl-status");
	j = status(&f);
	cr_expect_str_eq(jstr(j, "state"), "running");
	cr_expect(json_is_true(json_object_get(j, "running")));
	cr_expect(json_is_false(json_object_get(j, "paused")));
	cr_expect_eq(jint(j, "ncpus"), 1);
	cr_expect_eq(jint(j, "mem_size"), (json_int_t)(64 * MiB));
	cr_expect_str_eq(jstr(j, "dirty_log"), "ring");
	cr_expect_str_eq(jstr(j, "store_dir"), f.store);
	cr_expect_geq(jint(j, "store_bytes"), 0);
	cr_expect_eq(jint(j, "checkpoints"), 0);
	cr_expect(json_is_null(json_object_get(j, "last_id")));
	cr_expect(json_is_null(json_object_get(j, "head_id")));
	cr_expect(json_is_null(json_object_get(j, "last")));
	json_decref(j);
	fx_stop(&f);
}

Test(control, checkpoints_chain_and_status_reports_the_last)
{
	struct fx f;
	json_t *j, *last;
	uint64_t first, second;
	static const char *const fields[] = { "dirty_pages", "new_chunks", "dedup_hits",
					      "zero_pages", "bytes_written", "pause_us" };

	fx_start(&f, "ctl-ckpt");
	j = req_once(&f, "{\"cmd\":\"checkpoint\",\"label\":\"one\"}");
	expect_ok(j, "checkpoint");
	first = (uint64_t)jint(j, "id");
	cr_expect_gt(first, 0);
	cr_expect(json_is_null(json_object_get(j, "parent")), "the first checkpoint has a parent");
	cr_expect_str_eq(jstr(j, "label"), "one");
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		cr_expect_geq(jint(j, fields[i]), 0, "%s", fields[i]);
	cr_expect_gt(jint(j, "dirty_pages"), 0, "a full checkpoint captured no pages");
	cr_expect_gt(jint(j, "bytes_written"), 0);
	cr_expect(json_is_number(json_object_get(j, "persist_ms")));
	json_decref(j);

	/* no label: allowed */
	j = req_once(&f, "{\"cmd\":\"checkpoint\"}");
	expect_ok(j, "checkpoint");
	second = (uint64_t)jint(j, "id");
	cr_expect_gt(second, first);
	cr_expect_eq(jint(j, "parent"), (json_int_t)first);
	json_decref(j);

	j = status(&f);
	cr_expect_eq(jint(j, "checkpoints"), 2);
	cr_expect_eq(jint(j, "last_id"), (json_int_t)second);
	cr_expect_eq(jint(j, "head_id"), (json_int_t)second);
	cr_expect_gt(jint(j, "store_bytes"), 0);
	last = json_object_get(j, "last");
	cr_assert(json_is_object(last));
	cr_expect_eq(jint(last, "id"), (json_int_t)second);
	cr_expect_eq(jint(last, "parent"), (json_int_t)first);
	cr_expect_null(json_object_get(last, "error"));
	json_decref(j);
	fx_stop(&f);
}

Test(control, pause_and_resume)
{
	struct fx f;
	json_t *j;

	fx_start(&f, "ctl-pause");
	j = req_once(&f, "{\"cmd\":\"pause\"}");
	expect_ok(j, "pause");
	cr_expect(json_is_true(json_object_get(j, "paused")));
	json_decref(j);
	j = status(&f);
	cr_expect_str_eq(jstr(j, "state"), "paused");
	cr_expect(json_is_true(json_object_get(j, "paused")));
	cr_expect(json_is_true(json_object_get(j, "running")));
	json_decref(j);

	j = req_once(&f, "{\"cmd\":\"resume\"}");
	expect_ok(j, "resume");
	cr_expect(json_is_false(json_object_get(j, "paused")));
	json_decref(j);
	expect_running(&f);
	fx_stop(&f);
}

Test(control, rollback_to_a_checkpoint_and_to_a_missing_one)
{
	struct fx f;
	char line[128];
	uint64_t first, second;
	json_t *j;

	fx_start(&f, "ctl-rollback");
	first = checkpoint(&f, "a");
	second = checkpoint(&f, "b");
	cr_assert_gt(second, first);

	snprintf(line, sizeof(line), "{\"cmd\":\"rollback\",\"id\":%llu}", (unsigned long long)first);
	j = req_once(&f, line);
	expect_ok(j, "rollback");
	cr_expect_eq(jint(j, "id"), (json_int_t)first);
	json_decref(j);
	j = status(&f);
	cr_expect_eq(jint(j, "head_id"), (json_int_t)first);
	cr_expect_str_eq(jstr(j, "state"), "running");
	json_decref(j);

	j = req_once(&f, "{\"cmd\":\"rollback\",\"id\":999999}");
	expect_error(j, "RW_ENOTFOUND", "rollback to a missing checkpoint");
	cr_expect(strstr(jstr(j, "message"), "999999") != NULL, "%s", jstr(j, "message"));
	json_decref(j);
	expect_running(&f);
	fx_stop(&f);
}

/* ================================================================ bad input */

Test(control, malformed_lines_get_an_error_and_change_nothing)
{
	static const char *const bad[] = {
		"",
		"{",
		"[]",
		"42",
		"\"status\"",
		"null",
		"{}",
		"{\"cmd\":7}",
		"{\"cmd\":null}",
		"{\"cmd\":\"frob\"}",
		"{\"cmd\":\"STATUS\"}",
		"{\"cmd\":\"status\",\"cmd\":\"quit\"}",
		"{\"cmd\":\"status\",\"extra\":1}",
		"{\"cmd\":\"quit\",\"now\":true}",
		"{\"cmd\":\"rollback\"}",
		"{\"cmd\":\"rollback\",\"id\":\"x\"}",
		"{\"cmd\":\"rollback\",\"id\":\"1\"}",
		"{\"cmd\":\"rollback\",\"id\":0}",
		"{\"cmd\":\"rollback\",\"id\":-3}",
		"{\"cmd\":\"rollback\",\"id\":1.5}",
		"{\"cmd\":\"rollback\",\"id\":null}",
		"{\"cmd\":\"rollback\",\"id\":99999999999999999999999}",
		"{\"cmd\":\"checkpoint\",\"label\":5}",
		"{\"cmd\":\"checkpoint\",\"label\":[\"x\"]}",
		"{\"cmd\":\"checkpoint\",\"label\":\"a\\u0000b\"}",
		"{\"cmd\":\"status\"} trailing",
		"\xff\xfe{}",
	};
	struct fx f;
	struct conn c;
	json_t *j;

	fx_start(&f, "ctl-bad");
	conn_open(&c, f.sock);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		j = conn_req(&c, bad[i]);
		expect_error(j, "EINVAL", bad[i]);
		json_decref(j);
		/* the same connection still works */
		j = conn_req(&c, "{\"cmd\":\"status\"}");
		expect_ok(j, "status");
		json_decref(j);
	}
	/* a label longer than a checkpoint keeps: refused by size, nothing taken */
	{
		char line[512];

		snprintf(line, sizeof(line), "{\"cmd\":\"checkpoint\",\"label\":\"%0300d\"}", 0);
		j = conn_req(&c, line);
		expect_error(j, "RW_ELIMIT", "long label");
		json_decref(j);
	}
	conn_close(&c);
	j = status(&f);
	cr_expect_str_eq(jstr(j, "state"), "running");
	cr_expect_eq(jint(j, "checkpoints"), 0, "a refused request took a checkpoint");
	json_decref(j);
	fx_stop(&f);
}

Test(control, a_huge_line_is_refused_and_the_connection_dropped)
{
	size_t len = 1024 * 1024;
	char *big = malloc(len + 1);
	struct fx f;
	struct conn c;
	json_t *j;
	int ret;

	cr_assert_not_null(big);
	memset(big, 'x', len);
	big[len] = '\n';
	fx_start(&f, "ctl-huge");
	conn_open(&c, f.sock);
	/* the server stops reading at the cap, so the rest may meet a closed socket */
	ret = conn_send(&c, big, len + 1);
	cr_expect(ret == 0 || ret == -EPIPE || ret == -ECONNRESET, "send: %s", strerror(-ret));
	j = conn_reply(&c);
	expect_error(j, "RW_ELIMIT", "1 MiB line");
	json_decref(j);
	cr_expect_null(conn_line(&c), "the connection stayed open after an over-long line");
	conn_close(&c);

	/* the same with a valid JSON string that is too long */
	{
		static const char head[] = "{\"cmd\":\"checkpoint\",\"label\":\"";

		memcpy(big, head, sizeof(head) - 1);
	}
	memcpy(big + len - 2, "\"}", 2);
	conn_open(&c, f.sock);
	ret = conn_send(&c, big, len + 1);
	cr_expect(ret == 0 || ret == -EPIPE || ret == -ECONNRESET, "send: %s", strerror(-ret));
	j = conn_reply(&c);
	expect_error(j, "RW_ELIMIT", "1 MiB request");
	json_decref(j);
	conn_close(&c);
	free(big);

	j = status(&f);
	cr_expect_str_eq(jstr(j, "state"), "running");
	cr_expect_eq(jint(j, "checkpoints"), 0);
	json_decref(j);
	fx_stop(&f);
}

Test(control, requests_are_answered_in_order_and_crlf_is_accepted)
{
	struct fx f;
	struct conn c;
	json_t *j;
	static const char batch[] = "{\"cmd\":\"status\"}\n{\"cmd\":\"frob\"}\r\n"
				    "{\"cmd\":\"pause\"}\r\n{\"cmd\":\"resume\"}\n";

	fx_start(&f, "ctl-order");
	conn_open(&c, f.sock);
	cr_assert_eq(conn_send(&c, batch, sizeof(batch) - 1), 0);
	j = conn_reply(&c);
	expect_ok(j, "status");
	json_decref(j);
	j = conn_reply(&c);
	expect_error(j, "EINVAL", "frob");
	json_decref(j);
	j = conn_reply(&c);
	expect_ok(j, "pause");
	json_decref(j);
	j = conn_reply(&c);
	expect_ok(j, "resume");
	json_decref(j);
	conn_close(&c);
	expect_running(&f);
	fx_stop(&f);
}

Test(control, clients_that_vanish_hurt_nothing)
{
	struct fx f;
	struct conn c;

	fx_start(&f, "ctl-vanish");
	/* half a request, then gone */
	conn_open(&c, f.sock);
	cr_assert_eq(conn_send(&c, "{\"cmd\":\"sta", 11), 0);
	conn_close(&c);
	/* a whole request, gone before the reply */
	conn_open(&c, f.sock);
	cr_assert_eq(conn_send(&c, "{\"cmd\":\"checkpoint\"}\n", 21), 0);
	conn_close(&c);
	/* connect and leave */
	conn_open(&c, f.sock);
	conn_close(&c);
	/* a request, then end of input: still answered */
	conn_open(&c, f.sock);
	cr_assert_eq(conn_send(&c, "{\"cmd\":\"status\"}\n", 17), 0);
	shutdown(c.fd, SHUT_WR);
	json_t *j = conn_reply(&c);
	expect_ok(j, "status");
	json_decref(j);
	cr_expect_null(conn_line(&c));
	conn_close(&c);

	expect_running(&f);
	fx_stop(&f);
}

Test(control, a_last_request_without_newline_is_answered)
{
	struct fx f;
	struct conn c;

	fx_start(&f, "ctl-nonl");
	conn_open(&c, f.sock);
	cr_assert_eq(conn_send(&c, "{\"cmd\":\"status\"}", 16), 0);
	cr_assert_eq(shutdown(c.fd, SHUT_WR), 0);
	json_t *j = conn_reply(&c);
	cr_assert_not_null(j, "no reply to a request without its newline");
	expect_ok(j, "status");
	json_decref(j);
	cr_expect_null(conn_line(&c), "the server did not close after the last request");
	conn_close(&c);
	expect_running(&f);
	fx_stop(&f);
}

/*
 * As many clients as the server takes can connect in one burst, without
 * blocking, before its thread gets to accept any (with a backlog smaller
 * than that, the burst's tail gets EAGAIN when the thread is slow).
 */
Test(control, the_backlog_takes_every_client)
{
	struct fx f;
	int fds[CONTROL_MAX_CLIENTS];

	fx_start(&f, "ctl-backlog");
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		fds[i] = connect_nonblock(f.sock);
		cr_assert_geq(fds[i], 0, "client %d of %d: connect: %s", i + 1, CONTROL_MAX_CLIENTS,
			      strerror(-fds[i]));
	}
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		close(fds[i]);
	json_t *j = req_once(&f, "{\"cmd\":\"status\"}");
	expect_ok(j, "status");
	json_decref(j);
	fx_stop(&f);
}

Test(control, several_clients_at_once)
{
	struct fx f;
	struct conn a, b, more[8];
	json_t *j;

	fx_start(&f, "ctl-clients");
	conn_open(&a, f.sock);
	conn_open(&b, f.sock);
	/* a's request is half sent; b is served meanwhile */
	cr_assert_eq(conn_send(&a, "{\"cmd\":", 7), 0);
	j = conn_req(&b, "{\"cmd\":\"status\"}");
	expect_ok(j, "status");
	json_decref(j);
	cr_assert_eq(conn_send(&a, "\"status\"}\n", 10), 0);
	j = conn_reply(&a);
	expect_ok(j, "status");
	json_decref(j);

	for (size_t i = 0; i < ARRAY_SIZE(more); i++)
		conn_open(&more[i], f.sock);
	for (size_t i = 0; i < ARRAY_SIZE(more); i++)
		cr_assert_eq(conn_send(&more[i], "{\"cmd\":\"status\"}\n", 17), 0);
	for (size_t i = 0; i < ARRAY_SIZE(more); i++) {
		j = conn_reply(&more[i]);
		expect_ok(j, "status");
		json_decref(j);
		conn_close(&more[i]);
	}
	j = conn_req(&a, "{\"cmd\":\"checkpoint\"}");
	expect_ok(j, "checkpoint");
	json_decref(j);
	j = conn_req(&b, "{\"cmd\":\"status\"}");
	cr_expect_eq(jint(j, "checkpoints"), 1);
	json_decref(j);
	conn_close(&a);
	conn_close(&b);
	fx_stop(&f);
}

static void schedule_field(void *opaque, json_t *obj)
{
	json_object_set_new(obj, "schedule", json_string(opaque));
}

Test(control, status_hook_adds_fields)
{
	struct fx f;
	json_t *j;

	fx_start(&f, "ctl-hook");
	control_set_status_extra(f.c, schedule_field, "every 5s");
	j = status(&f);
	cr_expect_str_eq(jstr(j, "schedule"), "every 5s");
	cr_expect_str_eq(jstr(j, "state"), "running");
	json_decref(j);
	control_set_status_extra(f.c, NULL, NULL);
	j = status(&f);
	cr_expect_null(json_object_get(j, "schedule"));
	json_decref(j);
	fx_stop(&f);
}

/* ================================================================ the socket file */

Test(control, socket_is_private_and_removed_on_stop)
{
	struct fx f;
	struct stat st;
	mode_t um;

	um = umask(022);
	fx_start(&f, "ctl-mode");
	cr_assert_eq(umask(022), 022, "control_start left the umask changed");
	cr_assert_eq(lstat(f.sock, &st), 0);
	cr_expect(S_ISSOCK(st.st_mode));
	cr_expect_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	fx_stop(&f);
	cr_expect_neq(lstat(f.sock, &st), 0);
	umask(um);
}

Test(control, refuses_files_in_the_way_and_replaces_stale_sockets)
{
	struct fx f;
	struct control *c2 = NULL;
	char path[600], longpath[300];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[16] = { 0 };
	int fd;

	fx_start(&f, "ctl-files");
	/* a live socket: ours */
	cr_expect_eq(control_start(f.m, f.sock, &c2), -EADDRINUSE);
	cr_expect_null(c2);
	expect_running(&f);

	/* a regular file is never replaced */
	snprintf(path, sizeof(path), "%s/file", f.dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "keep", 4), 4);
	close(fd);
	cr_expect_eq(control_start(f.m, path, &c2), -EEXIST);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_expect_eq(read(fd, buf, sizeof(buf)), 4);
	cr_expect_str_eq(buf, "keep");
	close(fd);

	/* a directory neither */
	snprintf(path, sizeof(path), "%s/adir", f.dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_expect_eq(control_start(f.m, path, &c2), -EEXIST);

	/* a stale socket (bound, nobody listening) is replaced */
	snprintf(path, sizeof(path), "%s/stale.sock", f.dir);
	cr_assert_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	cr_assert_eq(control_start(f.m, path, &c2), 0);
	{
		struct conn c;
		json_t *j;

		conn_open(&c, path);
		j = conn_req(&c, "{\"cmd\":\"status\"}");
		expect_ok(j, "status");
		json_decref(j);
		conn_close(&c);
	}
	control_stop(c2);
	cr_expect_neq(access(path, F_OK), 0);

	/* a path longer than sun_path */
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	cr_expect_eq(control_start(f.m, longpath, &c2), -ENAMETOOLONG);

	expect_running(&f);
	fx_stop(&f);
}

Test(control, quit_stops_the_vm)
{
	struct fx f;
	struct vm_stop_info st;
	json_t *j;

	fx_start(&f, "ctl-quit");
	j = req_once(&f, "{\"cmd\":\"quit\"}");
	expect_ok(j, "quit");
	json_decref(j);
	machine_wait(f.m, &st);
	cr_expect_eq(st.reason, VM_STOP_REQUEST, "stop reason %d", st.reason);
	/* the socket still answers while the VMM winds down */
	j = status(&f);
	cr_expect_str_eq(jstr(j, "state"), "stopped");
	json_decref(j);
	fx_stop(&f);
}

/* ================================================================ rewind ctl */

static struct cli_result ctl(const char *const *argv)
{
	struct cli_result r;

	cr_assert_eq(cli_run(argv, NULL, 120, 0, &r), 0);
	return r;
}

static void expect_usage(const char *const *argv, const char *want)
{
	struct cli_result r = ctl(argv);

	cr_expect_eq(r.status, 2, "%s: status %d, stderr: %s", want, r.status, r.err);
	cr_expect_eq(r.out_len, 0, "stdout: %s", r.out);
	cr_expect_eq(cli_count_lines(r.err), 1, "stderr is not one line: %s", r.err);
	cr_expect(strstr(r.err, want) != NULL, "stderr lacks '%s': %s", want, r.err);
	cli_result_free(&r);
}

Test(ctl_cli, usage_errors_exit_2)
{
	const char *nosock = "/nonexistent/rewind.sock";
	const char *a1[] = { "rewind", "ctl", NULL };
	const char *a2[] = { "rewind", "ctl", nosock, NULL };
	const char *a3[] = { "rewind", "ctl", nosock, "frob", NULL };
	const char *a4[] = { "rewind", "ctl", nosock, "rollback", NULL };
	const char *a5[] = { "rewind", "ctl", nosock, "rollback", "", NULL };
	const char *a6[] = { "rewind", "ctl", nosock, "rollback", "0", NULL };
	const char *a7[] = { "rewind", "ctl", nosock, "rollback", "-4", NULL };
	const char *a8[] = { "rewind", "ctl", nosock, "pause", "now", NULL };
	const char *a9[] = { "rewind", "ctl", nosock, "checkpoint", "a", "b", NULL };
	const char *a10[] = { "rewind", "ctl", nosock, "status", "--bogus", NULL };
	const char *a11[] = { "rewind", "ctl", nosock, "rollback", "12abc", NULL };

	expect_usage(a1, "PATH");
	expect_usage(a2, "COMMAND");
	expect_usage(a3, "frob");
	expect_usage(a4, "ID");
	expect_usage(a5, "''");
	expect_usage(a6, "'0'");
	expect_usage(a7, "'-4'");
	expect_usage(a8, "'now'");
	expect_usage(a9, "'b'");
	expect_usage(a10, "--bogus");
	expect_usage(a11, "'12abc'");
}

Test(ctl_cli, help_exits_0)
{
	const char *argv[] = { "rewind", "ctl", "--help", NULL };
	struct cli_result r = ctl(argv);

	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "rewind ctl PATH COMMAND") != NULL, "%s", r.out);
	cli_result_free(&r);
}

/* No socket at the path is a wrong argument (2); one that refuses is a failure (1). */
Test(ctl_cli, unreachable_socket_exits_with_one_line)
{
	const char *dir = rw_test_tmpdir("ctl-unreach");
	char missing[600], file[600];
	int fd;

	snprintf(missing, sizeof(missing), "%s/none.sock", dir);
	snprintf(file, sizeof(file), "%s/plain", dir);
	fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);

	const char *a1[] = { "rewind", "ctl", missing, "status", NULL };
	struct cli_result r = ctl(a1);
	cr_expect_eq(r.status, 2, "status %d: %s", r.status, r.err);
	cr_expect_eq(r.out_len, 0);
	cr_expect_eq(cli_count_lines(r.err), 1, "%s", r.err);
	cr_expect(strstr(r.err, missing) != NULL, "%s", r.err);
	cr_expect(strstr(r.err, strerror(ENOENT)) != NULL, "%s", r.err);
	cli_result_free(&r);

	const char *a2[] = { "rewind", "ctl", file, "status", "--json", NULL };
	r = ctl(a2);
	cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
	cr_expect_eq(r.out_len, 0);
	cr_expect_eq(cli_count_lines(r.err), 1, "%s", r.err);
	cr_expect(strstr(r.err, file) != NULL, "%s", r.err);
	cr_expect(strstr(r.err, strerror(ECONNREFUSED)) != NULL, "%s", r.err);
	cli_result_free(&r);
}

/* Every line of s is "key:<spaces>value" with the values in one column. */
static void expect_aligned(const char *s)
{
	const char *line = s;
	long col = -1;
	unsigned n = 0;

	while (*line) {
		const char *nl = strchr(line, '\n');
		const char *colon = strchr(line, ':');
		long c;

		cr_assert_not_null(nl, "unterminated line: %s", line);
		cr_assert(colon && colon < nl, "no key in line: %.*s", (int)(nl - line), line);
		c = colon + 1 - line;
		while (line[c] == ' ')
			c++;
		cr_expect(line[c - 1] == ' ' && c < nl - line, "no value: %.*s", (int)(nl - line), line);
		if (col < 0)
			col = c;
		cr_expect_eq(c, col, "misaligned: %.*s", (int)(nl - line), line);
		line = nl + 1;
		n++;
	}
	cr_expect_geq(n, 6, "too few status lines:\n%s", s);
}

static void extra_fields(void *opaque, json_t *obj)
{
	json_object_set_new(obj, "checkpoint_every", json_string(opaque));
	json_object_set_new(obj, "keep", json_integer(3));
}

Test(ctl_cli, status_and_checkpoint_human_and_json)
{
	struct fx f;
	struct cli_result r;
	json_t *j;
	json_error_t jerr;

	fx_start(&f, "ctl-cli");
	control_set_status_extra(f.c, extra_fields, "5s");

	const char *st[] = { "rewind", "ctl", f.sock, "status", NULL };
	r = ctl(st);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect_eq(r.err_len, 0, "stderr: %s", r.err);
	cr_expect(strstr(r.out, "state:") == r.out, "%s", r.out);
	cr_expect(strstr(r.out, " running\n") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "memory:") && strstr(r.out, "64.0 MiB"), "%s", r.out);
	cr_expect(strstr(r.out, f.store) != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "last checkpoint:") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "checkpoint every:") && strstr(r.out, " 5s\n"), "%s", r.out);
	cr_expect(strstr(r.out, "keep:") != NULL, "%s", r.out);
	expect_aligned(r.out);
	cli_result_free(&r);

	const char *stj[] = { "rewind", "ctl", f.sock, "status", "--json", NULL };
	r = ctl(stj);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect_eq(cli_count_lines(r.out), 1, "%s", r.out);
	j = json_loads(r.out, 0, &jerr);
	cr_assert_not_null(j, "%s: %s", jerr.text, r.out);
	expect_ok(j, "status");
	cr_expect_str_eq(jstr(j, "checkpoint_every"), "5s");
	cr_expect_eq(jint(j, "ncpus"), 1);
	json_decref(j);
	cli_result_free(&r);

	const char *ck[] = { "rewind", "ctl", f.sock, "checkpoint", "first", NULL };
	r = ctl(ck);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect_eq(cli_count_lines(r.out), 1, "%s", r.out);
	cr_expect(strncmp(r.out, "checkpoint 1 \"first\" (full): ", 29) == 0, "%s", r.out);
	cr_expect(strstr(r.out, " dirty pages, ") && strstr(r.out, " new chunks, ") &&
		  strstr(r.out, "pause ") && strstr(r.out, " us, persist ") &&
		  strstr(r.out, " ms\n"), "%s", r.out);
	cli_result_free(&r);

	const char *ck2[] = { "rewind", "ctl", "--json", f.sock, "checkpoint", NULL };
	r = ctl(ck2);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect_eq(cli_count_lines(r.out), 1, "%s", r.out);
	j = json_loads(r.out, 0, &jerr);
	cr_assert_not_null(j, "%s: %s", jerr.text, r.out);
	expect_ok(j, "checkpoint");
	cr_expect_eq(jint(j, "id"), 2);
	cr_expect_eq(jint(j, "parent"), 1);
	json_decref(j);
	cli_result_free(&r);

	const char *ck3[] = { "rewind", "ctl", f.sock, "checkpoint", NULL };
	r = ctl(ck3);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect(strncmp(r.out, "checkpoint 3 (parent 2): ", 25) == 0, "%s", r.out);
	cli_result_free(&r);

	r = ctl(st);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect(strstr(r.out, "checkpoints:") && strstr(r.out, " 3\n"), "%s", r.out);
	cr_expect(strstr(r.out, " 3 (parent 2): "), "%s", r.out);
	expect_aligned(r.out);
	cli_result_free(&r);

	const char *pa[] = { "rewind", "ctl", f.sock, "pause", NULL };
	r = ctl(pa);
	cr_expect_eq(r.status, 0);
	cr_expect_str_eq(r.out, "paused\n");
	cli_result_free(&r);
	const char *re[] = { "rewind", "ctl", f.sock, "resume", NULL };
	r = ctl(re);
	cr_expect_eq(r.status, 0);
	cr_expect_str_eq(r.out, "resumed\n");
	cli_result_free(&r);

	const char *rb[] = { "rewind", "ctl", f.sock, "rollback", "1", NULL };
	r = ctl(rb);
	cr_expect_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect_str_eq(r.out, "rolled back to checkpoint 1\n");
	cli_result_free(&r);

	fx_stop(&f);
}

Test(ctl_cli, refusals_exit_1_with_the_vms_message)
{
	struct fx f;
	struct cli_result r;
	json_t *j;

	fx_start(&f, "ctl-cli-err");
	const char *rb[] = { "rewind", "ctl", f.sock, "rollback", "4242", NULL };
	r = ctl(rb);
	cr_expect_eq(r.status, 1, "stderr: %s", r.err);
	cr_expect_eq(r.out_len, 0, "%s", r.out);
	cr_expect_eq(cli_count_lines(r.err), 1, "%s", r.err);
	cr_expect(strstr(r.err, "no checkpoint 4242") && strstr(r.err, "RW_ENOTFOUND"), "%s", r.err);
	cli_result_free(&r);

	const char *rbj[] = { "rewind", "ctl", f.sock, "rollback", "4242", "--json", NULL };
	r = ctl(rbj);
	cr_expect_eq(r.status, 1, "stderr: %s", r.err);
	j = json_loads(r.out, 0, NULL);
	cr_assert_not_null(j, "%s", r.out);
	expect_error(j, "RW_ENOTFOUND", "rollback --json");
	json_decref(j);
	cli_result_free(&r);

	const char *q[] = { "rewind", "ctl", f.sock, "quit", NULL };
	struct vm_stop_info st;
	r = ctl(q);
	cr_expect_eq(r.status, 0, "stderr: %s", r.err);
	cli_result_free(&r);
	machine_wait(f.m, &st);
	cr_expect_eq(st.reason, VM_STOP_REQUEST);
	fx_stop(&f);
}
