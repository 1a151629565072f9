/*
 * string.c - memory and string helpers, and argument parsing.
 *
 * The compiler also calls memcpy/memset/memmove/memcmp on its own (struct
 * copies, zeroing loops), so these are the ordinary C names. This file is
 * built with -fno-tree-loop-distribute-patterns so that they never turn
 * into calls to themselves.
 */
#include "rw/rw.h"

void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + n)
		return memcpy(dst, src, n);
	while (n >= 8) {
		uint64_t w;

		n -= 8;
		__builtin_memcpy(&w, s + n, 8);
		__builtin_memcpy(d + n, &w, 8);
	}
	while (n) {
		n--;
		d[n] = s[n];
	}
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

size_t strnlen(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

char *strchr(const char *s, int c)
{
	for (;; s++) {
		if (*s == (char)c)
			return (char *)s;
		if (!*s)
			return NULL;
	}
}

/* ------------------------------------------------------------- numbers */

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	return 99;
}

uint64_t rw_strtoul(const char *s, char **end, int base)
{
	const char *p = s;
	uint64_t v = 0;
	int any = 0, overflow = 0;

	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p == '+')
		p++;
	if ((base == 0 || base == 16) && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') &&
	    digit_value(p[2]) < 16) {
		p += 2;
		base = 16;
	} else if (base == 0) {
		base = p[0] == '0' ? 8 : 10;
	}
	if (base < 2 || base > 36) {
		if (end)
			*end = (char *)s;
		return 0;
	}
	for (;; p++) {
		int d = digit_value(*p);

		if (d >= base)
			break;
		any = 1;
		if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			overflow = 1;
		else
			v = v * (uint64_t)base + (uint64_t)d;
	}
	if (end)
		*end = (char *)(any ? p : s);
	return overflow ? UINT64_MAX : v;
}

int rw_atoi(const char *s)
{
	int neg = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	uint64_t v = rw_strtoul(s, NULL, 10);
	return neg ? -(int)v : (int)v;
}

/* Find "key" as a whole blank-separated word, optionally followed by '='. */
static const char *arg_find(const char *args, const char *key)
{
	size_t klen = strlen(key);
	const char *p = args;

	if (!args || !klen)
		return NULL;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (strncmp(p, key, klen) == 0 &&
		    (p[klen] == 0 || p[klen] == '=' || p[klen] == ' ' || p[klen] == '\t' ||
		     p[klen] == ','))
			return p + klen;
		while (*p && *p != ' ' && *p != '\t' && *p != ',')
			p++;
	}
	return NULL;
}

uint64_t rw_arg_u64(const char *args, const char *key, uint64_t def)
{
	const char *p = arg_find(args, key);
	char *end;
	uint64_t v, mul = 1;

	if (!p || *p != '=')
		return def;
	v = rw_strtoul(p + 1, &end, 0);
	if (end == p + 1)
		return def;
	if (*end == 'K' || *end == 'k')
		mul = 1ULL << 10;
	else if (*end == 'M' || *end == 'm')
		mul = 1ULL << 20;
	else if (*end == 'G' || *end == 'g')
		mul = 1ULL << 30;
	if (mul > 1 && v > UINT64_MAX / mul)
		return UINT64_MAX;
	return v * mul;
}

int rw_arg_has(const char *args, const char *word)
{
	return arg_find(args, word) != NULL;
}
