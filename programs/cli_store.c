/*
 * cli_store.c - `rewind ls|inspect|diff|rm|gc|verify|export|import|stats|salvage`.
 *
 * Each command opens the store named by --store, does one thing, prints a
 * table (or one JSON document with --json) on stdout, and reports a failure
 * as one line on stderr through the log. Exit status: 0 ok, 1 runtime
 * failure, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_store.h"

#include "cli_args.h"
#include "err.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define EXIT_RUNTIME 1

struct cmd;

/* What every command gets: the parsed common options and the positionals. */
struct ctx {
	const struct cmd *cmd;
	const char *store_dir;
	bool json;
	bool dry_run;
	const char *disk;
	const char *to;            /* salvage: the new store */
	int nargs;
	char **args;
	struct store *s;
};

struct cmd {
	const char *name;
	const char *args;          /* usage text of the positionals */
	const char *help;
	int min_args, max_args;    /* max -1: unlimited */
	bool create;               /* may create the store */
	int (*run)(struct ctx *c);
};

/* ===================================================================
 * Output helpers
 * =================================================================== */

static void fmt_time(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "%" PRIu64, ns);
}


static int print_json(json_t *j)
{
	int rc = 0;

	if (!j) {
		rw_error("out of memory");
		return EXIT_RUNTIME;
	}
	if (json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) || fputc('\n', stdout) == EOF)
		rc = EXIT_RUNTIME;
	json_decref(j);
	fflush(stdout);
	return rc;
}

static json_t *jhash(const struct store_hash *h)
{
	char hex[33];

	return json_string(store_hash_hex(h, hex));
}

/* What to tell about damage: the store's detail and where to go from there. */
static void damage_hint(const char *cmd, int rc)
{
	if (rc == RW_ECORRUPT || rc == RW_ECHECKSUM)
		rw_error("%s: run 'rewind verify' for every damaged chunk, or 'rewind salvage' "
			 "to copy the intact checkpoints to a new store", cmd);
}

/* Runtime failure on the store: one line (two on damage), exit 1. */
static int fail(struct ctx *c, int rc, const char *what)
{
	const char *detail = store_error_detail();

	if (detail)
		rw_error("%s: %s%s%s", c->cmd->name, what ? what : "", what ? ": " : "",
			 detail);
	else
		rw_error("%s: %s%s%s", c->cmd->name, what ? what : "", what ? ": " : "",
			 rw_strerror(rc));
	if (detail && strcmp(c->cmd->name, "verify"))
		damage_hint(c->cmd->name, rc);
	return EXIT_RUNTIME;
}

/*
 * Names and labels come from files: printed escaped (rw_escape), and in
 * JSON as text even when they are not valid UTF-8. esc() has four buffers,
 * so one printf may use it four times.
 */
static const char *esc(const char *s)
{
	static __thread char bufs[4][1024];
	static __thread unsigned next;
	char *b = bufs[next++ % 4];

	return rw_escape(s ? s : "", b, sizeof(bufs[0]));
}

static json_t *json_text(const char *s)
{
	json_t *j = json_string(s ? s : "");

	return j ? j : json_string(esc(s));
}


/* A checkpoint argument: an id, or a label that names one checkpoint. */
static int parse_id(struct ctx *c, const char *s, uint64_t *id)
{
	int rc = cli_checkpoint_arg(c->cmd->name, c->s, s, id);

	return rc == EXIT_USAGE ? -EINVAL : rc ? -EIO : 0;
}

static int no_ckpt(struct ctx *c, uint64_t id)
{
	rw_error("%s: no checkpoint %" PRIu64 " in store %s", c->cmd->name, id, c->store_dir);
	return EXIT_RUNTIME;
}


/* ===================================================================
 * ls
 * =================================================================== */

static json_t *map_json(const struct store_map_info *m)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_text(m->name ? m->name : "memory"));
	json_object_set_new(o, "pages", json_integer((json_int_t)m->npages));
	json_object_set_new(o, "present", json_integer((json_int_t)m->present));
	json_object_set_new(o, "height", json_integer(m->height));
	json_object_set_new(o, "root", jhash(&m->root));
	return o;
}

static json_t *ckpt_json(const struct store_ckpt_info *i)
{
	json_t *o = json_object(), *disks = json_array();
	char t[64];

	fmt_time(i->time_ns, t, sizeof(t));
	json_object_set_new(o, "id", json_integer((json_int_t)i->id));
	json_object_set_new(o, "parent", i->parent ? json_integer((json_int_t)i->parent)
						 : json_null());
	json_object_set_new(o, "time_ns", json_integer((json_int_t)i->time_ns));
	json_object_set_new(o, "time", json_string(t));
	json_object_set_new(o, "label", json_text(i->label));
	json_object_set_new(o, "config_bytes", json_integer((json_int_t)i->config_len));
	json_object_set_new(o, "memory", map_json(&i->mem));
	for (size_t k = 0; k < i->ndisks; k++)
		json_array_append_new(disks, map_json(&i->disks[k]));
	json_object_set_new(o, "disks", disks);
	json_object_set_new(o, "records", json_integer((json_int_t)i->nrecords));
	json_object_set_new(o, "record_bytes", json_integer((json_int_t)i->record_bytes));
	return o;
}

