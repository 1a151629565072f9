/*
 * control.c - the control socket: a poll(2) loop on its own thread serving
 * JSON-line requests against a machine (protocol in control.h).
 *
 * Each connection has an input buffer (at most one line of CONTROL_LINE_MAX
 * bytes plus what follows it in the same read) and an output buffer of
 * replies not yet accepted by the socket. Requests of one connection run in
 * order; a connection whose unsent replies exceed CONTROL_OUT_MAX is not
 * read until they drain, so a client that never reads cannot grow us.
 */
#include "control.h"

#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define CONTROL_OUT_MAX (1024 * 1024)
#define CONTROL_READ_CHUNK 4096
#define CONTROL_MSG_MAX 512

struct client {
	int fd;
	char *in;            /* received bytes not yet handled */
	size_t in_len, in_cap;
	char *out;           /* replies not yet sent: out[out_off .. out_len) */
	size_t out_off, out_len, out_cap;
	bool eof;            /* peer finished sending (or a fatal read error) */
	bool closing;        /* close once the output has drained */
	bool dead;           /* remove at the end of this loop iteration */
	bool quit_after;     /* a quit was answered: stop the VM after sending */
};

struct control {
	struct machine *m;
	char *path;
	dev_t dev;           /* identity of the socket file we created */
	ino_t ino;
	int lfd;
	int wakefd;
	pthread_t thread;
	struct client **cl;
	unsigned ncl;

	pthread_mutex_t hook_lock;
	void (*status_extra)(void *opaque, json_t *obj);
	void *status_opaque;
};

struct control_cmd;

/* One request being handled. */
struct request {
	struct control *c;
	struct client *cl;
	json_t *req;         /* the request object */
	json_t *reply;       /* the ok reply being built */
	const struct control_cmd *cmd; /* the command, once decoded */
	const char *label;   /* checkpoint: its label; rollback, pin, unpin: the
				label naming the checkpoint (in req), or NULL */
	uint64_t id;         /* rollback, pin, unpin: the checkpoint id, if given */
	char msg[CONTROL_MSG_MAX];
};

/* ================================================================ replies */

