/*
 * console.c - stdin (or any fd) as a serial port's input (see console.h).
 *
 * Input flow, no busy-waiting:
 *
 *   in_fd readable --(event thread)--> read into pending --> serial_feed()
 *        ^                                                      | FIFO full:
 *        | watch again when pending is empty                    | stop watching
 *        +---- pump pending <--(rx-notify: guest emptied the FIFO)
 *
 * The console has its own epoll set holding the "trigger" fd, and the VM's
 * event thread watches that set. Taking the trigger out of the set (while
 * bytes are pending, and for good at EOF) silences the event thread without
 * any API to unregister an fd. The trigger is in_fd itself, or, for an fd
 * epoll cannot watch (a regular file, /dev/null), an eventfd that is always
 * readable: such an fd never blocks, so "readable" is always true.
 *
 * Lock order: console lock, then the serial's lock (serial_feed()). The
 * serial calls rx-notify without its lock held, so the notify path takes
 * them in the same order.
 */
#include "console.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "serial.h"
#include "util.h"
#include "vm.h"

struct console {
	struct device dev;     /* first: container_of from ops */
	pthread_mutex_t lock;
	struct serial *serial; /* cleared on detach; never used by destroy */
	int in_fd;             /* borrowed */
	int epfd;              /* the console's epoll set, watched by the event thread */
	int trigger_fd;        /* in_fd, or owned eventfd when in_fd cannot be polled */
	bool own_trigger;
	bool watching;         /* trigger is in epfd */
	bool ended;            /* EOF, read error, quit or detach: read no more */
	bool raw;              /* this console put the terminal in raw mode */
	bool escape;           /* Ctrl-A commands */
	bool esc_pending;      /* last byte was Ctrl-A */
	bool quit;             /* Ctrl-A x seen, on_quit not yet called */
	void (*on_quit)(void *opaque);
	void *opaque;
	size_t pend_off, pend_len;
	/* +1: a Ctrl-A held over from the previous read can expand one byte to two */
	uint8_t pend[CONSOLE_PENDING + 1];
};

/* ------------------------------------------------------------- terminal */

/*
 * The saved terminal mode is process-wide state, not VM state: a terminal
 * has one mode whichever VM changed it, and the places that must restore it
 * (signal handlers, atexit) receive no argument to find it through. So it
 * lives in these statics; everything about a VM stays in struct console.
 * term_fd is the terminal currently in raw mode (-1: none); it is swapped
 * atomically so that a signal handler and a normal restore never both
 * restore, and term_saved is written before term_fd publishes it.
 */
static int term_fd = -1;
static struct termios term_saved;
static pthread_mutex_t term_lock = PTHREAD_MUTEX_INITIALIZER; /* raw-mode entry and exit */
static bool term_hooks_installed;

/* The signals that end a process by default and can arrive while it runs. */
static const int term_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
static struct sigaction term_old[ARRAY_SIZE(term_signals)];

void console_restore_terminal(void)
{
	int fd = __atomic_exchange_n(&term_fd, -1, __ATOMIC_ACQ_REL);

	if (fd >= 0)
		tcsetattr(fd, TCSANOW, &term_saved);
}

static void term_signal(int sig, siginfo_t *info, void *uctx)
{
	int saved_errno = errno;
	const struct sigaction *old = NULL;

	console_restore_terminal();
	for (unsigned i = 0; i < ARRAY_SIZE(term_signals); i++)
		if (term_signals[i] == sig)
			old = &term_old[i];
	if (!old) {
		errno = saved_errno;
		return;
	}
	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, uctx);
	} else if (old->sa_handler == SIG_DFL) {
		/* die of the signal as if nothing had caught it */
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		sigemptyset(&dfl.sa_mask);
		sigaction(sig, &dfl, NULL);
		raise(sig); /* blocked until this handler returns */
	} else if (old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
	}
	errno = saved_errno;
}

static void term_block_signals(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	for (unsigned i = 0; i < ARRAY_SIZE(term_signals); i++)
		sigaddset(&set, term_signals[i]);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

/* Once per process: atexit and the signal handlers. term_lock held. */
static void term_install_hooks(void)
{
	struct sigaction sa = { .sa_sigaction = term_signal, .sa_flags = SA_SIGINFO | SA_RESTART };

	if (term_hooks_installed)
		return;
	term_hooks_installed = true;
	if (atexit(console_restore_terminal))
		rw_warn("console: cannot register the terminal restore at exit");
	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < ARRAY_SIZE(term_signals); i++) {
		if (sigaction(term_signals[i], NULL, &term_old[i]))
			continue;
		/* an ignored signal (nohup) ends nothing: leave it ignored */
		if (!(term_old[i].sa_flags & SA_SIGINFO) && term_old[i].sa_handler == SIG_IGN)
			continue;
		sigaction(term_signals[i], &sa, NULL);
	}
}

