/*
 * fingerprint_values.c - the order-invariant value fingerprint (nexus/fingerprint.h,
 * "Values").
 *
 * Chunks find a teacher tensor's bytes in their order.  Reversed,
 * permuted, interleaved with zeros, widened to float64 or scaled by a
 * power of two, the same values are still there, in no order a hash of
 * bytes can follow.  So a sample of each float32 teacher tensor's values
 * is kept as a set, and each student tensor is asked how many of them it
 * holds.
 *
 * Sample: a value is taken when a keyed hash of its mantissa (not the
 * sign nor the exponent, so -v and 2^k x v are the same candidate; not the
 * lowest mantissa bit nor the second decoy's, see decoys) falls under a
 * rate; zeros, subnormals, NaN and infinities never.  A value seen twice in the teacher (1.0 in every
 * LayerNorm) is "common" and dropped, as is one two teacher tensors share.
 * The rate starts at 1/64 and halves whenever the set would pass
 * NX_FP_VALUES_MAX entries (16 MiB), so a teacher of any size costs the
 * same memory; a tensor is judged when it kept FP_VALUES_MIN samples.
 *
 * Student: each element, as the float32 it is (float32, float16 and
 * bfloat16 widened exactly, float64 narrowed when exact, any other type's
 * bytes read as float32 words), is hashed the same way and looked up.
 * A value of that tensor of the student in the teacher's set is a hit.
 * By chance a large student tensor holds many teacher values (a float32
 * drawn from the same distribution equals a given one with probability
 * ~N / 3.5e7 for N elements), so every sample brings a decoy: the same
 * value with its lowest mantissa bit flipped, which the teacher does not
 * hold and an unrelated tensor holds as often.  A student tensor copies a
 * teacher tensor when, at one power-of-two scale (any: the exponent
 * difference of each hit is counted, 2^-253 .. 2^253), it holds at least
 * half of its samples and the hits beat the decoys by 5 standard
 * deviations (or the decoys the hits: the values with their lowest bit
 * flipped), or - in a tensor of at most FP_VALUES_TWIN_ELEMS elements -
 * when it holds half of the decoys too (each value with its twin beside
 * it), or - at any size - when it holds half of them as themselves or
 * their twins and beats a second, keyed decoy (look_up).  The sign is
 * not looked at: a tensor negated, or with the
 * signs of some rows, columns or elements flipped, is an exact copy
 * (red team 8: x -1 and x 16 were signed and passed when the key held
 * the sign and only 2^-3..2^3 were counted).  The counts are kept per
 * (teacher tensor, scale) in a hash table that grows with the pairs seen,
 * up to FP_CMAP_MAX; the (sample, scale) pairs a tensor counted, in one
 * too, and past FP_CMAP_MAX in a hashed set of bits (spill).
 * The same count over the whole student model finds a tensor cut into
 * pieces too small to hold half of it each.
 */
#include "fingerprint_int.h"
#include "lib/format/hash_int.h"
#include "util/strset_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FP_VALUES_RATE0 (1u << 26)   /* 2^32 / 64: the starting rate */
#define FP_VALUES_SLOTS0 (1u << 14)
#define FP_SHIFT_BIAS 256            /* exponent differences -253..253, biased */
#define FP_CMAP_SLOTS0 (1u << 10)
#define FP_CMAP_MAX (1u << 20)       /* (teacher tensor, scale) pairs counted at once */
#define FP_SEEN_SPILL_BITS 26        /* past FP_CMAP_MAX pairs: 2^26 bits (8 MiB), see spill */
/* A student tensor of at most this many elements holding half of a teacher
 * tensor's samples and half of their decoys holds its values with twins
 * (see shows): chance needs ~16M elements of the teacher's distribution
 * for half of either (a value found with probability ~N / 3.5e7). */
#define FP_VALUES_TWIN_ELEMS (1u << 22)

/* V_DPAIR: the teacher holds the value's keyed decoy too (see look_up);
 * V_GEITHER, V_GDECOY2: the whole-model counts of the second decoy */
enum { V_COMMON = 1, V_SHARED = 2, V_DROP = 3, V_GHIT = 4, V_GDECOY = 8, V_GEITHER = 16,
       V_GDECOY2 = 32, V_DPAIR = 64 };

/* The counts of one (teacher tensor, scale): hits, decoys (the lowest
 * bit flipped), samples held as themselves or their twin, and second
 * decoys (a keyed bit flipped: see look_up). */