static int req_fail(struct request *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Set the error message of r and return err (for `return req_fail(...)`). */
static int req_fail(struct request *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	return err;
}

static int out_append(struct client *cl, const char *s, size_t n)
{
	if (cl->out_off == cl->out_len)
		cl->out_off = cl->out_len = 0;
	if (cl->out_len + n > cl->out_cap) {
		size_t cap = cl->out_cap ? cl->out_cap : 1024;
		char *p;

		while (cap < cl->out_len + n)
			cap *= 2;
		p = realloc(cl->out, cap);
		if (!p)
			return -ENOMEM;
		cl->out = p;
		cl->out_cap = cap;
	}
	memcpy(cl->out + cl->out_len, s, n);
	cl->out_len += n;
	return 0;
}

/* obj as one reply line (without its newline); takes the reference. NULL if out of memory. */
static char *reply_text(json_t *obj)
{
	char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;

	json_decref(obj);
	return s;
}

/* Queue obj as one line; takes the reference. On failure the client is closed. */
static void send_json(struct client *cl, json_t *obj)
{
	char *s = reply_text(obj);

	if (!s || out_append(cl, s, strlen(s)) || out_append(cl, "\n", 1)) {
		rw_warn("control: out of memory for a reply; closing the connection");
		cl->eof = cl->closing = true;
	}
	free(s);
}

/* The error reply for err; NULL if out of memory. */
static json_t *error_json(int err, const char *msg)
{
	json_t *o = json_object();

	if (o) {
		json_object_set_new(o, "ok", json_false());
		json_object_set_new(o, "error", json_string(rw_errname(err)));
		/* a message quoting bad input may not be UTF-8: fall back to the code's text */
		if (json_object_set_new(o, "message", json_string(msg)))
			json_object_set_new(o, "message", json_string(rw_strerror(err)));
	}
	return o;
}

static void send_error(struct client *cl, int err, const char *msg)
{
	send_json(cl, error_json(err, msg));
}

/* What a JSON value is, for messages about ill-typed fields. */
static const char *jtype(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return json_integer_value(v) > 0 ? "a positive integer" : "an integer below 1";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

static json_t *jid(uint64_t id)
{
	return id ? json_integer((json_int_t)id) : json_null();
}

/* The fields of a checkpoint report, as the checkpoint reply and status.last show them. */
static void report_json(json_t *o, const struct ckpt_report *rep)
{
	json_object_set_new(o, "id", jid(rep->id));
	json_object_set_new(o, "parent", jid(rep->parent));
	json_object_set_new(o, "label", json_string(rep->label));
	json_object_set_new(o, "dirty_pages", json_integer((json_int_t)rep->dirty_pages));
	json_object_set_new(o, "new_chunks", json_integer((json_int_t)rep->new_chunks));
	json_object_set_new(o, "dedup_hits", json_integer((json_int_t)rep->dedup_hits));
	json_object_set_new(o, "zero_pages", json_integer((json_int_t)rep->zero_pages));
	json_object_set_new(o, "bytes_written", json_integer((json_int_t)rep->bytes_written));
	json_object_set_new(o, "pause_us", json_integer((json_int_t)(rep->pause_ns / 1000)));
	json_object_set_new(o, "persist_ms", json_real((double)(rep->persist_ns / 1000) / 1000.0));
}

struct control_cmd {
	const char *name;
	const char *const *fields; /* allowed fields besides "cmd" */
	int (*check)(struct request *r); /* check the arguments (may be NULL) */
	int (*fn)(struct request *r);
};

/* ================================================================ commands */

static const char *const no_fields[] = { NULL };
static const char *const checkpoint_fields[] = { "label", NULL };
static const char *const rollback_fields[] = { "id", "label", NULL }; /* also pin, unpin */

static int check_checkpoint(struct request *r)
{
	json_t *jl = json_object_get(r->req, "label");
	const char *label;

	if (jl && !json_is_null(jl)) {
		if (!json_is_string(jl))
			return req_fail(r, -EINVAL, "checkpoint: \"label\" must be a string, not %s",
					jtype(jl));
		label = json_string_value(jl);
		if (json_string_length(jl) != strlen(label))
			return req_fail(r, -EINVAL, "checkpoint: \"label\" must not contain NUL");
		if (strlen(label) >= sizeof(((struct ckpt_report *)0)->label))
			return req_fail(r, RW_ELIMIT, "checkpoint: \"label\" is longer than %zu bytes",
					sizeof(((struct ckpt_report *)0)->label) - 1);
		r->label = label;
	}
	return 0;
}

static int cmd_checkpoint(struct request *r)
{
	struct ckpt_report rep;
	int ret;

	ret = machine_checkpoint(r->c->m, r->label, true, &rep);
	if (ret == -ENOSYS)
		return req_fail(r, ret, "checkpoint: this VM has no store (run it with --store DIR)");
	if (ret)
		return req_fail(r, ret, "checkpoint failed: %s", rw_strerror(ret));
	report_json(r->reply, &rep);
	return 0;
}

/*
 * The checkpoint a rollback, pin or unpin names: "id" (a positive integer)
 * or "label" (the label of exactly one checkpoint in the store, looked up
 * when the command runs).
 */
static int check_checkpoint_ref(struct request *r)
{
	const char *cmd = r->cmd->name;
	json_t *jv = json_object_get(r->req, "id"), *jl = json_object_get(r->req, "label");

	if (jv && jl)
		return req_fail(r, -EINVAL, "%s: give \"id\" or \"label\", not both", cmd);
	if (jl) {
		if (!json_is_string(jl))
			return req_fail(r, -EINVAL, "%s: \"label\" must be a string, not %s", cmd,
					jtype(jl));
		r->label = json_string_value(jl);
		return 0;
	}
	if (!jv)
		return req_fail(r, -EINVAL, "%s: missing \"id\" (a checkpoint id) or \"label\"", cmd);
	if (!json_is_integer(jv) || json_integer_value(jv) <= 0)
		return req_fail(r, -EINVAL, "%s: \"id\" must be a positive integer, not %s", cmd,
				jtype(jv));
	r->id = (uint64_t)json_integer_value(jv);
	return 0;
}

/* The id a checked rollback, pin or unpin names, its label looked up now. */
static int resolve_checkpoint_ref(struct request *r, uint64_t *id)
{
	const char *cmd = r->cmd->name;
	struct store *s = machine_store(r->c->m);
	uint64_t ids[2];
	size_t n;
	int ret;

	*id = r->id;
	if (!r->label)
		return 0;
	if (!s)
		return req_fail(r, -ENOSYS, "%s: this VM has no store (run it with --store DIR)", cmd);
	ret = store_find_label(s, r->label, ids, 2, &n);
	if (ret)
		return req_fail(r, ret, "%s: looking for the label: %s", cmd, rw_strerror(ret));
	if (n == 0)
		return req_fail(r, RW_ENOTFOUND, "%s: no checkpoint has that label", cmd);
	if (n > 1)
		return req_fail(r, -EINVAL, "%s: %zu checkpoints have that label (%" PRIu64 ", %" PRIu64
				"%s): give an id", cmd, n, ids[0], ids[1], n > 2 ? ", ..." : "");
	*id = ids[0];
	return 0;
}

static int cmd_rollback(struct request *r)
{
	uint64_t id;
	int ret = resolve_checkpoint_ref(r, &id);

	if (ret)
		return ret;
	ret = machine_rollback(r->c->m, id);
	if (ret == -ENOSYS)
		return req_fail(r, ret, "rollback: this VM has no store (run it with --store DIR)");
	if (ret == RW_ENOTFOUND)
		return req_fail(r, ret, "rollback: no checkpoint %" PRIu64 " in the store", id);
	if (ret)
		return req_fail(r, ret, "rollback to checkpoint %" PRIu64 " failed: %s", id,
				rw_strerror(ret));
	json_object_set_new(r->reply, "id", json_integer((json_int_t)id));
	return 0;
}

/* pin and unpin */
static int cmd_pin_unpin(struct request *r)
{
	const char *name = r->cmd->name;
	bool pin = strcmp(name, "pin") == 0;
	uint64_t id;
	int ret = resolve_checkpoint_ref(r, &id);

	if (ret)
		return ret;
	ret = machine_pin(r->c->m, id, pin);
	if (ret == -ENOSYS)
		return req_fail(r, ret, "%s: this VM has no store (run it with --store DIR)", name);
	if (ret == RW_ENOTFOUND)
		return req_fail(r, ret, "%s: no checkpoint %" PRIu64 " in the store", name, id);
	if (ret)
		return req_fail(r, ret, "%s %" PRIu64 " failed: %s", name, id, rw_strerror(ret));
	json_object_set_new(r->reply, "id", json_integer((json_int_t)id));
	json_object_set_new(r->reply, "pinned", json_boolean(pin));
	return 0;
}

/* pause and resume */
static int cmd_pause_resume(struct request *r)
{
	bool pause = strcmp(r->cmd->name, "pause") == 0;
	int ret = pause ? machine_pause(r->c->m) : machine_resume(r->c->m);

	if (ret)
		return req_fail(r, ret, "%s: %s", r->cmd->name, rw_strerror(ret));
	json_object_set_new(r->reply, "paused", json_boolean(pause));
	return 0;
}

static int cmd_status(struct request *r)
{
	struct control *c = r->c;
	struct machine_status st;
	json_t *o = r->reply, *last;

	machine_status(c->m, &st);
	json_object_set_new(o, "state", json_string(!st.running ? "stopped"
						    : st.paused  ? "paused"
								 : "running"));
	json_object_set_new(o, "running", json_boolean(st.running));
	json_object_set_new(o, "paused", json_boolean(st.paused));
	json_object_set_new(o, "ncpus", json_integer(st.ncpus));
	json_object_set_new(o, "mem_size", json_integer((json_int_t)st.mem_size));
	json_object_set_new(o, "dirty_log",
			    json_string(st.dirty == DIRTY_BITMAP ? "bitmap" : "ring"));
	json_object_set_new(o, "store_dir", st.store_dir ? json_string(st.store_dir) : json_null());
	json_object_set_new(o, "store_bytes", json_integer((json_int_t)st.store_bytes));
	json_object_set_new(o, "checkpoints", json_integer((json_int_t)st.checkpoints));
	json_object_set_new(o, "last_id", jid(st.last_id));
	json_object_set_new(o, "head_id", jid(st.head_id));
	json_object_set_new(o, "pinned", json_integer(st.pinned));
	if (st.last.id || st.last.err) {
		last = json_object();
		report_json(last, &st.last);
		if (st.last.err)
			json_object_set_new(last, "error", json_string(rw_errname(st.last.err)));
		json_object_set_new(o, "last", last);
	} else {
		json_object_set_new(o, "last", json_null());
	}
	pthread_mutex_lock(&c->hook_lock);
	if (c->status_extra)
		c->status_extra(c->status_opaque, o);
	pthread_mutex_unlock(&c->hook_lock);
	return 0;
}

static int cmd_quit(struct request *r)
{
	r->cl->quit_after = true;
	return 0;
}

static const struct control_cmd control_cmds[] = {
	{ "checkpoint", checkpoint_fields, check_checkpoint, cmd_checkpoint },
	{ "rollback", rollback_fields, check_checkpoint_ref, cmd_rollback },
	{ "pin", rollback_fields, check_checkpoint_ref, cmd_pin_unpin },
	{ "unpin", rollback_fields, check_checkpoint_ref, cmd_pin_unpin },
	{ "pause", no_fields, NULL, cmd_pause_resume },
	{ "resume", no_fields, NULL, cmd_pause_resume },
	{ "status", no_fields, NULL, cmd_status },
	{ "quit", no_fields, NULL, cmd_quit },
};

static bool field_allowed(const struct control_cmd *cmd, const char *key)
{
	if (strcmp(key, "cmd") == 0)
		return true;
	for (const char *const *f = cmd->fields; *f; f++)
		if (strcmp(*f, key) == 0)
			return true;
	return false;
}

/*
 * Decode one request line and check it (command, fields, arguments) without
 * running it; on error r->msg says why.
 */
static int parse_request(struct request *r, const char *line, size_t len)
{
	const struct control_cmd *cmd = NULL;
	json_error_t jerr;
	const char *name, *key;
	json_t *jc, *v;

	if (len && line[len - 1] == '\r')
		len--;
	if (len == 0)
		return req_fail(r, -EINVAL, "empty request: send one JSON object per line");
	r->req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!r->req)
		return req_fail(r, -EINVAL, "request is not valid JSON: %s (column %d)", jerr.text,
				jerr.column);
	if (!json_is_object(r->req))
		return req_fail(r, -EINVAL, "request must be a JSON object like {\"cmd\":\"status\"}, not %s",
				jtype(r->req));
	jc = json_object_get(r->req, "cmd");
	if (!jc)
		return req_fail(r, -EINVAL, "request has no \"cmd\"");
	if (!json_is_string(jc))
		return req_fail(r, -EINVAL, "\"cmd\" must be a string, not %s", jtype(jc));
	name = json_string_value(jc);
	for (size_t i = 0; i < ARRAY_SIZE(control_cmds); i++)
		if (strcmp(control_cmds[i].name, name) == 0)
			cmd = &control_cmds[i];
	if (!cmd) {
		char known[128] = "";

		for (size_t i = 0; i < ARRAY_SIZE(control_cmds); i++)
			snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
				 i ? ", " : "", control_cmds[i].name);
		return req_fail(r, -EINVAL, "unknown command '%.64s' (known: %s)", name, known);
	}
	json_object_foreach(r->req, key, v) {
		if (!field_allowed(cmd, key))
			return req_fail(r, -EINVAL, "%s: unknown field '%.64s'", cmd->name, key);
	}
	r->cmd = cmd;
	return cmd->check ? cmd->check(r) : 0;
}