/*
 * Raw input with two translations kept, one per direction, because rewind's
 * guests (SDK programs) have no line discipline of their own and speak
 * "\n" only:
 *  - output: OPOST|ONLCR, so the guest's "\n" returns to column 0;
 *  - input: ICRNL, so Enter (CR) arrives as "\n" and ends a line.
 * Everything else is raw: no echo (the guest echoes if it wants to), no line
 * editing, ^C/^Z/^\ and ^S/^Q go to the guest as bytes, 8 bits clean.
 * Input from a pipe or a file is never translated.
 */
static void term_make_raw(struct termios *t)
{
	t->c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | IXON);
	t->c_iflag |= ICRNL;
	t->c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	t->c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
	t->c_cflag |= CS8;
	t->c_oflag |= OPOST | ONLCR;
	t->c_cc[VMIN] = 1;
	t->c_cc[VTIME] = 0;
}

/* Put terminal fd in raw mode for c. 0, -EBUSY (someone holds one), -errno. */
static int term_enter_raw(int fd)
{
	struct termios saved, raw;
	sigset_t oldmask;
	int ret = 0;

	pthread_mutex_lock(&term_lock);
	if (__atomic_load_n(&term_fd, __ATOMIC_ACQUIRE) >= 0) {
		ret = -EBUSY;
		goto out;
	}
	if (tcgetattr(fd, &saved)) {
		ret = -errno;
		goto out;
	}
	raw = saved;
	term_make_raw(&raw);
	term_install_hooks();
	/*
	 * Publish the saved mode before changing the terminal, with the
	 * signals blocked so that none lands between the two steps.
	 */
	term_block_signals(&oldmask);
	term_saved = saved;
	__atomic_store_n(&term_fd, fd, __ATOMIC_RELEASE);
	if (tcsetattr(fd, TCSANOW, &raw)) {
		ret = -errno;
		__atomic_store_n(&term_fd, -1, __ATOMIC_RELEASE);
	}
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
out:
	pthread_mutex_unlock(&term_lock);
	return ret;
}

static void term_leave_raw(void)
{
	pthread_mutex_lock(&term_lock);
	console_restore_terminal();
	pthread_mutex_unlock(&term_lock);
}

/* ---------------------------------------------------------------- input */

static void watch(struct console *c, bool on)
{
	struct epoll_event ee = { .events = EPOLLIN };

	if (on == c->watching)
		return;
	if (epoll_ctl(c->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c->trigger_fd, &ee)) {
		rw_warn("console %s: %s input watch: %s", c->dev.id, on ? "adding" : "removing",
			strerror(errno));
		if (on)
			return;
	}
	c->watching = on;
}

static void end_input(struct console *c)
{
	c->ended = true;
	c->esc_pending = false;
	watch(c, false);
}

/* Escape processing of n bytes read from in_fd into the pending buffer. */
static void take_input(struct console *c, const uint8_t *buf, size_t n)
{
	uint8_t *out = c->pend + c->pend_off + c->pend_len;
	size_t k = 0;

	for (size_t i = 0; i < n && !c->quit; i++) {
		uint8_t b = buf[i];

		if (!c->escape) {
			out[k++] = b;
		} else if (c->esc_pending) {
			c->esc_pending = false;
			if (b == 'x' || b == 'X') {
				c->quit = true;
			} else if (b == CONSOLE_ESCAPE_CHAR) {
				out[k++] = b;
			} else {
				out[k++] = CONSOLE_ESCAPE_CHAR;
				out[k++] = b;
			}
		} else if (b == CONSOLE_ESCAPE_CHAR) {
			c->esc_pending = true;
		} else {
			out[k++] = b;
		}
	}
	c->pend_len += k;
}

/*
 * Push pending bytes into the UART; watch in_fd only while nothing is
 * pending. Console lock held.
 */