struct ls_state {
	struct ctx *c;
	json_t *arr;
	unsigned n;
};

static int ls_cb(void *arg, const struct store_ckpt_info *i)
{
	struct ls_state *ls = arg;
	char t[64], par[24], mem[24];

	if (ls->arr) {
		json_array_append_new(ls->arr, ckpt_json(i));
		return 0;
	}
	if (!ls->n++)
		printf("%-6s %-6s %-19s %10s %10s %5s %7s  %s\n", "ID", "PARENT", "TIME",
		       "MEMORY", "PRESENT", "DISKS", "RECORDS", "LABEL");
	fmt_time(i->time_ns, t, sizeof(t));
	snprintf(par, sizeof(par), i->parent ? "%" PRIu64 : "-", i->parent);
	rw_format_size(i->mem.npages * STORE_PAGE_SIZE, mem, sizeof(mem));
	printf("%-6" PRIu64 " %-6s %-19s %10s %10" PRIu64 " %5zu %7zu  %s\n", i->id, par, t,
	       mem, i->mem.present, i->ndisks, i->nrecords, esc(i->label));
	return 0;
}

static int cmd_ls(struct ctx *c)
{
	struct ls_state ls = { .c = c, .arr = c->json ? json_array() : NULL };
	int rc = store_list(c->s, ls_cb, &ls);

	if (rc) {
		json_decref(ls.arr);
		return fail(c, rc, "listing checkpoints");
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "checkpoints", ls.arr);
		return print_json(o);
	}
	if (!ls.n)
		printf("no checkpoints in %s\n", c->store_dir);
	return 0;
}

/* ===================================================================
 * inspect
 * =================================================================== */

struct rec_list {
	json_t *arr;
	unsigned n;
};

static int rec_cb(void *arg, const struct store_record_info *ri)
{
	struct rec_list *rl = arg;

	if (rl->arr) {
		json_t *o = json_object();
		json_object_set_new(o, "name", json_text(ri->name));
		json_object_set_new(o, "size", json_integer((json_int_t)ri->len));
		json_object_set_new(o, "version", json_integer(ri->version));
		json_array_append_new(rl->arr, o);
	} else {
		if (!rl->n)
			printf("  %-40s %8s %10s\n", "RECORD", "VERSION", "SIZE");
		printf("  %-40s %8u %10" PRIu64 "\n", esc(ri->name), ri->version, ri->len);
	}
	rl->n++;
	return 0;
}

static void print_map(const char *what, const struct store_map_info *m)
{
	char sz[24], hex[33];

	rw_format_size(m->npages * STORE_PAGE_SIZE, sz, sizeof(sz));
	printf("  %-10s %" PRIu64 " pages (%s), %" PRIu64 " present, tree height %u, root %s\n",
	       what, m->npages, sz, m->present, m->height, store_hash_hex(&m->root, hex));
}

static int cmd_inspect(struct ctx *c)
{
	struct store_snap *sn;
	struct rec_list rl = { 0 };
	uint64_t id, xbytes = 0, xchunks = 0;
	int rc;

	if (parse_id(c, c->args[0], &id))
		return EXIT_USAGE;
	rc = store_snap_open(c->s, id, &sn);
	if (rc == RW_ENOTFOUND)
		return no_ckpt(c, id);
	if (rc)
		return fail(c, rc, "reading the checkpoint");
	rc = store_exclusive(c->s, id, &xbytes, &xchunks);
	if (rc) {
		store_snap_close(sn);
		return fail(c, rc, "accounting");
	}
	const struct store_ckpt_info *i = store_snap_info(sn);
	const struct store_commit_stats *st = &i->stats;
	if (c->json) {
		json_t *o = ckpt_json(i), *cs = json_object();

		rl.arr = json_array();
		rc = store_snap_foreach_record(sn, rec_cb, &rl);
		json_object_set_new(o, "records", rl.arr);
		json_object_set_new(o, "record_count", json_integer((json_int_t)i->nrecords));
		json_object_set_new(cs, "pages", json_integer((json_int_t)st->pages));
		json_object_set_new(cs, "zero_pages", json_integer((json_int_t)st->zero_pages));
		json_object_set_new(cs, "new_chunks", json_integer((json_int_t)st->new_chunks));
		json_object_set_new(cs, "new_bytes", json_integer((json_int_t)st->new_bytes));
		json_object_set_new(cs, "dedup_hits", json_integer((json_int_t)st->dedup_hits));
		json_object_set_new(cs, "new_nodes", json_integer((json_int_t)st->new_nodes));
		json_object_set_new(cs, "commit_ns", json_integer((json_int_t)st->commit_ns));
		json_object_set_new(o, "commit", cs);
		json_object_set_new(o, "exclusive_bytes", json_integer((json_int_t)xbytes));
		json_object_set_new(o, "exclusive_chunks", json_integer((json_int_t)xchunks));
		store_snap_close(sn);
		if (rc) {
			json_decref(o);
			return fail(c, rc, "listing records");
		}
		return print_json(o);
	}
	char t[64], b[24], x[24];
	fmt_time(i->time_ns, t, sizeof(t));
	printf("checkpoint %" PRIu64 "\n", i->id);
	if (i->parent)
		printf("  %-10s %" PRIu64 "\n", "parent", i->parent);
	else
		printf("  %-10s -\n", "parent");
	printf("  %-10s %s\n", "time", t);
	printf("  %-10s %s\n", "label", *i->label ? esc(i->label) : "-");
	printf("  %-10s %zu bytes\n", "config", i->config_len);
	print_map("memory", &i->mem);
	for (size_t k = 0; k < i->ndisks; k++) {
		char what[300];
		snprintf(what, sizeof(what), "disk %s", esc(i->disks[k].name));
		print_map(what, &i->disks[k]);
	}
	rw_format_size(st->new_bytes, b, sizeof(b));
	printf("  %-10s %" PRIu64 " pages (%" PRIu64 " zero), %" PRIu64 " new chunks (%s), %"
	       PRIu64 " dedup hits, %.1f ms\n", "commit", st->pages, st->zero_pages,
	       st->new_chunks, b, st->dedup_hits, (double)st->commit_ns / 1e6);
	rw_format_size(xbytes, x, sizeof(x));
	printf("  %-10s %s in %" PRIu64 " chunks (freed if deleted)\n", "unique", x, xchunks);
	printf("  %-10s %zu\n", "records", i->nrecords);
	rc = store_snap_foreach_record(sn, rec_cb, &rl);
	store_snap_close(sn);
	return rc ? fail(c, rc, "listing records") : 0;
}