/* Decode and run one request line; on error r->msg says why. */
static int run_request(struct request *r, const char *line, size_t len)
{
	int ret = parse_request(r, line, len);

	if (ret)
		return ret;
	r->reply = json_object();
	if (!r->reply)
		return req_fail(r, -ENOMEM, "out of memory");
	json_object_set_new(r->reply, "ok", json_true());
	json_object_set_new(r->reply, "cmd", json_string(r->cmd->name));
	rw_debug("control: %s", r->cmd->name);
	return r->cmd->fn(r);
}

static void handle_line(struct control *c, struct client *cl, const char *line, size_t len)
{
	struct request r = { .c = c, .cl = cl };
	int ret;

	ret = run_request(&r, line, len);
	if (ret) {
		rw_debug("control: request refused: %s", r.msg);
		send_error(cl, ret, r.msg[0] ? r.msg : rw_strerror(ret));
	} else {
		send_json(cl, r.reply);
		r.reply = NULL;
	}
	json_decref(r.reply);
	json_decref(r.req);
}

int control_check_line(const char *line, size_t len, char **reply)
{
	struct request r = { 0 };
	int ret;

	*reply = NULL;
	ret = parse_request(&r, line, len);
	if (ret)
		*reply = reply_text(error_json(ret, r.msg[0] ? r.msg : rw_strerror(ret)));
	json_decref(r.req);
	return ret;
}