enum { C_HIT, C_DECOY, C_EITHER, C_DECOY2, C_KINDS };

struct fp_val {
	uint32_t key;      /* mantissa bits 22..1, plus 1 (0: empty) */
	uint8_t exp;       /* biased exponent */
	uint8_t variants;  /* bit b: the teacher holds the value with lowest bit b */
	uint8_t flags;
	uint32_t owner;
};

struct fp_owner {
	char *name;
	size_t file;
	uint32_t n;        /* usable samples (fp_values_ready) */
};

/* Hit and decoy counts per (teacher tensor, scale): an open-addressed
 * table, cleared through the list of the slots in use. */
struct fp_cnt {
	uint64_t key;      /* owner x 512 + shift + FP_SHIFT_BIAS, plus 1 (0: empty) */
	uint32_t c[C_KINDS];
};

struct fp_cmap {
	struct fp_cnt *v;
	uint32_t *used;    /* the slots in use, in the order they were taken */
	size_t cap, n;
};

struct fp_values {
	struct fp_val *v;
	size_t cap, n;            /* slots (a power of two), entries */
	uint32_t rate;            /* a value is sampled when its hash < rate */
	uint32_t mul;             /* keyed odd multiplier */
	uint32_t dbit;            /* keyed key bit (0..7) the second decoy flips */
	uint32_t hmask;           /* the key bits hashed: all but dbit */
	struct fp_owner *o;
	size_t no, capo;
	bool ready;
	struct fp_cmap cnt;       /* this student tensor's counts */
	struct fp_cmap seen;      /* this student tensor's (sample slot, scale)
				   * pairs counted, c[kind] per kind */
	uint64_t *spill;          /* the pairs past FP_CMAP_MAX, hashed (see spill) */
	bool spilled;             /* spill holds this student tensor's bits */
	struct fp_cmap gcnt;      /* the same over the whole student model */
	uint64_t elems;           /* this student tensor's elements read */
	bool *found;              /* per owner: a student tensor matched it */
	uint64_t *bits;           /* 2^22 bits: a teacher key may be at key - 1 */
};

static inline uint32_t vkey(uint32_t bits)
{
	return ((bits >> 1) & 0x3fffffu) + 1;
}

/* A multiplicative hash (the product's high bits depend on every key
 * bit, and a value is taken when they are all zero up to the rate): one
 * multiply a word, which the student's scan of every element can afford.
 * The key only makes the sample unpredictable; a copy holds the same
 * values, so it is sampled alike whatever the key. */
static inline uint32_t vhash(const struct fp_values *s, uint32_t key)
{
	return (((key - 1) & s->hmask) + 1) * s->mul;
}

/* The key of a value's second decoy: sampled with it (hmask). */
static inline uint32_t dkey(const struct fp_values *s, uint32_t key)
{
	return ((key - 1) ^ s->dbit) + 1;
}

static size_t vslot(const struct fp_values *s, uint32_t key)
{
	return (size_t)((uint64_t)key * 0x9e3779b97f4a7c15ull >> 20) & (s->cap - 1);
}

static int values_init(nx_fp_set *set, nx_error *err)
{
	struct fp_values *s;

	if (set->values)
		return 0;
	if (!(s = calloc(1, sizeof(*s))) || !(s->v = calloc(FP_VALUES_SLOTS0, sizeof(*s->v)))) {
		free(s);
		return nx_error_oom(err, NULL);
	}
	s->cap = FP_VALUES_SLOTS0;
	s->rate = FP_VALUES_RATE0;
	if (!(s->bits = calloc((1u << 22) / 64, sizeof(uint64_t)))) {
		free(s->v);
		free(s);
		return nx_error_oom(err, NULL);
	}
	s->mul = (uint32_t)nx_keyhash("fp_values", 9, NULL, 0) | 1;
	s->dbit = 1u << (nx_keyhash("fp_values_decoy", 15, NULL, 0) % 8);
	s->hmask = 0x3fffffu & ~s->dbit;
	set->values = s;
	return 0;
}

void nx_fp__values_free(struct fp_values *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->no; i++)
		free(s->o[i].name);
	free(s->o);
	free(s->v);
	free(s->cnt.v);
	free(s->cnt.used);
	free(s->seen.v);
	free(s->seen.used);
	free(s->spill);
	free(s->gcnt.v);
	free(s->gcnt.used);
	free(s->found);
	free(s->bits);
	free(s);
}