/* ===================================================================
 * diff
 * =================================================================== */

#define DIFF_SHOW 20

struct diff_acc {
	json_t *ranges;
	uint64_t nranges;
	bool print;
};

static int diff_cb(void *arg, uint64_t first, uint64_t n)
{
	struct diff_acc *d = arg;

	if (d->ranges) {
		json_t *r = json_array();
		json_array_append_new(r, json_integer((json_int_t)first));
		json_array_append_new(r, json_integer((json_int_t)n));
		json_array_append_new(d->ranges, r);
	} else if (d->print && d->nranges < DIFF_SHOW) {
		if (n == 1)
			printf("    %" PRIu64 "\n", first);
		else
			printf("    %" PRIu64 "-%" PRIu64 " (%" PRIu64 ")\n", first, first + n - 1, n);
	}
	d->nranges++;
	return 0;
}

struct rec_set {
	char **names;
	uint64_t *sums;
	uint32_t *vers;
	size_t n, cap;
};

static int rec_set_cb(void *arg, const struct store_record_info *ri)
{
	struct rec_set *rs = arg;

	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 16;
		char **nn = realloc(rs->names, cap * sizeof(*nn));
		uint64_t *ns = nn ? realloc(rs->sums, cap * sizeof(*ns)) : NULL;
		uint32_t *nv = ns ? realloc(rs->vers, cap * sizeof(*nv)) : NULL;
		if (nn)
			rs->names = nn;
		if (ns)
			rs->sums = ns;
		if (!nv)
			return -ENOMEM;
		rs->vers = nv;
		rs->cap = cap;
	}
	rs->names[rs->n] = strdup(ri->name);
	if (!rs->names[rs->n])
		return -ENOMEM;
	rs->sums[rs->n] = ri->checksum;
	rs->vers[rs->n] = ri->version;
	rs->n++;
	return 0;
}

static void rec_set_free(struct rec_set *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->names[i]);
	free(rs->names);
	free(rs->sums);
	free(rs->vers);
}

static int diff_map(struct ctx *c, uint64_t a, uint64_t b, const char *disk, json_t *maps)
{
	struct diff_acc d = { .ranges = c->json ? json_array() : NULL };
	struct store_diff_stats st;
	int rc;

	if (!c->json) {
		/* count first, then print up to DIFF_SHOW ranges */
		rc = store_diff(c->s, a, b, disk, diff_cb, &d, &st);
		if (rc)
			return rc;
		printf("  %s: %" PRIu64 " pages differ in %" PRIu64 " ranges\n",
		       disk ? disk : "memory", st.changed, d.nranges);
		d.nranges = 0;
		d.print = true;
		rc = store_diff(c->s, a, b, disk, diff_cb, &d, &st);
		if (!rc && d.nranges > DIFF_SHOW)
			printf("    ... and %" PRIu64 " more ranges\n", d.nranges - DIFF_SHOW);
		return rc;
	}
	rc = store_diff(c->s, a, b, disk, diff_cb, &d, &st);
	if (rc) {
		json_decref(d.ranges);
		return rc;
	}
	json_t *o = json_object();
	json_object_set_new(o, "name", json_text(disk ? disk : "memory"));
	json_object_set_new(o, "changed_pages", json_integer((json_int_t)st.changed));
	json_object_set_new(o, "nodes_read", json_integer((json_int_t)st.nodes_read));
	json_object_set_new(o, "ranges", d.ranges);
	json_array_append_new(maps, o);
	return 0;
}