/* ================================================================ connections */

static void client_free(struct client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	free(cl->in);
	free(cl->out);
	free(cl);
}

/* Send what the socket takes without blocking. */
static void client_flush(struct control *c, struct client *cl)
{
	while (cl->out_off < cl->out_len) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* the peer went away: its replies have nowhere to go */
			cl->dead = true;
			cl->out_off = cl->out_len = 0;
			break;
		}
		cl->out_off += (size_t)n;
	}
	if (cl->closing && cl->out_off == cl->out_len)
		cl->dead = true;
}

static size_t out_pending(const struct client *cl)
{
	return cl->out_len - cl->out_off;
}

/* Handle one request line and answer it at once. */
static void answer_line(struct control *c, struct client *cl, const char *line, size_t len)
{
	handle_line(c, cl, line, len);
	client_flush(c, cl);
	if (cl->quit_after) {
		/* the answer is in the socket (or queued) before the VM stops */
		cl->quit_after = false;
		machine_quit(c->m);
	}
}

/* Handle the complete lines in the input buffer, as far as output room allows. */
static void client_process(struct control *c, struct client *cl)
{
	size_t done = 0;

	while (!cl->closing && !cl->dead && out_pending(cl) < CONTROL_OUT_MAX) {
		char *nl = memchr(cl->in + done, '\n', cl->in_len - done);
		size_t len;

		len = nl ? (size_t)(nl - (cl->in + done)) : cl->in_len - done;
		if (len > CONTROL_LINE_MAX) {
			char msg[128];

			snprintf(msg, sizeof(msg),
				 "request line longer than %d bytes; closing the connection",
				 CONTROL_LINE_MAX);
			send_error(cl, RW_ELIMIT, msg);
			cl->closing = cl->eof = true;
			done = cl->in_len;
			break;
		}
		if (!nl)
			break;
		answer_line(c, cl, cl->in + done, len);
		done += len + 1;
	}
	if (done) {
		memmove(cl->in, cl->in + done, cl->in_len - done);
		cl->in_len -= done;
	}
	if (cl->eof && !cl->closing && !cl->dead && !memchr(cl->in, '\n', cl->in_len)) {
		/* nothing more will come: a last line without its newline is a request too */
		if (cl->in_len && cl->in_len <= CONTROL_LINE_MAX && out_pending(cl) < CONTROL_OUT_MAX)
			answer_line(c, cl, cl->in, cl->in_len);
		cl->in_len = 0;
		cl->closing = true;
	}
	client_flush(c, cl);
}