static size_t cslot(const struct fp_cmap *m, uint64_t key)
{
	size_t j = (size_t)(key * 0x9e3779b97f4a7c15ull >> 24) & (m->cap - 1);

	while (m->v[j].key && m->v[j].key != key)
		j = (j + 1) & (m->cap - 1);
	return j;
}

static int cmap_grow(struct fp_cmap *m)
{
	struct fp_cmap g = { NULL, NULL, m->cap ? 2 * m->cap : FP_CMAP_SLOTS0, 0 };
	size_t i;

	if (!(g.v = calloc(g.cap, sizeof(*g.v))) || !(g.used = malloc(g.cap / 2 * sizeof(*g.used)))) {
		free(g.v);
		return -1;
	}
	for (i = 0; i < m->n; i++) {
		size_t j = cslot(&g, m->v[m->used[i]].key);

		g.v[j] = m->v[m->used[i]];
		g.used[g.n++] = (uint32_t)j;
	}
	free(m->v);
	free(m->used);
	*m = g;
	return 0;
}

/* The counts of (id, scale 2^shift), taken if new: NULL past FP_CMAP_MAX
 * pairs (or out of memory), when a new pair is not counted - to get there
 * a tensor holds sampled teacher values at a million scales. */
static uint32_t *cmap_at(struct fp_cmap *m, uint32_t id, int shift)
{
	uint64_t key = (uint64_t)id * 512 + (uint64_t)(shift + FP_SHIFT_BIAS) + 1;
	size_t j;

	if (!m->cap && cmap_grow(m))
		return NULL;
	j = cslot(m, key);
	if (!m->v[j].key) {
		if (2 * (m->n + 1) > m->cap) {
			if (m->cap >= 2 * (size_t)FP_CMAP_MAX || cmap_grow(m))
				return NULL;
			j = cslot(m, key);
		}
		m->v[j].key = key;
		m->used[m->n++] = (uint32_t)j;
	}
	return m->v[j].c;
}

/* Count one of kind (C_HIT ...) of owner at scale 2^shift. */
static void cmap_add(struct fp_cmap *m, uint32_t owner, int shift, int kind)
{
	uint32_t *c = cmap_at(m, owner, shift);

	if (c)
		c[kind]++;
}

static void cmap_clear(struct fp_cmap *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		memset(&m->v[m->used[i]], 0, sizeof(*m->v));
	m->n = 0;
}

/* Put every entry of old (cap slots) still under the rate into s->v. */
static void rehash(struct fp_values *s, struct fp_val *old, size_t cap)
{
	size_t i, j;

	s->n = 0;
	for (i = 0; i < cap; i++) {
		if (!old[i].key || vhash(s, old[i].key) >= s->rate)
			continue;
		for (j = vslot(s, old[i].key); s->v[j].key; j = (j + 1) & (s->cap - 1))
			;
		s->v[j] = old[i];
		s->n++;
	}
}

/* Room for one more entry: grow to the cap, then halve the rate. */
static int make_room(struct fp_values *s, nx_error *err)
{
	struct fp_val *old = s->v, *v;
	size_t cap = s->cap;

	if (2 * (s->n + 1) <= s->cap)
		return 0;
	if (2 * s->cap <= 2 * (size_t)NX_FP_VALUES_MAX) {
		if (!(v = calloc(2 * cap, sizeof(*v))))
			return nx_error_oom(err, NULL);
		s->v = v;
		s->cap = 2 * cap;
		rehash(s, old, cap);
		free(old);
		return 0;
	}
	while (2 * (s->n + 1) > s->cap && s->rate > 1) {
		if (!(v = calloc(cap, sizeof(*v))))
			return nx_error_oom(err, NULL);
		s->rate /= 2;
		old = s->v;
		s->v = v;
		rehash(s, old, cap);
		free(old);
	}
	return 0;
}