static int cmd_diff(struct ctx *c)
{
	struct store_snap *sa = NULL, *sb = NULL;
	struct rec_set ra = { 0 }, rb = { 0 };
	json_t *maps = c->json ? json_array() : NULL, *recs = NULL;
	uint64_t a, b;
	int rc, ret = 0;

	if (parse_id(c, c->args[0], &a) || parse_id(c, c->args[1], &b))
		return EXIT_USAGE;
	rc = store_snap_open(c->s, a, &sa);
	if (rc == RW_ENOTFOUND) {
		ret = no_ckpt(c, a);
		goto out;
	}
	if (!rc)
		rc = store_snap_open(c->s, b, &sb);
	if (rc == RW_ENOTFOUND) {
		ret = no_ckpt(c, b);
		goto out;
	}
	if (rc) {
		ret = fail(c, rc, "reading checkpoints");
		goto out;
	}
	if (!c->json)
		printf("checkpoint %" PRIu64 " -> %" PRIu64 "\n", a, b);
	if (c->disk) {
		if (!store_snap_map(sa, c->disk) && !store_snap_map(sb, c->disk)) {
			rw_error("%s: no disk '%s' in checkpoint %" PRIu64 " or %" PRIu64,
				 c->cmd->name, c->disk, a, b);
			ret = EXIT_RUNTIME;
			goto out;
		}
		rc = diff_map(c, a, b, c->disk, maps);
	} else {
		rc = diff_map(c, a, b, NULL, maps);
		const struct store_ckpt_info *ia = store_snap_info(sa), *ib = store_snap_info(sb);
		for (size_t k = 0; !rc && k < ia->ndisks; k++)
			rc = diff_map(c, a, b, ia->disks[k].name, maps);
		for (size_t k = 0; !rc && k < ib->ndisks; k++)
			if (!store_snap_map(sa, ib->disks[k].name))
				rc = diff_map(c, a, b, ib->disks[k].name, maps);
	}
	if (!rc)
		rc = store_snap_foreach_record(sa, rec_set_cb, &ra);
	if (!rc)
		rc = store_snap_foreach_record(sb, rec_set_cb, &rb);
	if (rc) {
		ret = fail(c, rc, "comparing");
		goto out;
	}
	/* both lists are in name order: merge */
	json_t *added = json_array(), *removed = json_array(), *changed = json_array();
	size_t i = 0, j = 0;
	while (i < ra.n || j < rb.n) {
		int cmp = i == ra.n ? 1 : j == rb.n ? -1 : strcmp(ra.names[i], rb.names[j]);

		if (cmp < 0) {
			json_array_append_new(removed, json_text(ra.names[i++]));
		} else if (cmp > 0) {
			json_array_append_new(added, json_text(rb.names[j++]));
		} else {
			if (ra.sums[i] != rb.sums[j] || ra.vers[i] != rb.vers[j])
				json_array_append_new(changed, json_text(ra.names[i]));
			i++;
			j++;
		}
	}
	if (c->json) {
		json_t *o = json_object();
		recs = json_object();
		json_object_set_new(recs, "added", added);
		json_object_set_new(recs, "removed", removed);
		json_object_set_new(recs, "changed", changed);
		json_object_set_new(o, "a", json_integer((json_int_t)a));
		json_object_set_new(o, "b", json_integer((json_int_t)b));
		json_object_set_new(o, "maps", maps);
		json_object_set_new(o, "records", recs);
		maps = NULL;
		ret = print_json(o);
	} else {
		const char *what[] = { "added", "removed", "changed" };
		json_t *lists[] = { added, removed, changed };
		for (int k = 0; k < 3; k++) {
			size_t idx;
			json_t *v;

			printf("  records %s: %zu\n", what[k], json_array_size(lists[k]));
			json_array_foreach(lists[k], idx, v)
				printf("    %s\n", json_string_value(v));
			json_decref(lists[k]);
		}
	}
out:
	json_decref(maps);
	rec_set_free(&ra);
	rec_set_free(&rb);
	store_snap_close(sa);
	store_snap_close(sb);
	return ret;
}

/* ===================================================================
 * rm, gc
 * =================================================================== */

static int cmd_rm(struct ctx *c)
{
	json_t *arr = c->json ? json_array() : NULL;
	uint64_t id;
	int ret = 0;

	for (int k = 0; k < c->nargs; k++)
		if (parse_id(c, c->args[k], &id)) {
			json_decref(arr);
			return EXIT_USAGE;
		}
	for (int k = 0; k < c->nargs && !ret; k++) {
		uint64_t freed = 0;
		int rc;

		parse_id(c, c->args[k], &id);
		rc = store_delete(c->s, id, &freed);
		if (rc == RW_ENOTFOUND) {
			ret = no_ckpt(c, id);
			break;
		}
		if (rc) {
			char what[64];
			snprintf(what, sizeof(what), "deleting checkpoint %" PRIu64, id);
			ret = fail(c, rc, what);
			break;
		}
		if (arr) {
			json_t *o = json_object();
			json_object_set_new(o, "id", json_integer((json_int_t)id));
			json_object_set_new(o, "freed_bytes", json_integer((json_int_t)freed));
			json_array_append_new(arr, o);
		} else {
			char b[24];
			rw_format_size(freed, b, sizeof(b));
			printf("deleted checkpoint %" PRIu64 " (freed %s)\n", id, b);
		}
	}
	if (arr) {
		json_t *o = json_object();
		json_object_set_new(o, "deleted", arr);
		int pr = print_json(o);
		return ret ? ret : pr;
	}
	return ret;
}