static bool client_wants_input(const struct client *cl)
{
	return !cl->eof && !cl->closing && !cl->dead && out_pending(cl) < CONTROL_OUT_MAX &&
	       cl->in_len <= CONTROL_LINE_MAX;
}

static void client_read(struct control *c, struct client *cl)
{
	for (;;) {
		ssize_t n;

		if (cl->in_cap - cl->in_len < CONTROL_READ_CHUNK) {
			size_t cap = cl->in_cap ? cl->in_cap * 2 : 2 * CONTROL_READ_CHUNK;
			char *p = realloc(cl->in, cap);

			if (!p) {
				rw_warn("control: out of memory for a request; closing the connection");
				cl->dead = true;
				return;
			}
			cl->in = p;
			cl->in_cap = cap;
		}
		n = recv(cl->fd, cl->in + cl->in_len, cl->in_cap - cl->in_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* end of input, or the connection broke */
			cl->eof = true;
			if (n < 0)
				cl->dead = true;
			break;
		}
		cl->in_len += (size_t)n;
		/* bound the buffer: handle what is here before reading more */
		if (cl->in_len > CONTROL_LINE_MAX || memchr(cl->in + cl->in_len - n, '\n', (size_t)n))
			break;
	}
	client_process(c, cl);
}

static void reap_clients(struct control *c);

/*
 * At the client limit: drop the clients whose peer has hung up and that
 * have nothing left to handle or send, which the loop would otherwise only
 * notice after this accept (a client that closes and reconnects at once
 * must not be refused for its own old connection).
 */