static void pump(struct console *c)
{
	while (c->pend_len && c->serial) {
		int n = serial_feed(c->serial, c->pend + c->pend_off, c->pend_len);

		if (n <= 0)
			break;
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	if (c->pend_len == 0)
		c->pend_off = 0;
	watch(c, c->pend_len == 0 && !c->ended);
}

/* Read once from in_fd if the trigger says so. Console lock held. */
static void read_input(struct console *c)
{
	uint8_t buf[CONSOLE_PENDING];
	struct epoll_event ev;
	ssize_t n;

	if (c->ended || c->pend_len || !c->watching)
		return;
	/* in_fd is blocking (it is shared with the shell): read only if ready */
	if (epoll_wait(c->epfd, &ev, 1, 0) != 1)
		return;
	n = read(c->in_fd, buf, sizeof(buf));
	if (n > 0) {
		take_input(c, buf, (size_t)n);
		if (c->quit)
			end_input(c);
	} else if (n == 0) {
		end_input(c);
	} else if (errno != EINTR && errno != EAGAIN) {
		/* EIO: the terminal hung up */
		rw_debug("console %s: reading input: %s", c->dev.id, strerror(errno));
		end_input(c);
	}
}

void console_poll(struct console *c)
{
	void (*on_quit)(void *) = NULL;

	pthread_mutex_lock(&c->lock);
	read_input(c);
	pump(c);
	if (c->quit) {
		c->quit = false;
		on_quit = c->on_quit;
	}
	pthread_mutex_unlock(&c->lock);
	if (on_quit)
		on_quit(c->opaque);
}

static void console_event(void *opaque, int fd, uint32_t events)
{
	console_poll(opaque);
}

/* The guest emptied the RX FIFO (vCPU thread, serial lock not held). */
static void console_rx_notify(void *opaque)
{
	struct console *c = opaque;

	pthread_mutex_lock(&c->lock);
	pump(c);
	pthread_mutex_unlock(&c->lock);
}

bool console_input_ended(struct console *c)
{
	bool ended;

	pthread_mutex_lock(&c->lock);
	ended = c->ended;
	pthread_mutex_unlock(&c->lock);
	return ended;
}

void console_detach(struct console *c)
{
	struct serial *s;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	end_input(c);
	c->pend_len = 0;
	s = c->serial;
	c->serial = NULL;
	if (s)
		serial_set_rx_notify(s, NULL, NULL);
	if (c->raw) {
		c->raw = false;
		term_leave_raw();
	}
	pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ device ops */

/*
 * Runs from vm_destroy() once the VM's threads are gone. The serial may
 * already be destroyed (devices go in creation order), so it is not touched.
 */
static void console_destroy(struct device *dev)
{
	struct console *c = container_of(dev, struct console, dev);

	if (c->raw)
		term_leave_raw();
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->own_trigger)
		close(c->trigger_fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static const struct device_ops console_ops = {
	.destroy = console_destroy,
};

/* No record: the console holds host state only. */
static const struct device_type console_device_type = {
	.name = CONSOLE_TYPE_NAME,
	.state_version = 0,
	.min_version = 0,
	.ops = &console_ops,
};

/* --------------------------------------------------------------- attach */

int console_attach_flags(struct vm *vm, struct serial *s, int in_fd, unsigned flags,
			 void (*on_quit)(void *opaque), void *opaque, struct console **out)
{
	struct epoll_event ee = { .events = EPOLLIN };
	struct console *c;
	bool tty;
	int ret;

	*out = NULL;
	if (in_fd < 0)
		return -EBADF;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->dev.type = &console_device_type;
	snprintf(c->dev.id, sizeof(c->dev.id), "%s", serial_device(s)->id);
	pthread_mutex_init(&c->lock, NULL);
	c->serial = s;
	c->in_fd = in_fd;
	c->trigger_fd = in_fd;
	c->on_quit = on_quit;
	c->opaque = opaque;
	tty = isatty(in_fd);
	c->escape = (flags & CONSOLE_ESCAPE) || (tty && !(flags & CONSOLE_NO_ESCAPE));

	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epfd < 0) {
		ret = -errno;
		goto fail_free;
	}
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, in_fd, &ee)) {
		if (errno != EPERM) {
			ret = -errno;
			goto fail_epoll;
		}
		/* not pollable: reads never block, so it is always "readable" */
		c->trigger_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
		if (c->trigger_fd < 0) {
			ret = -errno;
			goto fail_epoll;
		}
		c->own_trigger = true;
		if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->trigger_fd, &ee)) {
			ret = -errno;
			goto fail_trigger;
		}
	}
	c->watching = true;

	ret = vm_add_device(vm, &c->dev);
	if (ret)
		goto fail_trigger;
	/* From here on the VM owns c: failures leave it inert for vm_destroy(). */
	ret = vm_event_add(vm, c->epfd, console_event, c);
	if (ret) {
		pthread_mutex_lock(&c->lock);
		end_input(c);
		pthread_mutex_unlock(&c->lock);
		return ret;
	}
	serial_set_rx_notify(s, console_rx_notify, c);

	if (tty && !(flags & CONSOLE_NO_RAW)) {
		ret = term_enter_raw(in_fd);
		if (ret)
			rw_warn("console %s: cannot put the terminal in raw mode: %s", c->dev.id,
				rw_strerror(ret));
		else
			c->raw = true;
	}
	*out = c;
	return 0;

fail_trigger:
	if (c->own_trigger)
		close(c->trigger_fd);
fail_epoll:
	close(c->epfd);
fail_free:
	pthread_mutex_destroy(&c->lock);
	free(c);
	return ret;
}

int console_attach(struct vm *vm, struct serial *s, int in_fd, void (*on_quit)(void *opaque),
		   void *opaque, struct console **out)
{
	return console_attach_flags(vm, s, in_fd, 0, on_quit, opaque, out);
}