static int fp_values_owner(nx_fp_set *set, const char *name, uint32_t *out, nx_error *err)
{
	struct fp_values *s;
	int rc;

	if ((rc = values_init(set, err)) != 0)
		return rc;
	s = set->values;
	if (s->no >= NX_FP_TENSORS_MAX)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1, "more than %u teacher tensors",
				    NX_FP_TENSORS_MAX);
	if (NX_ARRAY_PUSH(s->o, s->capo, s->no))
		return nx_error_oom(err, NULL);
	if (!(s->o[s->no].name = strdup(name ? name : "")))
		return nx_error_oom(err, NULL);
	s->o[s->no].file = set->nfiles - 1;
	s->o[s->no].n = 0;
	*out = (uint32_t)s->no++;
	s->ready = false;
	return 0;
}

/* One float32 value of teacher tensor owner. */
static int add_value(struct fp_values *s, uint32_t owner, uint32_t bits, nx_error *err)
{
	uint32_t exp = (bits >> 23) & 0xff, key = vkey(bits);
	struct fp_val *e;
	size_t j;
	int rc;

	if (exp == 0 || exp == 0xff || vhash(s, key) >= s->rate)
		return 0;
	for (j = vslot(s, key); s->v[j].key; j = (j + 1) & (s->cap - 1)) {
		e = &s->v[j];
		if (e->key != key || e->exp != exp)
			continue;
		if (e->owner != owner)
			e->flags |= V_SHARED;
		else if (e->variants & (1u << (bits & 1)))
			e->flags |= V_COMMON;
		e->variants |= (uint8_t)(1u << (bits & 1));
		return 0;
	}
	if ((rc = make_room(s, err)) != 0)
		return rc;
	if (vhash(s, key) >= s->rate)
		return 0;   /* the rate fell below this value's hash */
	for (j = vslot(s, key); s->v[j].key; j = (j + 1) & (s->cap - 1))
		;
	e = &s->v[j];
	memset(e, 0, sizeof(*e));
	e->key = key;
	e->exp = (uint8_t)exp;
	e->variants = (uint8_t)(1u << (bits & 1));
	e->owner = owner;
	s->n++;
	s->bits[(key - 1) >> 6] |= 1ull << ((key - 1) & 63);
	return 0;
}

/* Count each teacher tensor's usable samples and size the counters. */
static int ready(struct fp_values *s, nx_error *err)
{
	size_t i;

	if (s->ready)
		return 0;
	for (i = 0; i < s->no; i++)
		s->o[i].n = 0;
	/* a value whose second decoy the teacher holds too (at its exponent)
	 * is no sample: a copy would hold its decoy (both are sampled alike) */
	for (i = 0; i < s->cap; i++) {
		struct fp_val *e = &s->v[i];
		uint32_t k;
		size_t j;

		if (!e->key || (e->flags & V_DPAIR))
			continue;
		k = dkey(s, e->key);
		for (j = vslot(s, k); s->v[j].key; j = (j + 1) & (s->cap - 1))
			if (s->v[j].key == k && s->v[j].exp == e->exp) {
				e->flags |= V_DPAIR;
				s->v[j].flags |= V_DPAIR;
			}
	}
	for (i = 0; i < s->cap; i++) {
		const struct fp_val *e = &s->v[i];

		if (e->key && !(e->flags & (V_DROP | V_DPAIR)) && e->variants != 3)
			s->o[e->owner].n++;
	}
	cmap_clear(&s->cnt);
	cmap_clear(&s->gcnt);
	free(s->found);
	if (!(s->found = calloc(s->no ? s->no : 1, sizeof(*s->found))))
		return nx_error_oom(err, NULL);
	s->ready = true;
	return 0;
}

/*
 * Was (slot j, shift, hit or decoy) counted already, when the exact map
 * is full?  Past FP_CMAP_MAX pairs a new pair was not counted at all, so a
 * tensor holding 40% of a teacher tensor's values at each of 240 scales
 * (no scale a copy) hid a copy after them.  Now each pair sets a bit of a
 * hashed set: a pair taken for counted is one whose bit another set, so
 * a count is low by at most the share of the 2^26 bits set - under 2% for
 * a million pairs more, which takes a million sampled values, 64M
 * elements.  Out of memory, a pair is counted again (the count is high,
 * never low).
 */
static bool spill(struct fp_values *s, size_t j, int shift, int kind)
{
	uint64_t h = ((uint64_t)j << 11 | (uint64_t)(shift + FP_SHIFT_BIAS) << 2 | (uint64_t)kind) *
		     0x9e3779b97f4a7c15ull >> (64 - FP_SEEN_SPILL_BITS);
	uint64_t bit = 1ull << (h & 63);
	bool was;

	if (!s->spill && !(s->spill = calloc((1u << FP_SEEN_SPILL_BITS) / 64, sizeof(uint64_t))))
		return false;
	s->spilled = true;
	was = s->spill[h >> 6] & bit;
	s->spill[h >> 6] |= bit;
	return was;
}

