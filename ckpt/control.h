/*
 * control.h - the control socket of a running machine (`--control PATH`).
 *
 * A Unix stream socket, mode 0600, speaking JSON lines. A client sends one
 * JSON object per line and gets exactly one JSON line back per request, in
 * the order it sent them; any number of clients may be connected at once.
 *
 * Requests:
 *
 *   {"cmd":"checkpoint"}                 {"cmd":"checkpoint","label":"x"}
 *   {"cmd":"rollback","id":N}            N a positive integer
 *   {"cmd":"rollback","label":"x"}       the one checkpoint labelled x
 *   {"cmd":"pin","id":N}   {"cmd":"unpin","id":N}   (or "label":"x")
 *   {"cmd":"pause"}   {"cmd":"resume"}   {"cmd":"status"}   {"cmd":"quit"}
 *
 * Replies:
 *
 *   {"ok":true,"cmd":"<cmd>", ...results...}
 *   {"ok":false,"error":"<rw_errname>","message":"<what was wrong>"}
 *
 * Results by command:
 *   checkpoint  id, parent (null for a full one), label, dirty_pages,
 *               new_chunks, dedup_hits, zero_pages, bytes_written,
 *               pause_us (integer), persist_ms (number); the reply comes
 *               once the checkpoint is committed
 *   rollback    id
 *   pin, unpin  id, pinned (true|false); a pinned checkpoint survives
 *               retention (--keep)
 *   pause       paused: true          resume  paused: false
 *   status      running, paused, state ("running"|"paused"|"stopped"),
 *               ncpus, mem_size, dirty_log ("ring"|"bitmap"), store_dir
 *               (null without a store), store_bytes, checkpoints, last_id,
 *               head_id (null when none), pinned (a count), last (the
 *               last checkpoint's report as in the checkpoint reply, plus
 *               "error" when it failed; null before the first), then any fields added by the
 *               status hook (control_set_status_extra)
 *   quit        nothing; the reply is written before the VM is asked to stop
 *
 * Malformed input (not JSON, not an object, unknown cmd, a missing,
 * ill-typed or unknown field) gets an error reply with error "EINVAL" and
 * changes nothing. A line longer than CONTROL_LINE_MAX gets an "RW_ELIMIT"
 * reply and the connection is closed. A client that disconnects, with or
 * without a request pending, affects no one else.
 *
 * Threads: the socket is served by a thread of its own, which runs one
 * request at a time; a checkpoint or rollback blocks the other clients until
 * it is done. Machine operations go through ckpt/machine.h, which serialises
 * them with any other caller.
 */
#ifndef RW_CKPT_CONTROL_H
#define RW_CKPT_CONTROL_H

#include <jansson.h>

#include "err.h"
#include "machine.h"

/* Longest request line accepted, newline excluded. */
#define CONTROL_LINE_MAX (64 * 1024)
/* Clients served at once; one more is told RW_ELIMIT and closed. */
#define CONTROL_MAX_CLIENTS 64

struct control;

/*
 * Create the socket at path and start serving m on it.
 *
 * A stale socket at path (nothing listening) is replaced; a live one fails
 * with -EADDRINUSE, and any other kind of file with -EEXIST (it is never
 * removed). The socket is created mode 0600 (the process umask is narrowed
 * around bind(2), then the mode is checked and set again).
 *
 * m must outlive the control; stop it with control_stop() before
 * machine_destroy(). On failure nothing is left behind and the reason has
 * been logged once, naming the path.
 *
 * @param m     in: the machine to drive
 * @param path  in: socket path, shorter than sun_path (107 bytes on Linux)
 * @param out   out: the control, on success
 * @return 0; -ENAMETOOLONG (path too long); -EEXIST (path is not a socket);
 *         -EADDRINUSE (another process listens there); -ENOMEM; or a
 *         negative errno from socket/bind/listen/chmod/eventfd/pthread_create.
 */
int control_start(struct machine *m, const char *path, struct control **out) RW_MUST_CHECK;

/*
 * Stop serving: wake and join the thread (after the request it may be
 * running), write out what replies the clients' sockets accept without
 * blocking, close every connection and remove the socket file if it is
 * still the one control_start() created. NULL is a no-op.
 */
void control_stop(struct control *c);

/*
 * Install fn to add fields to every status reply. fn runs on the control
 * thread with obj the reply being built (it already holds the fields above)
 * and may add, not remove. Replaces any earlier hook; NULL removes it. Safe
 * to call while the control runs.
 */
void control_set_status_extra(struct control *c, void (*fn)(void *opaque, json_t *obj),
			      void *opaque);

/*
 * Decode and check one request line (without its newline; a trailing '\r'
 * is dropped) exactly as the control thread does before it runs a request,
 * without running it: no machine, no socket.
 *
 * @param line   the bytes of the line (need not be NUL-terminated)
 * @param len    their count
 * @param reply  out: for a refused line, the error reply the control would
 *               send (one JSON line without its newline; free() it), or
 *               NULL if out of memory; NULL for an accepted line
 * @return 0 if the request would be run; otherwise the error its reply
 *         names (-EINVAL for malformed input, RW_ELIMIT for a label too
 *         long, -ENOMEM)
 */
int control_check_line(const char *line, size_t len, char **reply) RW_MUST_CHECK;

#endif