static void reap_hung_up(struct control *c)
{
	for (unsigned i = 0; i < c->ncl; i++) {
		struct client *cl = c->cl[i];
		struct pollfd p = { .fd = cl->fd, .events = POLLRDHUP };

		if (cl->dead || cl->in_len || cl->out_off != cl->out_len)
			continue;
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			cl->dead = true;
	}
	reap_clients(c);
}

static void accept_clients(struct control *c)
{
	for (;;) {
		int fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *cl, **p;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				rw_warn("control: accept on %s: %s", c->path, strerror(errno));
			return;
		}
		if (c->ncl >= CONTROL_MAX_CLIENTS)
			reap_hung_up(c);
		if (c->ncl >= CONTROL_MAX_CLIENTS) {
			static const char busy[] = "{\"ok\":false,\"error\":\"RW_ELIMIT\","
						   "\"message\":\"too many control clients\"}\n";

			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				rw_debug("control: refusing a client: %s", strerror(errno));
			close(fd);
			continue;
		}
		cl = calloc(1, sizeof(*cl));
		p = realloc(c->cl, (c->ncl + 1) * sizeof(*p));
		if (!cl || !p) {
			free(cl);
			if (p)
				c->cl = p;
			close(fd);
			rw_warn("control: out of memory for a new client");
			continue;
		}
		c->cl = p;
		cl->fd = fd;
		c->cl[c->ncl++] = cl;
	}
}