/* Count sample slot j of owner at scale 2^shift as kind, once per
 * student tensor (seen), and once per model (gflag). */
static void count(struct fp_values *s, size_t j, int shift, int kind, uint8_t gflag)
{
	struct fp_val *e = &s->v[j];
	uint32_t *seen;

	if (!(e->flags & gflag)) {
		e->flags |= gflag;
		cmap_add(&s->gcnt, e->owner, shift, kind);
	}
	/* each sample once per scale (and kind): a copy placed after the
	 * same values at other scales is still counted, and a value the
	 * student repeats counts once - a random float16 tensor holds each
	 * of its 2^15 values hundreds of times, and one sampled teacher value
	 * on the float16 lattice, counted at every occurrence, was half a
	 * teacher tensor's samples (bench/gen_model.py --dtype fp16) */
	seen = cmap_at(&s->seen, (uint32_t)j, shift);
	if (seen ? seen[kind]++ != 0 : spill(s, j, shift, kind))
		return;
	cmap_add(&s->cnt, e->owner, shift, kind);
}

static bool usable(const struct fp_values *s, const struct fp_val *e)
{
	return !(e->flags & (V_DROP | V_DPAIR)) && e->variants != 3 &&
	       s->o[e->owner].n >= FP_VALUES_MIN;
}

/*
 * One float32 value of the student tensor under way.  The samples it is
 * (its key: hit, or decoy when the teacher holds the twin), and the
 * samples it is the second decoy of: the value with key bit dbit flipped
 * (a bit among the mantissa's 2..9, keyed, so a copy cannot be spread
 * over the value, its twin and that decoy on purpose), which the teacher
 * does not hold (V_DPAIR) and an unrelated tensor holds as often as the
 * value.  A sample held as itself or its twin (C_EITHER) against its
 * second decoy held either way (C_DECOY2) is a count that mixing twins
 * cannot halve: 48% of a layer exact and 48% as twins passed (review of
 * stop 21), and it is judged at any tensor size.
 */
static void look_up(struct fp_values *s, uint32_t bits)
{
	uint32_t exp = (bits >> 23) & 0xff, key = vkey(bits), dk;
	size_t j;

	if (exp == 0 || exp == 0xff || vhash(s, key) >= s->rate)
		return;
	if (s->bits[(key - 1) >> 6] >> ((key - 1) & 63) & 1) {
		for (j = vslot(s, key); s->v[j].key; j = (j + 1) & (s->cap - 1)) {
			struct fp_val *e = &s->v[j];
			int shift = (int)exp - (int)e->exp;
			bool hit;

			if (e->key != key || !usable(s, e))
				continue;
			hit = (e->variants >> (bits & 1)) & 1;
			count(s, j, shift, hit ? C_HIT : C_DECOY, hit ? V_GHIT : V_GDECOY);
			count(s, j, shift, C_EITHER, V_GEITHER);
		}
	}
	dk = dkey(s, key);
	if (!(s->bits[(dk - 1) >> 6] >> ((dk - 1) & 63) & 1))
		return;
	for (j = vslot(s, dk); s->v[j].key; j = (j + 1) & (s->cap - 1)) {
		struct fp_val *e = &s->v[j];

		if (e->key == dk && usable(s, e))
			count(s, j, (int)exp - (int)e->exp, C_DECOY2, V_GDECOY2);
	}
}

uint32_t nx_fp__f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;

	if (e == 0) {
		if (!m)
			return sign;
		while (!(m & 0x400)) {   /* subnormal: normalise */
			m <<= 1;
			e--;
		}
		m &= 0x3ff;
		e++;
	} else if (e == 31) {
		return sign | 0x7f800000u | m << 13;
	}
	return sign | (e + 112) << 23 | m << 13;
}

/* Float32 words: the loop every element of every tensor goes through,
 * so it does no more than the sampling test. */
