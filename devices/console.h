/*
 * console.h - host input (normally stdin) feeding a serial port.
 *
 * The console reads in_fd on the VM's event thread and pushes the bytes into
 * the UART with serial_feed(). When the guest does not drain the RX FIFO as
 * fast as input arrives, the bytes wait in a pending buffer and the console
 * stops watching in_fd; the serial's rx-notify callback (the guest emptied
 * the FIFO) pushes the rest and re-arms the watch. Nothing polls or spins,
 * and no input byte is lost. At end of input (EOF, or a hung-up terminal)
 * the console stops reading for good.
 *
 * Terminal: when in_fd is a terminal, attaching puts it in raw mode (no
 * echo, no line editing, no signals from ^C/^Z, no flow control: every key
 * reaches the guest) but keeps one translation each way, because rewind's
 * guests have no line discipline and use "\n" only: ONLCR on output (the
 * guest's bare "\n" returns to column 0) and ICRNL on input (Enter arrives
 * as "\n"). Pipes and files are never translated. The saved mode is restored by console_detach(), by vm_destroy()
 * (which destroys the console), at exit() through atexit, and on SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT and SIGPIPE (guest output into a closed pipe).
 * The signal handlers restore the terminal and
 * then hand the signal to whatever handler was installed before (or re-raise
 * it with the default action); they stay installed for the life of the
 * process. A program that installs its own handlers for these signals
 * should do so before console_attach(), or call console_restore_terminal()
 * from them. Only one console at a time may hold a terminal in raw mode.
 *
 * Escape: on a terminal (or with CONSOLE_ESCAPE), Ctrl-A is a command
 * prefix, as in QEMU: Ctrl-A x calls on_quit; Ctrl-A Ctrl-A sends one Ctrl-A
 * to the guest; Ctrl-A followed by anything else sends both bytes. After
 * Ctrl-A x the console stops reading input.
 *
 * Lifetime: the console is an entry on the VM's device list (type
 * "console", id = the serial's id, no checkpoint record: it holds no guest
 * state), so vm_destroy() frees it after the VM's threads have stopped.
 * in_fd is borrowed, never closed.
 */
#ifndef RW_DEVICES_CONSOLE_H
#define RW_DEVICES_CONSOLE_H

#include <stdbool.h>

#include "err.h"

struct vm;
struct serial;
struct console;

#define CONSOLE_TYPE_NAME "console"
#define CONSOLE_ESCAPE_CHAR 0x01 /* Ctrl-A */
#define CONSOLE_PENDING 4096     /* bytes read from in_fd at a time */

enum console_flags {
	CONSOLE_NO_RAW = 1u << 0,    /* leave a terminal's mode alone */
	CONSOLE_ESCAPE = 1u << 1,    /* Ctrl-A commands even if in_fd is not a terminal */
	CONSOLE_NO_ESCAPE = 1u << 2, /* no Ctrl-A commands even on a terminal */
};

/*
 * Feed in_fd into serial s, with the defaults: a terminal goes raw and gets
 * the Ctrl-A commands; anything else is read as is. Must be called before
 * vm_start() (it registers with the event thread). on_quit(opaque) runs on
 * the event thread, without any console or serial lock held, when the user
 * types the quit escape; it may be NULL.
 *
 * A terminal that cannot be put in raw mode (another console holds one, or
 * tcsetattr fails) is a warning, not an error: input then arrives cooked.
 *
 * Errors: -EBADF (in_fd < 0), -EEXIST (the serial already has a console),
 * -ENOMEM, -errno (epoll, eventfd). On an error after the console joined the
 * device list it stays there, inert, until vm_destroy(); *out is NULL.
 */
int console_attach(struct vm *vm, struct serial *s, int in_fd, void (*on_quit)(void *opaque),
		   void *opaque, struct console **out) RW_MUST_CHECK;

/* console_attach() with enum console_flags. */
int console_attach_flags(struct vm *vm, struct serial *s, int in_fd, unsigned flags,
			 void (*on_quit)(void *opaque), void *opaque,
			 struct console **out) RW_MUST_CHECK;

/*
 * Stop reading input and restore the terminal now. Idempotent; any thread;
 * c may be NULL (nothing to do). The memory stays until vm_destroy().
 */
void console_detach(struct console *c);

/*
 * Handle whatever input is ready, without blocking: what the event thread
 * does when in_fd becomes readable. For tests and for owners that run their
 * own loop.
 */
void console_poll(struct console *c);

/* True once input has ended (EOF, error, quit escape or detach). */
bool console_input_ended(struct console *c);

/*
 * Put back the terminal mode saved when a console entered raw mode, if any.
 * Async-signal-safe and idempotent.
 */
void console_restore_terminal(void);

#endif