static void reap_clients(struct control *c)
{
	unsigned j = 0;

	for (unsigned i = 0; i < c->ncl; i++) {
		if (c->cl[i]->dead)
			client_free(c->cl[i]);
		else
			c->cl[j++] = c->cl[i];
	}
	c->ncl = j;
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	struct pollfd *pfd = NULL;
	unsigned pcap = 0;

	for (;;) {
		unsigned n = 2;

		if (pcap < c->ncl + 2) {
			struct pollfd *p = realloc(pfd, (c->ncl + 2) * sizeof(*p));

			if (!p) {
				rw_error("control: out of memory; the control socket %s stops serving",
					 c->path);
				break;
			}
			pfd = p;
			pcap = c->ncl + 2;
		}
		pfd[0] = (struct pollfd){ .fd = c->wakefd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = c->lfd, .events = POLLIN };
		for (unsigned i = 0; i < c->ncl; i++) {
			struct client *cl = c->cl[i];
			short ev = 0;

			if (client_wants_input(cl))
				ev |= POLLIN;
			if (out_pending(cl))
				ev |= POLLOUT;
			pfd[n++] = (struct pollfd){ .fd = cl->fd, .events = ev };
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			rw_error("control: poll on %s: %s", c->path, strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		/* clients first: accept_clients() may move the array */
		for (unsigned i = 0; i < n - 2; i++) {
			struct client *cl = c->cl[i];
			short re = pfd[i + 2].revents;

			if (!re)
				continue;
			if (re & POLLOUT) {
				client_flush(c, cl);
				/* room again: run the lines that waited for it */
				client_process(c, cl);
			}
			if (re & (POLLIN | POLLHUP | POLLERR)) {
				if (client_wants_input(cl))
					client_read(c, cl);
				else if (re & (POLLHUP | POLLERR))
					cl->dead = true;
			}
		}
		reap_clients(c);
		if (pfd[1].revents & POLLIN)
			accept_clients(c);
	}
	free(pfd);
	return NULL;
}

/* ================================================================ socket setup */

/* Is something listening on the socket at path? */
static bool socket_live(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

/* Create, bind and listen on the socket at c->path, mode 0600. */
static int control_listen(struct control *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(c->path);
	struct stat st;
	mode_t old;
	int ret;

	if (len == 0 || len >= sizeof(sa.sun_path)) {
		rw_error("control socket path '%s' is %s (a Unix socket path holds at most %zu bytes)",
			 c->path, len ? "too long" : "empty", sizeof(sa.sun_path) - 1);
		return len ? -ENAMETOOLONG : -EINVAL;
	}
	memcpy(sa.sun_path, c->path, len + 1);
	if (lstat(c->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			rw_error("control socket %s: a file that is not a socket is in the way; "
				 "not replacing it", c->path);
			return -EEXIST;
		}
		if (socket_live(c->path)) {
			rw_error("control socket %s: something is already listening on it", c->path);
			return -EADDRINUSE;
		}
		if (unlink(c->path) && errno != ENOENT) {
			ret = -errno;
			rw_error("control socket %s: removing the stale socket: %s", c->path,
				 strerror(-ret));
			return ret;
		}
	} else if (errno != ENOENT) {
		ret = -errno;
		rw_error("control socket %s: %s", c->path, strerror(-ret));
		return ret;
	}

	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->lfd < 0) {
		ret = -errno;
		rw_error("control socket %s: socket: %s", c->path, strerror(-ret));
		return ret;
	}
	/*
	 * The file is born 0600, leaving no window in which others could
	 * connect: Linux creates it with the socket inode's mode less the
	 * umask, so narrow both.
	 */
	if (fchmod(c->lfd, 0600))
		rw_debug("control socket %s: fchmod before bind: %s", c->path, strerror(errno));
	old = umask(0177);
	ret = bind(c->lfd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	umask(old);
	if (ret) {
		rw_error("control socket %s: bind: %s", c->path, strerror(-ret));
		goto err_close;
	}
	if (lstat(c->path, &st)) {
		ret = -errno;
		rw_error("control socket %s: %s", c->path, strerror(-ret));
		goto err_close;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	if ((st.st_mode & 07777) != 0600 && chmod(c->path, 0600)) {
		ret = -errno;
		rw_error("control socket %s: chmod 0600: %s", c->path, strerror(-ret));
		goto err_unlink;
	}
	/* every client the server takes may be waiting to be accepted at once */
	if (listen(c->lfd, CONTROL_MAX_CLIENTS)) {
		ret = -errno;
		rw_error("control socket %s: listen: %s", c->path, strerror(-ret));
		goto err_unlink;
	}
	return 0;

err_unlink:
	unlink(c->path);
err_close:
	close(c->lfd);
	c->lfd = -1;
	return ret;
}

/* Remove the socket file if it is still the one we bound. */
static void control_unlink(struct control *c)
{
	struct stat st;

	if (lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == c->dev &&
	    st.st_ino == c->ino)
		unlink(c->path);
}

int control_start(struct machine *m, const char *path, struct control **out)
{
	struct control *c;
	sigset_t all, old;
	int ret;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path))) {
		rw_error("control socket %s: out of memory", path);
		free(c);
		return -ENOMEM;
	}
	c->m = m;
	c->lfd = c->wakefd = -1;
	pthread_mutex_init(&c->hook_lock, NULL);
	ret = control_listen(c);
	if (ret)
		goto err_free;
	c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wakefd < 0) {
		ret = -errno;
		rw_error("control socket %s: eventfd: %s", path, strerror(-ret));
		goto err_socket;
	}
	/* signals belong to the main thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&c->thread, NULL, control_thread, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		rw_error("control socket %s: starting its thread: %s", path, strerror(-ret));
		goto err_wake;
	}
	pthread_setname_np(c->thread, "rw-control");
	rw_info("control socket listening on %s", path);
	*out = c;
	return 0;

err_wake:
	close(c->wakefd);
err_socket:
	close(c->lfd);
	control_unlink(c);
err_free:
	pthread_mutex_destroy(&c->hook_lock);
	free(c->path);
	free(c);
	return ret;
}

void control_stop(struct control *c)
{
	uint64_t one = 1;

	if (!c)
		return;
	if (write(c->wakefd, &one, sizeof(one)) != sizeof(one))
		rw_warn("control: waking the control thread: %s", strerror(errno));
	pthread_join(c->thread, NULL);
	for (unsigned i = 0; i < c->ncl; i++) {
		client_flush(c, c->cl[i]);
		client_free(c->cl[i]);
	}
	free(c->cl);
	close(c->lfd);
	close(c->wakefd);
	control_unlink(c);
	pthread_mutex_destroy(&c->hook_lock);
	free(c->path);
	free(c);
}

void control_set_status_extra(struct control *c, void (*fn)(void *opaque, json_t *obj),
			      void *opaque)
{
	pthread_mutex_lock(&c->hook_lock);
	c->status_extra = fn;
	c->status_opaque = opaque;
	pthread_mutex_unlock(&c->hook_lock);
}