static void scan32(struct nx_fp__vfeed *f, const unsigned char *p, size_t n)
{
	struct fp_values *s = f->s;
	const uint32_t mul = s->mul, rate = s->rate, hmask = s->hmask;
	size_t i;

	for (i = 0; i + 4 <= n; i += 4) {
		uint32_t bits;

		memcpy(&bits, p + i, 4);
		if ((((bits >> 1) & hmask) + 1) * mul >= rate)
			continue;
		if (!f->teacher)
			look_up(s, bits);
		else if (!f->rc)
			f->rc = add_value(s, f->owner, bits, f->err);
	}
}

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * scan32 eight words a step: the rate is a power of two (2^26, halved), so
 * "key x mul < rate" is "key x mul >> log2(rate) == 0", which AVX2 tests
 * for eight keys at once; the rare step with a candidate goes word by
 * word.  The scalar loop made the fingerprint bench 1.8x slower in CPU.
 */
__attribute__((target("avx2"))) static void scan32_avx2(struct nx_fp__vfeed *f,
							 const unsigned char *p, size_t n)
{
	const struct fp_values *s = f->s;
	const __m256i mask = _mm256_set1_epi32((int)s->hmask), one = _mm256_set1_epi32(1);
	const __m256i mul = _mm256_set1_epi32((int)s->mul), zero = _mm256_setzero_si256();
	const __m128i shift = _mm_cvtsi32_si128(__builtin_ctz(s->rate));
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		__m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(p + i));
		__m256i k = _mm256_and_si256(_mm256_srli_epi32(w, 1), mask);
		__m256i h = _mm256_srl_epi32(_mm256_mullo_epi32(_mm256_add_epi32(k, one), mul), shift);

		if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(h, zero)))
			scan32(f, p + i, 32);
	}
	scan32(f, p + i, n - i);
}
#endif

/* Elements of width bytes each, as float32 bits, to fn. */
static void each_value(struct nx_fp__vfeed *f, const unsigned char *p, size_t n)
{
	size_t i;

	if (!f->teacher)
		f->s->elems += n / f->width;
	if (f->width == 4) {
#if defined(__x86_64__)
		if (f->s->rate > 1 && !(f->s->rate & (f->s->rate - 1)) &&
		    __builtin_cpu_supports("avx2")) {
			scan32_avx2(f, p, n);
			return;
		}
#endif
		scan32(f, p, n);
		return;
	}

	for (i = 0; i + f->width <= n; i += f->width) {
		uint32_t bits;

		if (f->width == 8) {
			double d;
			float x;

			memcpy(&d, p + i, 8);
			x = (float)d;
			if ((double)x != d)
				continue;
			memcpy(&bits, &x, 4);
		} else if (f->width == 2) {
			uint16_t h;

			memcpy(&h, p + i, 2);
			bits = f->bf16 ? (uint32_t)h << 16 : nx_fp__f16_to_f32(h);
		} else {
			memcpy(&bits, p + i, 4);
		}
		if (f->teacher) {
			if (!f->rc)
				f->rc = add_value(f->s, f->owner, bits, f->err);
		} else {
			look_up(f->s, bits);
		}
	}
}

int nx_fp__vfeed(void *ctx, const unsigned char *buf, size_t len)
{
	struct nx_fp__vfeed *f = ctx;
	size_t take;

	if (f->ncarry) {
		take = f->width - f->ncarry < len ? f->width - f->ncarry : len;
		memcpy(f->carry + f->ncarry, buf, take);
		f->ncarry += take;
		buf += take;
		len -= take;
		if (f->ncarry < f->width)
			return 0;
		each_value(f, f->carry, f->width);
		f->ncarry = 0;
	}
	take = len - len % f->width;
	each_value(f, buf, take);
	memcpy(f->carry, buf + take, len - take);
	f->ncarry = len - take;
	return f->rc;
}

int nx_fp__vfeed_teacher(struct nx_fp__vfeed *f, nx_fp_set *set, const char *name, nx_error *err)
{
	int rc;

	memset(f, 0, sizeof(*f));
	if ((rc = fp_values_owner(set, name, &f->owner, err)) != 0)
		return rc;
	f->s = set->values;
	f->teacher = true;
	f->width = 4;
	f->err = err;
	return 0;
}

