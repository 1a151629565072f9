/*
 * rw/checksum.h - the SDK's 64-bit checksum, shared by guests and host tests.
 *
 * Plain C with fixed-width types: it compiles freestanding in the guest and
 * hosted in the VMM and tests, so a test can recompute what a guest printed.
 *
 * Definition (rw_checksum_ref(p, len)), all arithmetic modulo 2^64:
 *
 *   M = 0xff51afd7ed558ccd, G = 0x9e3779b97f4a7c15
 *   Split the bytes into 64-bit little-endian words w[0..n-1], n =
 *   ceil(len / 8); a last partial word is zero-padded.
 *   Four lanes: a[j] = G * (j + 1) ^ len, j = 0..3.
 *   For each word i in order: j = i mod 4,
 *       a[j] = (a[j] ^ w[i]) * M;  a[j] ^= a[j] >> 29
 *   Combine: h = len; for j = 0..3: h = (h ^ a[j]) * M; h ^= h >> 32
 *   Finish:  h ^= h >> 29; h *= 0xbf58476d1ce4e5b9; h ^= h >> 32
 *
 * Every step of a lane is a bijection, so changing any one word always
 * changes the result; it is a checksum for equality tests, not a MAC. The
 * four independent lanes let a CPU overlap the multiplies: about 1 byte per
 * cycle (several GB/s) on current x86-64.
 */
#ifndef RW_GUEST_CHECKSUM_H
#define RW_GUEST_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#define RW_CSUM_M 0xff51afd7ed558ccdULL
#define RW_CSUM_G 0x9e3779b97f4a7c15ULL

static inline uint64_t rw_csum_load64(const unsigned char *p, size_t n)
{
	uint64_t w = 0;

	for (size_t k = 0; k < n; k++)
		w |= (uint64_t)p[k] << (8 * k);
	return w;
}

static inline uint64_t rw_csum_step(uint64_t a, uint64_t w)
{
	a = (a ^ w) * RW_CSUM_M;
	return a ^ (a >> 29);
}

static inline uint64_t rw_csum_lane_init(unsigned j, uint64_t len)
{
	return (RW_CSUM_G * (j + 1)) ^ len;
}

static inline uint64_t rw_csum_finish(const uint64_t a[4], uint64_t len)
{
	uint64_t h = len;

	for (unsigned j = 0; j < 4; j++) {
		h = (h ^ a[j]) * RW_CSUM_M;
		h ^= h >> 32;
	}
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h;
}

/* The reference implementation of the definition above. */
static inline uint64_t rw_checksum_ref(const void *data, size_t len)
{
	const unsigned char *p = (const unsigned char *)data;
	uint64_t a[4];
	size_t i, n = len / 8;

	for (unsigned j = 0; j < 4; j++)
		a[j] = rw_csum_lane_init(j, len);
	for (i = 0; i < n; i++)
		a[i & 3] = rw_csum_step(a[i & 3], rw_csum_load64(p + 8 * i, 8));
	if (len & 7)
		a[i & 3] = rw_csum_step(a[i & 3], rw_csum_load64(p + 8 * i, len & 7));
	return rw_csum_finish(a, len);
}

#endif