static int cmd_gc(struct ctx *c)
{
	struct store_gc_stats g;
	int rc = store_gc(c->s, c->dry_run, &g);

	if (rc == RW_ECORRUPT)
		return fail(c, rc, "a checkpoint references damaged or missing chunks "
			    "(run 'rewind verify'); nothing was changed");
	if (rc)
		return fail(c, rc, NULL);
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "dry_run", json_boolean(c->dry_run));
		json_object_set_new(o, "chunks_freed", json_integer((json_int_t)g.chunks_freed));
		json_object_set_new(o, "bytes_freed", json_integer((json_int_t)g.bytes_freed));
		json_object_set_new(o, "refs_fixed", json_integer((json_int_t)g.refs_fixed));
		json_object_set_new(o, "bodies_freed", json_integer((json_int_t)g.bodies_freed));
		json_object_set_new(o, "records_freed", json_integer((json_int_t)g.records_freed));
		return print_json(o);
	}
	char b[24];
	rw_format_size(g.bytes_freed, b, sizeof(b));
	printf("%s%" PRIu64 " unreachable chunks (%s), %" PRIu64 " reference counts, %" PRIu64
	       " stray bodies, %" PRIu64 " stray records\n", c->dry_run ? "would free " : "freed ",
	       g.chunks_freed, b, g.refs_fixed, g.bodies_freed, g.records_freed);
	return 0;
}

/* ===================================================================
 * verify
 * =================================================================== */

struct vstate {
	json_t *arr;
};

static int verify_cb(void *arg, const struct store_problem *p)
{
	struct vstate *v = arg;

	if (v->arr) {
		json_t *o = json_object(), *aff = json_array();
		json_object_set_new(o, "kind", json_string(store_problem_name(p->kind)));
		json_object_set_new(o, "code", json_string(rw_errname(p->code)));
		json_object_set_new(o, "chunk", p->has_chunk ? jhash(&p->chunk) : json_null());
		json_object_set_new(o, "checkpoint", p->ckpt ? json_integer((json_int_t)p->ckpt)
							   : json_null());
		json_object_set_new(o, "record", p->record ? json_text(p->record) : json_null());
		json_object_set_new(o, "detail", json_text(p->detail));
		for (size_t i = 0; i < p->naffected; i++)
			json_array_append_new(aff, json_integer((json_int_t)p->affected[i]));
		json_object_set_new(o, "affected", aff);
		json_array_append_new(v->arr, o);
		return 0;
	}
	printf("problem: %s: %s", store_problem_name(p->kind), esc(p->detail));
	if (p->naffected) {
		printf(" (affects checkpoint%s", p->naffected > 1 ? "s" : "");
		for (size_t i = 0; i < p->naffected; i++)
			printf("%s %" PRIu64, i ? "," : "", p->affected[i]);
		printf(")");
	}
	printf("\n");
	return 0;
}

static int cmd_verify(struct ctx *c)
{
	struct vstate v = { .arr = c->json ? json_array() : NULL };
	struct store_verify_stats st;
	int rc = store_verify(c->s, verify_cb, &v, &st);

	if (rc) {
		json_decref(v.arr);
		return fail(c, rc, NULL);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "ok", json_boolean(st.problems == 0));
		json_object_set_new(o, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(o, "bytes", json_integer((json_int_t)st.bytes));
		json_object_set_new(o, "checkpoints", json_integer((json_int_t)st.checkpoints));
		json_object_set_new(o, "records", json_integer((json_int_t)st.records));
		json_object_set_new(o, "problems", v.arr);
		rc = print_json(o);
	} else {
		char b[24];
		rw_format_size(st.bytes, b, sizeof(b));
		printf("checked %" PRIu64 " chunks (%s), %" PRIu64 " checkpoints, %" PRIu64
		       " records: %" PRIu64 " problem%s\n", st.chunks, b, st.checkpoints,
		       st.records, st.problems, st.problems == 1 ? "" : "s");
	}
	if (st.problems) {
		rw_error("verify: %s: %" PRIu64 " problem%s found", c->store_dir, st.problems,
			 st.problems == 1 ? "" : "s");
		return EXIT_RUNTIME;
	}
	return rc;
}

/* ===================================================================
 * export, import
 * =================================================================== */

static int cmd_export(struct ctx *c)
{
	struct cli_bar bar = CLI_BAR("export", !c->json);
	struct store_xfer_stats st;
	uint64_t id;
	int rc;

	if (parse_id(c, c->args[0], &id))
		return EXIT_USAGE;
	rc = store_export(c->s, id, c->args[1], cli_bar_cb, &bar, &st);
	cli_bar_end(&bar);
	if (rc == RW_ENOTFOUND)
		return no_ckpt(c, id);
	if (rc) {
		char what[4200];
		snprintf(what, sizeof(what), "checkpoint %" PRIu64 " to %s", id, c->args[1]);
		return fail(c, rc, what);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "id", json_integer((json_int_t)id));
		json_object_set_new(o, "file", json_string(c->args[1]));
		json_object_set_new(o, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(o, "records", json_integer((json_int_t)st.records));
		json_object_set_new(o, "bytes", json_integer((json_int_t)st.bytes));
		return print_json(o);
	}
	char b[24];
	rw_format_size(st.bytes, b, sizeof(b));
	printf("exported checkpoint %" PRIu64 " to %s: %" PRIu64 " chunks, %" PRIu64
	       " records, %s\n", id, c->args[1], st.chunks, st.records, b);
	return 0;
}