bool nx_fp__vfeed_student(struct nx_fp__vfeed *f, const nx_fp_set *set, int32_t dtype, nx_error *err)
{
	struct fp_values *s = set->values;

	memset(f, 0, sizeof(*f));
	if (!s || !s->no)
		return false;
	if (ready(s, err) != 0)
		return false;
	f->s = s;
	f->err = err;
	f->width = dtype == 11 ? 8 : (dtype == 10 || dtype == 16) ? 2 : 4;
	f->bf16 = dtype == 16;
	cmap_clear(&s->cnt);
	cmap_clear(&s->seen);
	if (s->spilled)
		memset(s->spill, 0, (1u << FP_SEEN_SPILL_BITS) / 8);
	s->spilled = false;
	s->elems = 0;
	return true;
}

/*
 * Does one scale of counts c show teacher tensor o's values, in a student
 * tensor of elems elements (0: the whole model)?  Either side may be the
 * copy: decoys far above the hits are the values with their lowest bit
 * flipped, a re-encoding as good as any other.  Both at half of the
 * samples is chance only in a tensor large enough to hold most values
 * near the teacher's; in a smaller one it is the copy with each value's
 * twin (`bits ^ 1`) beside it, which the decoys alone took for chance
 * (review A of stop 20).  The samples held either way beating their
 * second decoys (look_up) find that at any size, and the twins mixed.
 */
static bool shows(const uint32_t *c, uint32_t n, uint64_t elems)
{
	double h = c[C_HIT], d = c[C_DECOY], hi = h > d ? h : d, lo = h > d ? d : h;
	double e = c[C_EITHER], d2 = c[C_DECOY2];

	if (n < FP_VALUES_MIN)
		return false;
	if (2 * e >= n && e - d2 >= 5 * sqrt(e + d2 + 1))
		return true;
	if (2 * hi < n)
		return false;
	return hi - lo >= 5 * sqrt(h + d + 1) ||
	       (elems && elems <= FP_VALUES_TWIN_ELEMS && 2 * lo >= n);
}

/* Counts slot i of m, if they show their teacher tensor better than m. */
static bool best(struct fp_values_match *m, const struct fp_values *s, const struct fp_cnt *c,
		 uint64_t elems)
{
	uint32_t o = (uint32_t)((c->key - 1) / 512);
	uint32_t hi = c->c[C_HIT] > c->c[C_DECOY] ? c->c[C_HIT] : c->c[C_DECOY];

	/* held either way: at least the larger of the two */
	hi = c->c[C_EITHER] > hi ? c->c[C_EITHER] : hi;
	if (!shows(c->c, s->o[o].n, elems) || hi <= m->hits)
		return false;
	m->hits = hi;
	m->samples = s->o[o].n;
	m->shift = (int)((c->key - 1) % 512) - FP_SHIFT_BIAS;
	m->name = s->o[o].name;
	m->file = s->o[o].file;
	return true;
}

void nx_fp__vfeed_judge(struct nx_fp__vfeed *f, struct fp_values_match *m)
{
	struct fp_values *s = f->s;
	size_t i;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < s->cnt.n; i++) {
		const struct fp_cnt *c = &s->cnt.v[s->cnt.used[i]];

		if (best(m, s, c, s->elems ? s->elems : 1))
			s->found[(c->key - 1) / 512] = true;
	}
	cmap_clear(&s->cnt);
}

int nx_fp__values_begin_model(const nx_fp_set *set, nx_error *err)
{
	struct fp_values *s = set->values;
	size_t i;
	int rc;

	if (!s || !s->no)
		return 0;
	if ((rc = ready(s, err)) != 0)
		return rc;
	for (i = 0; i < s->cap; i++)
		s->v[i].flags &= V_DROP | V_DPAIR;
	cmap_clear(&s->gcnt);
	memset(s->found, 0, s->no * sizeof(*s->found));
	return 0;
}

bool nx_fp__values_judge_model(const nx_fp_set *set, size_t *next, struct fp_values_match *m)
{
	struct fp_values *s = set->values;

	memset(m, 0, sizeof(*m));
	for (; s && s->ready && *next < s->gcnt.n; (*next)++) {
		const struct fp_cnt *c = &s->gcnt.v[s->gcnt.used[*next]];
		uint32_t o = (uint32_t)((c->key - 1) / 512);

		if (s->found[o] || !best(m, s, c, 0))
			continue;
		s->found[o] = true;   /* once, at the first scale that shows it */
		(*next)++;
		return true;
	}
	return false;
}

uint32_t nx_fp__values_rate(const nx_fp_set *set)
{
	return set->values ? set->values->rate : 0;
}
