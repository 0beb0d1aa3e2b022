/* strset.c - the keyed hash and the string set of strset_int.h. */
#include "strset_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#include "nexus/error.h"

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

struct sip {
	uint64_t v0, v1, v2, v3;
	uint64_t m;          /* bytes of the word under way, little-endian */
	unsigned mlen;
	uint64_t total;
};

static void round2(struct sip *s, int n)
{
	while (n--) {
		s->v0 += s->v1; s->v1 = ROTL(s->v1, 13); s->v1 ^= s->v0; s->v0 = ROTL(s->v0, 32);
		s->v2 += s->v3; s->v3 = ROTL(s->v3, 16); s->v3 ^= s->v2;
		s->v0 += s->v3; s->v3 = ROTL(s->v3, 21); s->v3 ^= s->v0;
		s->v2 += s->v1; s->v1 = ROTL(s->v1, 17); s->v1 ^= s->v2; s->v2 = ROTL(s->v2, 32);
	}
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void feed(struct sip *s, const unsigned char *p, size_t n)
{
	size_t i;

	s->total += n;
	for (i = 0; i < n; i++) {
		s->m |= (uint64_t)p[i] << (8 * s->mlen);
		if (++s->mlen == 8) {
			s->v3 ^= s->m;
			round2(s, 2);
			s->v0 ^= s->m;
			s->m = 0;
			s->mlen = 0;
		}
	}
}

uint64_t nx_siphash24(const unsigned char key[16], const void *a, size_t alen,
		      const void *b, size_t blen)
{
	uint64_t k0 = le64(key), k1 = le64(key + 8), last;
	struct sip s = { k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
			 k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull, 0, 0, 0 };

	if (alen)
		feed(&s, a, alen);
	if (blen)
		feed(&s, b, blen);
	last = s.m | s.total << 56;
	s.v3 ^= last;
	round2(&s, 2);
	s.v0 ^= last;
	s.v2 ^= 0xff;
	round2(&s, 4);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

static unsigned char key[16];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void key_init(void)
{
	struct timespec ts;
	uint64_t mix[2];
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(key) && (n = getrandom(key + got, sizeof(key) - got, 0)) > 0)
		got += (size_t)n;
	if (got == sizeof(key))
		return;
	/* no getrandom (seccomp, old kernel): the clock and ASLR addresses */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	mix[0] = (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts;
	mix[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&key_init;
	memcpy(key, mix, sizeof(key));
}

uint64_t nx_keyhash(const void *a, size_t alen, const void *b, size_t blen)
{
	pthread_once(&key_once, key_init);
	return nx_siphash24(key, a, alen, b, blen);
}

static size_t slot(const struct strset *s, const char *str, size_t len)
{
	size_t i = (size_t)nx_keyhash(str, len, NULL, 0) & (s->cap - 1);

	while (s->slots[i] && (strncmp(s->slots[i], str, len) != 0 || s->slots[i][len]))
		i = (i + 1) & (s->cap - 1);
	return i;
}

const char *nx_strset_find(const struct strset *s, const char *str, size_t len)
{
	return s->cap ? s->slots[slot(s, str, len)] : NULL;
}

bool nx_strset_has(const struct strset *s, const char *str)
{
	return nx_strset_find(s, str, strlen(str)) != NULL;
}

int nx_strset_add(struct strset *s, const char *str, bool *added)
{
	size_t len = strlen(str), i;
	char **p;

	if (added)
		*added = false;
	if ((s->n + 1) * 2 > s->cap) {
		struct strset bigger = { NULL, s->cap ? s->cap * 2 : 64, 0 };

		if (!(bigger.slots = calloc(bigger.cap, sizeof(char *))))
			return NX_ENOMEM;
		for (i = 0; i < s->cap; i++)
			if (s->slots[i])
				bigger.slots[slot(&bigger, s->slots[i], strlen(s->slots[i]))] =
					s->slots[i];
		bigger.n = s->n;
		free(s->slots);
		*s = bigger;
	}
	p = &s->slots[slot(s, str, len)];
	if (*p)
		return 0;
	if (!(*p = strdup(str)))
		return NX_ENOMEM;
	s->n++;
	if (added)
		*added = true;
	return 0;
}

void nx_strset_release(struct strset *s)
{
	size_t i;

	for (i = 0; i < s->cap; i++)
		free(s->slots[i]);
	free(s->slots);
	memset(s, 0, sizeof(*s));
}