static int cmd_import(struct ctx *c)
{
	struct cli_bar bar = CLI_BAR("import", !c->json);
	struct store_xfer_stats st;
	struct store_xfer_error err;
	uint64_t id;
	int rc;

	rc = store_import(c->s, c->args[0], cli_bar_cb, &bar, &id, &st, &err);
	cli_bar_end(&bar);
	if (rc && err.section[0]) {
		rw_error("import: %s: %s at offset %" PRIu64 ": %s (%s); the store is unchanged",
			 c->args[0], err.section, err.offset, err.detail, rw_strerror(rc));
		return EXIT_RUNTIME;
	}
	if (rc) {
		char what[4200];
		snprintf(what, sizeof(what), "%s", c->args[0]);
		return fail(c, rc, what);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "id", json_integer((json_int_t)id));
		json_object_set_new(o, "original_id", json_integer((json_int_t)st.original_id));
		json_object_set_new(o, "file", json_string(c->args[0]));
		json_object_set_new(o, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(o, "new_chunks", json_integer((json_int_t)st.new_chunks));
		json_object_set_new(o, "records", json_integer((json_int_t)st.records));
		json_object_set_new(o, "bytes", json_integer((json_int_t)st.bytes));
		return print_json(o);
	}
	char was[128] = "";
	if (st.original_id && st.original_id != id)
		snprintf(was, sizeof(was), " (checkpoint %" PRIu64 " where it was exported: that id "
			 "is taken here)", st.original_id);
	printf("imported %s as checkpoint %" PRIu64 "%s: %" PRIu64 " chunks (%" PRIu64
	       " new), %" PRIu64 " records\n", esc(c->args[0]), id, was, st.chunks, st.new_chunks,
	       st.records);
	return 0;
}

/* ===================================================================
 * stats
 * =================================================================== */

struct ex_state {
	struct ctx *c;
	json_t *arr;
	int rc;
};

static int ex_cb(void *arg, const struct store_ckpt_info *i)
{
	struct ex_state *e = arg;
	/* accounted after the walk: no store call from inside a callback */
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer((json_int_t)i->id));
	json_object_set_new(o, "label", json_text(i->label));
	json_object_set_new(o, "logical_bytes",
			    json_integer((json_int_t)(i->mem.present * STORE_PAGE_SIZE)));
	json_array_append_new(e->arr, o);
	return 0;
}

static int cmd_stats(struct ctx *c)
{
	struct ex_state e = { .c = c, .arr = json_array() };
	struct store_stats st;
	int rc = store_stats(c->s, &st);
	size_t idx;
	json_t *v;

	if (!rc)
		rc = store_list(c->s, ex_cb, &e);
	json_array_foreach(e.arr, idx, v) {
		uint64_t bytes, chunks;

		if (rc)
			break;
		rc = store_exclusive(c->s, (uint64_t)json_integer_value(json_object_get(v, "id")),
				     &bytes, &chunks);
		json_object_set_new(v, "unique_bytes", json_integer((json_int_t)bytes));
		json_object_set_new(v, "unique_chunks", json_integer((json_int_t)chunks));
	}
	if (rc) {
		json_decref(e.arr);
		return fail(c, rc, NULL);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "checkpoints", json_integer((json_int_t)st.checkpoints));
		json_object_set_new(o, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(o, "page_chunks", json_integer((json_int_t)st.page_chunks));
		json_object_set_new(o, "node_chunks", json_integer((json_int_t)st.node_chunks));
		json_object_set_new(o, "page_bytes", json_integer((json_int_t)st.page_bytes));
		json_object_set_new(o, "node_bytes", json_integer((json_int_t)st.node_bytes));
		json_object_set_new(o, "logical_bytes", json_integer((json_int_t)st.logical_bytes));
		json_object_set_new(o, "dedup_ratio", json_real(st.dedup_ratio));
		json_object_set_new(o, "records", json_integer((json_int_t)st.records));
		json_object_set_new(o, "record_bytes", json_integer((json_int_t)st.record_bytes));
		json_object_set_new(o, "file_bytes", json_integer((json_int_t)st.file_bytes));
		json_object_set_new(o, "map_bytes", json_integer((json_int_t)st.map_bytes));
		json_object_set_new(o, "per_checkpoint", e.arr);
		return print_json(o);
	}
	char pb[24], nb[24], lb[24], fb[24], mb[24];
	rw_format_size(st.page_bytes, pb, sizeof(pb));
	rw_format_size(st.node_bytes, nb, sizeof(nb));
	rw_format_size(st.logical_bytes, lb, sizeof(lb));
	rw_format_size(st.file_bytes, fb, sizeof(fb));
	rw_format_size(st.map_bytes, mb, sizeof(mb));
	printf("store %s\n", c->store_dir);
	printf("  checkpoints   %" PRIu64 "\n", st.checkpoints);
	printf("  chunks        %" PRIu64 " (%" PRIu64 " pages: %s, %" PRIu64 " tree nodes: %s)\n",
	       st.chunks, st.page_chunks, pb, st.node_chunks, nb);
	printf("  logical       %s\n", lb);
	printf("  dedup ratio   %.2f\n", st.dedup_ratio);
	printf("  records       %" PRIu64 " (%" PRIu64 " bytes)\n", st.records, st.record_bytes);
	printf("  file          %s (map %s)\n", fb, mb);
	if (json_array_size(e.arr))
		printf("  %-8s %12s %12s  %s\n", "ID", "LOGICAL", "UNIQUE", "LABEL");
	json_array_foreach(e.arr, idx, v) {
		char l[24], u[24];
		rw_format_size((uint64_t)json_integer_value(json_object_get(v, "logical_bytes")), l,
			  sizeof(l));
		rw_format_size((uint64_t)json_integer_value(json_object_get(v, "unique_bytes")), u,
			  sizeof(u));
		printf("  %-8" PRIu64 " %12s %12s  %s\n",
		       (uint64_t)json_integer_value(json_object_get(v, "id")), l, u,
		       esc(json_string_value(json_object_get(v, "label"))));
	}
	json_decref(e.arr);
	return 0;
}

