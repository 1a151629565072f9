/*
 * printf.c - formatted output: rw_vsnprintf and the console printf.
 *
 * One formatter writes into a sink; the snprintf sink fills a buffer, the
 * console sink flushes a 512-byte buffer with one rw_write() per fill.
 */
#include "rw/rw.h"

struct sink {
	char *buf;
	size_t cap;     /* bytes buf can hold */
	size_t used;    /* bytes in buf */
	size_t total;   /* bytes produced */
	int console;    /* flush to the console when full */
};

static void sink_put(struct sink *s, char c)
{
	s->total++;
	if (s->used < s->cap) {
		s->buf[s->used++] = c;
		return;
	}
	if (s->console) {
		rw_write(s->buf, s->used);
		s->used = 0;
		s->buf[s->used++] = c;
	}
}

static void sink_pad(struct sink *s, char c, int n)
{
	while (n-- > 0)
		sink_put(s, c);
}

enum { F_LEFT = 1, F_ZERO = 2, F_PLUS = 4, F_SPACE = 8, F_ALT = 16 };

/* One integer conversion: sign/prefix, zero or blank padding, precision. */
static void put_int(struct sink *s, uint64_t v, int neg, unsigned base, int upper, int flags,
		    int width, int prec, const char *prefix)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0, plen = 0, zeros;
	char sign = 0;

	if (!(prec == 0 && v == 0))
		do {
			tmp[n++] = digits[v % base];
			v /= base;
		} while (v);
	if (neg)
		sign = '-';
	else if (flags & F_PLUS)
		sign = '+';
	else if (flags & F_SPACE)
		sign = ' ';
	if (prefix)
		plen = (int)strlen(prefix);
	zeros = prec > n ? prec - n : 0;
	int len = n + zeros + plen + (sign ? 1 : 0);
	if ((flags & F_ZERO) && !(flags & F_LEFT) && prec < 0 && width > len) {
		zeros += width - len;
		len = width;
	}
	if (!(flags & F_LEFT))
		sink_pad(s, ' ', width - len);
	if (sign)
		sink_put(s, sign);
	for (int i = 0; i < plen; i++)
		sink_put(s, prefix[i]);
	sink_pad(s, '0', zeros);
	while (n)
		sink_put(s, tmp[--n]);
	if (flags & F_LEFT)
		sink_pad(s, ' ', width - len);
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		int flags = 0, width = 0, prec = -1, lng = 0;

		if (*fmt != '%') {
			sink_put(s, *fmt);
			continue;
		}
		fmt++;
		for (;; fmt++) {
			if (*fmt == '-')
				flags |= F_LEFT;
			else if (*fmt == '0')
				flags |= F_ZERO;
			else if (*fmt == '+')
				flags |= F_PLUS;
			else if (*fmt == ' ')
				flags |= F_SPACE;
			else if (*fmt == '#')
				flags |= F_ALT;
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			if (width < 0) {
				flags |= F_LEFT;
				width = -width;
			}
			fmt++;
		} else {
			while (*fmt >= '0' && *fmt <= '9')
				width = width * 10 + (*fmt++ - '0');
		}
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			} else {
				while (*fmt >= '0' && *fmt <= '9')
					prec = prec * 10 + (*fmt++ - '0');
			}
		}
		/* length: -2 hh, -1 h, 0 int, 1 long/size_t/intmax_t/ptrdiff_t, 2 ll */
		for (;; fmt++) {
			if (*fmt == 'h')
				lng--;
			else if (*fmt == 'l')
				lng++;
			else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't')
				lng = 1;
			else
				break;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng >= 1 ? va_arg(ap, int64_t) : va_arg(ap, int);

			if (lng == -1)
				v = (short)v;
			else if (lng <= -2)
				v = (signed char)v;
			put_int(s, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0, 10, 0, flags, width, prec,
				NULL);
			break;
		}
		case 'u':
		case 'x':
		case 'X':
		case 'o': {
			uint64_t v = lng >= 1 ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			unsigned base = *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16;

			if (lng == -1)
				v = (unsigned short)v;
			else if (lng <= -2)
				v = (unsigned char)v;
			const char *prefix = NULL;

			if ((flags & F_ALT) && v && base == 16)
				prefix = *fmt == 'X' ? "0X" : "0x";
			else if ((flags & F_ALT) && v && base == 8)
				prefix = "0";
			put_int(s, v, 0, base, *fmt == 'X', flags & ~(F_PLUS | F_SPACE), width, prec, prefix);
			break;
		}
		case 'p':
			put_int(s, (uint64_t)(uintptr_t)va_arg(ap, void *), 0, 16, 0,
				flags & ~(F_PLUS | F_SPACE), width, prec, "0x");
			break;
		case 'c':
			if (!(flags & F_LEFT))
				sink_pad(s, ' ', width - 1);
			sink_put(s, (char)va_arg(ap, int));
			if (flags & F_LEFT)
				sink_pad(s, ' ', width - 1);
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			int n;

			if (!str)
				str = "(null)";
			n = (int)(prec >= 0 ? strnlen(str, (size_t)prec) : strlen(str));
			if (!(flags & F_LEFT))
				sink_pad(s, ' ', width - n);
			for (int i = 0; i < n; i++)
				sink_put(s, str[i]);
			if (flags & F_LEFT)
				sink_pad(s, ' ', width - n);
			break;
		}
		case '%':
			sink_put(s, '%');
			break;
		case 0:
			return;
		default: /* unknown conversion: print it as is */
			sink_put(s, '%');
			sink_put(s, *fmt);
			break;
		}
	}
}

int rw_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sink s = { .buf = buf, .cap = size ? size - 1 : 0 };

	format(&s, fmt, ap);
	if (size)
		buf[s.used] = 0;
	return (int)s.total;
}

int rw_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = rw_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int rw_vprintf(const char *fmt, va_list ap)
{
	char buf[512];
	struct sink s = { .buf = buf, .cap = sizeof(buf), .console = 1 };

	format(&s, fmt, ap);
	if (s.used)
		rw_write(buf, s.used);
	return (int)s.total;
}

int rw_printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = rw_vprintf(fmt, ap);
	va_end(ap);
	return n;
}