/* ===================================================================
 * salvage
 * =================================================================== */

struct sv_state {
	json_t *saved, *lost, *damage;
	struct cli_bar bar;
};

static int salvage_cb(void *arg, const struct store_salvage_item *it)
{
	struct sv_state *sv = arg;
	json_t *o;

	if (!sv->saved) {
		cli_bar_clear(&sv->bar);
		if (it->kind == STORE_SALVAGE_DAMAGE)
			printf("damage: %s\n", esc(it->why));
		else if (it->kind == STORE_SALVAGE_SAVED)
			printf("saved  %-6" PRIu64 " %s\n", it->id, esc(it->label));
		else
			printf("lost   %-6" PRIu64 " %s: %s\n", it->id,
			       it->label ? esc(it->label) : "(label unknown)", esc(it->why));
		return 0;
	}
	o = json_object();
	if (it->kind == STORE_SALVAGE_DAMAGE) {
		json_array_append_new(sv->damage, json_text(it->why));
		json_decref(o);
		return 0;
	}
	json_object_set_new(o, "id", json_integer((json_int_t)it->id));
	json_object_set_new(o, "label", it->label ? json_text(it->label) : json_null());
	if (it->kind == STORE_SALVAGE_LOST)
		json_object_set_new(o, "why", json_text(it->why));
	json_array_append_new(it->kind == STORE_SALVAGE_SAVED ? sv->saved : sv->lost, o);
	return 0;
}

static int cmd_salvage(struct ctx *c)
{
	struct sv_state sv = { .bar = CLI_BAR("salvage", !c->json) };
	struct store_salvage_stats st;
	int rc;

	if (!c->to)
		return cli_usage_error(c->cmd->name, "--to NEWDIR is required");
	if (c->json) {
		sv.saved = json_array();
		sv.lost = json_array();
		sv.damage = json_array();
	}
	rc = store_salvage(c->store_dir, c->to, salvage_cb, &sv, cli_bar_cb, &sv.bar, &st);
	cli_bar_end(&sv.bar);
	if (rc) {
		json_decref(sv.saved);
		json_decref(sv.lost);
		json_decref(sv.damage);
		if (rc == RW_ENOTSTORE && !store_error_detail()) {
			rw_error("salvage: %s is not a rewind store", c->store_dir);
			return EXIT_RUNTIME;
		}
		return fail(c, rc, NULL);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "store", json_string(c->store_dir));
		json_object_set_new(o, "to", json_string(c->to));
		json_object_set_new(o, "saved", sv.saved);
		json_object_set_new(o, "lost", sv.lost);
		json_object_set_new(o, "damage", sv.damage);
		json_object_set_new(o, "chunks", json_integer((json_int_t)st.chunks));
		return print_json(o) ? EXIT_RUNTIME : st.lost ? EXIT_RUNTIME : 0;
	}
	printf("salvaged %" PRIu64 " checkpoint%s into %s (%" PRIu64 " chunks); %" PRIu64
	       " lost, %" PRIu64 " damaged page%s\n", st.saved, st.saved == 1 ? "" : "s", c->to,
	       st.chunks, st.lost, st.damaged, st.damaged == 1 ? "" : "s");
	if (st.lost) {
		rw_error("salvage: %" PRIu64 " checkpoint%s of %s could not be saved", st.lost,
			 st.lost == 1 ? "" : "s", c->store_dir);
		return EXIT_RUNTIME;
	}
	return 0;
}

/* ===================================================================
 * Dispatch
 * =================================================================== */

static const struct cmd cmds[] = {
	{ "ls", "", "list checkpoints", 0, 0, false, cmd_ls },
	{ "inspect", "ID", "show a checkpoint: maps, records, commit counts", 1, 1, false,
	  cmd_inspect },
	{ "diff", "A B [--disk NAME]", "pages and records that differ between two checkpoints",
	  2, 2, false, cmd_diff },
	{ "rm", "ID...", "delete checkpoints and free what only they used", 1, -1, false,
	  cmd_rm },
	{ "gc", "[--dry-run]", "remove leftovers of a crash (finds nothing normally)", 0, 0,
	  false, cmd_gc },
	{ "verify", "", "re-hash every chunk, check every reference and count", 0, 0, false,
	  cmd_verify },
	{ "export", "ID FILE", "write one checkpoint to a self-contained file", 2, 2, false,
	  cmd_export },
	{ "import", "FILE", "add an exported checkpoint (creates the store if needed)", 1, 1,
	  true, cmd_import },
	{ "stats", "", "chunks, bytes, dedup ratio, bytes unique to each checkpoint", 0, 0,
	  false, cmd_stats },
	{ "salvage", "--to NEWDIR", "copy every intact checkpoint of a damaged store to a new one",
	  0, 0, false, cmd_salvage },
};

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (name && !strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

bool cli_store_has(const char *cmd)
{
	return find_cmd(cmd) != NULL;
}

void cli_store_usage(FILE *f)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		char left[64];

		snprintf(left, sizeof(left), "%s --store DIR %s", cmds[i].name, cmds[i].args);
		fprintf(f, "  rewind %-38s %s\n", left, cmds[i].help);
	}
	fprintf(f, "  (each takes --json for machine-readable output)\n");
}

static void cmd_help(const struct cmd *cmd, FILE *f)
{
	fprintf(f, "usage: rewind %s --store DIR [--json] %s\n  %s\n", cmd->name, cmd->args,
		cmd->help);
}

int cli_store_main(const char *name, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "disk", required_argument, NULL, 'd' },
		{ "to", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const struct cmd *cmd = find_cmd(name);
	struct ctx c = { 0 };
	struct store_open_opts so = { 0 };
	int opt, ret, rc;

	if (!cmd)
		return cli_usage_error(name ? name : "?", "unknown command");
	c.cmd = cmd;
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":s:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			c.store_dir = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 'n':
			if (strcmp(cmd->name, "gc"))
				return cli_usage_error(name, "--dry-run is only for gc");
			c.dry_run = true;
			break;
		case 'd':
			if (strcmp(cmd->name, "diff"))
				return cli_usage_error(name, "--disk is only for diff");
			c.disk = optarg;
			break;
		case 't':
			if (strcmp(cmd->name, "salvage"))
				return cli_usage_error(name, "--to is only for salvage");
			c.to = optarg;
			break;
		case 'h':
			cmd_help(cmd, stdout);
			return 0;
		case ':':
			return cli_usage_error(name, "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_error(name, "unknown option %s", argv[optind - 1]);
		}
	}
	for (; optind < argc; optind++) {
		if (!c.args)
			c.args = calloc((size_t)argc, sizeof(char *));
		if (!c.args)
			return EXIT_RUNTIME;
		c.args[c.nargs++] = argv[optind];
	}
	ret = EXIT_USAGE;
	if (!c.store_dir) {
		cli_usage_error(name, "--store DIR is required");
		goto out;
	}
	if (c.nargs < cmd->min_args) {
		cli_usage_error(name, "missing argument (%s)", cmd->args);
		goto out;
	}
	if (cmd->max_args >= 0 && c.nargs > cmd->max_args) {
		cli_usage_error(name, "unexpected argument '%s'", c.args[cmd->max_args]);
		goto out;
	}
	/* a wrong path is a usage error, found before anything is opened */
	if (cli_check_store(name, c.store_dir, !cmd->create))
		goto out;
	if (cmd->run == cmd_import && cli_check_input_file(name, "file", c.args[0]))
		goto out;
	if (cmd->run == cmd_export && cli_check_output_file(name, "file", c.args[1]))
		goto out;
	if (cmd->run == cmd_salvage && cli_check_store(name, c.to, false))
		goto out;
	/* a store this command creates is removed again if it fails */
	bool new_store = cmd->create && cli_path_missing(c.store_dir);
	/* salvage reads a damaged store itself: LMDB never opens it */
	if (cmd->run == cmd_salvage) {
		ret = cmd->run(&c);
		goto out;
	}
	so.flags = cmd->create ? STORE_OPEN_CREATE : 0;
	rc = store_open(c.store_dir, &so, &c.s);
	ret = EXIT_RUNTIME;
	if (rc == RW_ENOTSTORE) {
		rw_error("%s: %s is not a rewind store", name, c.store_dir);
		goto out;
	}
	if (rc == RW_EVERSION) {
		rw_error("%s: store %s has format version %u; this rewind reads version %u",
			 name, c.store_dir, so.found_format, STORE_FORMAT_VERSION);
		goto out;
	}
	if (rc && store_error_detail()) {
		rw_error("%s: %s", name, store_error_detail());
		if (rc == RW_ECORRUPT)
			rw_error("%s: rewind reads nothing more from a damaged file; 'rewind "
				 "salvage --store %s --to NEWDIR' copies what is intact", name,
				 c.store_dir);
		goto out;
	}
	if (rc) {
		rw_error("%s: cannot open store %s: %s", name, c.store_dir, rw_strerror(rc));
		goto out;
	}
	ret = cmd->run(&c);
	store_close(c.s);
	if (ret && new_store)
		store_remove_new(c.store_dir);
out:
	free(c.args);
	return ret;
}
