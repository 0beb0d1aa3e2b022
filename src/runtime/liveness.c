/*
 * liveness.c - `nexus_cli liveness` (hidden; verify's TRV-5 runs it): every
 * initializer of the main graph of at least --min-bytes must influence the
 * model's outputs.  A teacher tensor carried in a student and kept "used"
 * by a product with zero (a constant zero, Sub(x, x), a 1e-30 factor) moves
 * nothing: replacing it changes no output.
 *
 * For each such initializer, in a random order, the selftest texts of
 * config/selftest.json are run once more with a perturbed copy in place of
 * the model's tensor: the whole tensor, each element plus Gaussian noise of the tensor's own
 * root mean square, at least 1e-2 (integers rounded, at least 1, clamped
 * to their type; bool 0/1, so about half flip; float8 and float4 decoded
 * by a table and rounded to the nearest code; int4/uint4/int2/uint2 and
 * float4 in their packed nibbles).  The change is ||new - old|| / ||old|| over
 * every number of every output of every case; below RT_LIVE_REL_MIN the
 * initializer is "dead".  The texts run shortest first, and a check stops
 * as soon as the change of those run is at RT_LIVE_REL_MIN (the rest could
 * only add to it): a live tensor costs one run of the shortest text, its
 * "change" then a lower bound; a dead one runs them all.
 *
 * The session runs on every core this process may use (nexus_cli's
 * --threads, else rt_live_cores()), not runtime.yaml's threads: the
 * check is the verifier's work, within its 600 s budget.  A run that fails or turns an output non-finite
 * counts as a change, but for a float tensor only if a change 1000 times
 * smaller moves the outputs finitely (a tripwire, sqrt(-|w - copy|) x 0,
 * turns any change into a NaN).  A dead tensor whose elements are all
 * equal (a zero key bias, which softmax cannot see) carries nothing:
 * "dead-empty", not a failure.  Subgraph initializers cannot be replaced
 * (ONNX Runtime replaces main-graph initializers only): "subgraph".
 * A main-graph initializer no element-wise change fits (string, complex,
 * sparse: a uint32 one was skipped in silence and carried 131 KiB, red
 * team 12) is "unperturbable", counted in "of" and never "checked".
 *
 * One unoptimized session serves every check: the model is read with the
 * candidates also declared graph inputs (overridable.c), the baseline runs
 * with the model's own tensors, each check feeds its copy as that input.
 * Nothing is folded or pre-packed from an overridable initializer, so a
 * copy reaches every node that reads the tensor, as the baseline's does.
 * Where ONNX Runtime refuses that reading (IR version below 4, a kernel
 * that wants the tensor constant), each check opens its own session that
 * takes the copy instead (AddInitializer), as --session-each always does:
 * the same verdicts, a session load per initializer.  One JSON line
 * per initializer on stdout:
 *   {"initializer": NAME, "verdict": "live"|"dead"|"dead-empty"|
 *    "unchecked"|"subgraph"|"unperturbable", "bytes": N, "change": X}
 * then {"checked": N, "of": M, "bytes_checked": B, "bytes": T}.  The time
 * budget (--budget-ms) stops the loop: what is left is "unchecked".
 * Exit 1 when one is dead.
 *
 * --zero-check (nexus build runs it, build_dead.c): a dead tensor is also
 * replaced by zeros, on the selftest texts and on RT_LIVE_PROBES sequences
 * of random token ids (lengths 1 to max_sequence_length), and its line
 * gets "zero_change": the relative change of all those outputs.  Below
 * the threshold the build may store zeros in its place: the outputs cannot
 * tell, on inputs the selftest never chose either.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "nexus/clock.h"
#include "nexus/fs.h"
#include "nexus/functional.h"
#include "nexus/onnx.h"
#include "rt.h"

#define LIVE_GEN_TOKENS 64      /* tokens of a decoder's text run by each check */

/* Below this relative change of the outputs an initializer is dead.  A
 * live tensor replaced by noise of its own size moves the outputs by
 * 2e-4 to 0.5 (docs/TRV.md has the numbers; a near-zero LayerNorm beta
 * is the least); a product with zero moves them by exactly 0, a 1e-30
 * factor by 1e-30.  1e-6 sits between with two orders on each side. */
#define RT_LIVE_REL_MIN NX_FUNCTIONAL_LIVE_REL_MIN
#define RT_LIVE_TENSOR_MAX (1ull << 31)   /* bytes of one tensor copied */
#define RT_LIVE_PROBES 8                  /* random id sequences of --zero-check */
#define LIVE_THREADS_MAX 16              /* rt_live_cores() at most */
#define LIVE_NOISE 4096                   /* noise values drawn per tensor (a power of 2) */

/* Token id sequences: the selftest texts (encoded once, shortest first)
 * or the random ones run after them (--zero-check). */
struct seqs {
	int64_t **ids;
	size_t *lens;
	size_t n;
};

struct live_tensor {
	const struct nx_onnx_tensor *t;
	size_t bytes;
};

/* xorshift64*: the noise needs no cryptographic strength, only a seed the
 * model's author cannot know (getrandom). */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static double gauss(uint64_t *s)
{
	double u = ((double)(rnd(s) >> 11) + 1) / 9007199254740993.0;
	double v = (double)(rnd(s) >> 11) / 9007199254740992.0;

	return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static uint16_t to_half(float f)
{
	uint32_t x;
	uint32_t sign, e, m;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	e = (x >> 23) & 0xff;
	m = x & 0x7fffff;
	if (e == 0xff || (int)e - 112 >= 31)
		return (uint16_t)(sign | 0x7bff);          /* clamp to the largest finite */
	if ((int)e - 112 <= 0)
		return (uint16_t)sign;                     /* flush tiny values to zero */
	return (uint16_t)(sign | (e - 112) << 10 | m >> 13);
}

static float from_bf16(uint16_t h)
{
	uint32_t x = (uint32_t)h << 16;
	float f;

	memcpy(&f, &x, 4);
	return f;
}

static uint16_t to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	return (uint16_t)(x >> 16);
}

/*
 * float8 (ONNX 17-20, 24) and float4e2m1 (23) codes as values: decode by a
 * table built once, encode to the nearest finite code by a binary search
 * of the finite values sorted (ties to the lower code).  A value past the
 * largest finite is clamped, as to_half() does; NaN keeps a NaN code.
 */
struct small_float {
	double val[256];          /* code -> value (NaN for NaN codes) */
	double sorted[256];       /* finite values, ascending */
	unsigned char code[256];  /* the code of each of sorted[] */
	unsigned n, nan_code;
	bool ready;
};

static struct small_float small_floats[27];

static double decode_small(int32_t dt, unsigned c)
{
	unsigned s = c >> 7, e, m;
	double v;

	switch (dt) {
	case 17:        /* e4m3fn: bias 7, S.1111.111 NaN, no infinity */
		e = (c >> 3) & 15, m = c & 7;
		if (e == 15 && m == 7)
			return NAN;
		v = e ? ldexp(1 + m / 8.0, (int)e - 7) : ldexp(m / 8.0, -6);
		break;
	case 18:        /* e4m3fnuz: bias 8, 0x80 NaN, no -0 */
		if (c == 0x80)
			return NAN;
		e = (c >> 3) & 15, m = c & 7;
		v = e ? ldexp(1 + m / 8.0, (int)e - 8) : ldexp(m / 8.0, -7);
		break;
	case 19:        /* e5m2: bias 15, IEEE-like infinities and NaNs */
		e = (c >> 2) & 31, m = c & 3;
		if (e == 31)
			return m ? NAN : s ? -INFINITY : INFINITY;
		v = e ? ldexp(1 + m / 4.0, (int)e - 15) : ldexp(m / 4.0, -14);
		break;
	case 20:        /* e5m2fnuz: bias 16, 0x80 NaN */
		if (c == 0x80)
			return NAN;
		e = (c >> 2) & 31, m = c & 3;
		v = e ? ldexp(1 + m / 4.0, (int)e - 16) : ldexp(m / 4.0, -15);
		break;
	case 23:        /* float4e2m1 (4 bits): bias 1, no infinity or NaN */
		if (c > 15)
			return NAN;
		s = c >> 3, e = (c >> 1) & 3, m = c & 1;
		v = e ? ldexp(1 + m / 2.0, (int)e - 1) : m / 2.0;
		break;
	case 24:        /* e8m0: a power of two, 0xff NaN, unsigned */
		return c == 255 ? NAN : ldexp(1, (int)c - 127);
	default:
		return NAN;
	}
	return s ? -v : v;
}

static const struct small_float *small_float(int32_t dt)
{
	struct small_float *f = &small_floats[dt];
	unsigned c, i, n = 0, codes = dt == 23 ? 16 : 256;

	if (f->ready)
		return f;
	f->nan_code = 0;
	for (c = 0; c < codes; c++) {
		f->val[c] = decode_small(dt, c);
		if (isnan(f->val[c])) {
			f->nan_code = c;
			continue;
		}
		if (isinf(f->val[c]))
			continue;
		/* insertion by value; -0 after +0 keeps +0 the code of 0 */
		for (i = n; i > 0 && f->sorted[i - 1] > f->val[c]; i--) {
			f->sorted[i] = f->sorted[i - 1];
			f->code[i] = f->code[i - 1];
		}
		f->sorted[i] = f->val[c];
		f->code[i] = (unsigned char)c;
		n++;
	}
	f->n = n;
	f->ready = true;
	return f;
}

static unsigned encode_small(int32_t dt, double v)
{
	const struct small_float *f = small_float(dt);
	unsigned lo = 0, hi = f->n - 1, mid;

	if (isnan(v))
		return f->nan_code;
	if (v <= f->sorted[0])
		return f->code[0];
	if (v >= f->sorted[hi])
		return f->code[hi];
	while (hi - lo > 1) {         /* sorted[lo] < v < sorted[hi] */
		mid = (lo + hi) / 2;
		if (f->sorted[mid] <= v)
			lo = mid;
		else
			hi = mid;
	}
	return v - f->sorted[lo] <= f->sorted[hi] - v ? f->code[lo] : f->code[hi];
}

/* Packed sub-byte element i (int4, uint4, float4, int2, uint2: ONNX packs
 * the first element in the low bits of each byte). */
static unsigned get_bits(const unsigned char *p, size_t i, unsigned bits)
{
	size_t at = i * bits;

	return (p[at / 8] >> (at % 8)) & ((1u << bits) - 1);
}

static void put_bits(unsigned char *p, size_t i, unsigned bits, unsigned v)
{
	size_t at = i * bits;
	unsigned mask = ((1u << bits) - 1) << (at % 8);

	p[at / 8] = (unsigned char)((p[at / 8] & ~mask) | ((v << (at % 8)) & mask));
}

/* Element i as a double, and back (clamped for integers); false for a
 * type the check does not perturb (string, complex, unknown). */
static bool get(double *v, int32_t dt, const unsigned char *p, size_t i)
{
	switch (dt) {
	case 1: { float f; memcpy(&f, p + 4 * i, 4); *v = f; return true; }
	case 11: { double d; memcpy(&d, p + 8 * i, 8); *v = d; return true; }
	case 10: { uint16_t h; memcpy(&h, p + 2 * i, 2); *v = rt_half_to_double(h); return true; }
	case 16: { uint16_t h; memcpy(&h, p + 2 * i, 2); *v = from_bf16(h); return true; }
	case 2: *v = p[i]; return true;
	case 3: *v = (int8_t)p[i]; return true;
	case 4: { uint16_t x; memcpy(&x, p + 2 * i, 2); *v = x; return true; }
	case 5: { int16_t x; memcpy(&x, p + 2 * i, 2); *v = x; return true; }
	case 6: { int32_t x; memcpy(&x, p + 4 * i, 4); *v = x; return true; }
	case 7: { int64_t x; memcpy(&x, p + 8 * i, 8); *v = (double)x; return true; }
	case 9: *v = p[i] != 0; return true;
	case 12: { uint32_t x; memcpy(&x, p + 4 * i, 4); *v = x; return true; }
	case 13: { uint64_t x; memcpy(&x, p + 8 * i, 8); *v = (double)x; return true; }
	case 17: case 18: case 19: case 20: case 24:
		*v = small_float(dt)->val[p[i]];
		return true;
	case 23: *v = small_float(dt)->val[get_bits(p, i, 4)]; return true;
	case 21: *v = get_bits(p, i, 4); return true;
	case 22: *v = ((int)get_bits(p, i, 4) ^ 8) - 8; return true;
	case 25: *v = get_bits(p, i, 2); return true;
	case 26: *v = ((int)get_bits(p, i, 2) ^ 2) - 2; return true;
	default: return false;
	}
}

static double clampd(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Element i of p set to v; sub-byte types leave the other bits of the
 * byte as they are (perturb() copies the tensor first). */
static void put(unsigned char *p, int32_t dt, size_t i, double v)
{
	switch (dt) {
	case 1: { float f = (float)v; memcpy(p + 4 * i, &f, 4); break; }
	case 11: memcpy(p + 8 * i, &v, 8); break;
	case 10: { uint16_t h = to_half((float)v); memcpy(p + 2 * i, &h, 2); break; }
	case 16: { uint16_t h = to_bf16((float)v); memcpy(p + 2 * i, &h, 2); break; }
	case 2: p[i] = (unsigned char)clampd(v, 0, 255); break;
	case 3: p[i] = (unsigned char)(int8_t)clampd(v, -128, 127); break;
	case 4: { uint16_t x = (uint16_t)clampd(v, 0, 65535); memcpy(p + 2 * i, &x, 2); break; }
	case 5: { int16_t x = (int16_t)clampd(v, -32768, 32767); memcpy(p + 2 * i, &x, 2); break; }
	case 6: { int32_t x = (int32_t)clampd(v, -2147483648.0, 2147483647.0); memcpy(p + 4 * i, &x, 4); break; }
	case 7: { int64_t x = (int64_t)clampd(v, -9.2e18, 9.2e18); memcpy(p + 8 * i, &x, 8); break; }
	/* bool: noise of at least 1 flips about half the elements */
	case 9: p[i] = v >= 0.5; break;
	case 12: { uint32_t x = (uint32_t)clampd(v, 0, 4294967295.0); memcpy(p + 4 * i, &x, 4); break; }
	case 13: { uint64_t x = (uint64_t)clampd(v, 0, 1.8e19); memcpy(p + 8 * i, &x, 8); break; }
	case 17: case 18: case 19: case 20: case 24:
		p[i] = (unsigned char)encode_small(dt, v);
		break;
	case 23: put_bits(p, i, 4, encode_small(dt, v)); break;
	case 21: put_bits(p, i, 4, (unsigned)clampd(v, 0, 15)); break;
	case 22: put_bits(p, i, 4, (unsigned)(int)clampd(v, -8, 7)); break;
	case 25: put_bits(p, i, 2, (unsigned)clampd(v, 0, 3)); break;
	case 26: put_bits(p, i, 2, (unsigned)(int)clampd(v, -2, 1)); break;
	}
}

/* Bytes of a tensor of n elements of type dt (sub-byte types packed);
 * 0 for string and unknown types. */
static uint64_t dtype_bytes(int32_t dt, uint64_t n)
{
	uint64_t bits = nx_onnx_dtype_bits(dt);

	return bits % 8 ? (n * bits + 7) / 8 : n * (bits / 8);
}

/* The types the tripwire retry of rt_liveness() applies to: floats whose
 * smaller change still moves them (integers move by at least 1). */
static bool is_float(int32_t dt)
{
	return dt == 1 || dt == 10 || dt == 11 || dt == 16 || (dt >= 17 && dt <= 20) ||
	       dt == 23 || dt == 24;
}

/* Root mean square of the finite elements (int8 and float32, the bulk of
 * a model, without get()'s switch per element). */
static double rms(const unsigned char *src, int32_t dt, uint64_t n)
{
	double sum = 0, v;
	uint64_t i;

	if (dt == 3) {
		uint64_t s = 0;

		for (i = 0; i < n; i++)
			s += (uint64_t)((int)(int8_t)src[i] * (int)(int8_t)src[i]);
		sum = (double)s;
	} else if (dt == 1) {
		for (i = 0; i < n; i++) {
			float f;

			memcpy(&f, src + 4 * i, 4);
			if (isfinite(f))
				sum += (double)f * f;
		}
	} else {
		for (i = 0; i < n; i++)
			if (get(&v, dt, src, i) && isfinite(v))
				sum += v * v;
	}
	return n ? sqrt(sum / (double)n) : 0;
}

/*
 * A copy of every element plus noise at the tensor's own scale.  The noise
 * is LIVE_NOISE Gaussian draws, scaled (integers rounded, at least 1), each
 * element taking one chosen at random: a draw per element cost 100-300 ns
 * (log, sqrt, cos), over a minute on a 1.2B model; a pick costs a few.  The
 * draws and the picks come from the seed the model's author cannot know.
 */
static void perturb(unsigned char *dst, const unsigned char *src, int32_t dt, uint64_t n,
		    double scale, uint64_t *seed)
{
	double noise[LIVE_NOISE], sigma = rms(src, dt, n), v;
	int16_t noise8[LIVE_NOISE];
	uint64_t i, r = 0;
	size_t k;

	/* at least 1e-2: a bias of near-zero values (a LayerNorm beta of
	 * examples/) moved only by its own scale moves the outputs least */
	if (!isfinite(sigma) || sigma < 1e-2)
		sigma = is_float(dt) ? 1e-2 : 1;
	sigma *= scale;
	if (!is_float(dt) && sigma < 1)
		sigma = 1;
	for (k = 0; k < LIVE_NOISE; k++) {
		double d = sigma * gauss(seed);

		if (!is_float(dt)) {
			d = nearbyint(d);
			if (d == 0)
				d = rnd(seed) & 1 ? 1 : -1;
		}
		noise[k] = d;
		noise8[k] = (int16_t)clampd(d, -255, 255);
	}
	/* four 16-bit picks from each draw of rnd() */
#define PICK(i) (((i) & 3 ? r >>= 16 : (r = rnd(seed))) & (LIVE_NOISE - 1))
	if (dt == 3) {
		for (i = 0; i < n; i++) {
			int x = (int8_t)src[i] + noise8[PICK(i)];

			dst[i] = (unsigned char)(int8_t)(x < -128 ? -128 : x > 127 ? 127 : x);
		}
	} else if (dt == 1) {
		for (i = 0; i < n; i++) {
			float f;

			memcpy(&f, src + 4 * i, 4);
			f = (float)(f + noise[PICK(i)]);
			memcpy(dst + 4 * i, &f, 4);
		}
	} else {
		/* put() of a packed type sets only its element's bits */
		if (nx_onnx_dtype_bits(dt) % 8)
			memcpy(dst, src, dtype_bytes(dt, n));
		for (i = 0; i < n; i++) {
			get(&v, dt, src, i);
			put(dst, dt, i, v + noise[PICK(i)]);
		}
	}
#undef PICK
}

/* Every element the same (zeros, a fill): nothing to carry, dead or not. */
static bool uniform(const unsigned char *p, size_t bytes, size_t es)
{
	size_t i;

	for (i = es; i + es <= bytes; i += es)
		if (memcmp(p, p + i, es))
			return false;
	return true;
}

struct reader {
	unsigned char *p;
	size_t len, cap;
};

static int collect(void *ctx, const unsigned char *buf, size_t len)
{
	struct reader *r = ctx;

	if (len > r->cap - r->len)
		return NX_EFORMAT;
	memcpy(r->p + r->len, buf, len);
	r->len += len;
	return 0;
}

/* The contents of initializer t (inline, or external beside the model). */
static int contents(unsigned char *dst, size_t bytes, const struct rt_bundle *b,
		    const struct nx_onnx_tensor *t, nx_error *err)
{
	struct reader r = { dst, 0, bytes };
	char path[4096];
	int fd, rc = 0;
	ssize_t got;

	if (t->location == NX_TENSOR_INLINE) {
		rc = nx_onnx_tensor_read(b->model_fd, RT_MODEL, t, collect, &r, err);
		if (!rc && r.len != bytes)
			rc = nx_error_set(err, NX_EFORMAT, RT_MODEL, 0, -1,
					  "%s: tensor '%s' holds %zu bytes, not %zu", RT_MODEL,
					  t->name, r.len, bytes);
		return rc;
	}
	/* the bundle's integrity check covered the data file; its location is
	 * relative to model/ and verify refuses any that leaves it */
	if (!t->ext_location || strstr(t->ext_location, "..") || t->ext_location[0] == '/' ||
	    snprintf(path, sizeof(path), "model/%s", t->ext_location) >= (int)sizeof(path))
		return nx_error_set(err, NX_EFORMAT, RT_MODEL, 0, -1,
				    "%s: tensor '%s' has a bad external data location", RT_MODEL,
				    t->name);
	fd = openat(b->rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	/* nx_pread_full loops: Linux reads at most 2 GiB - 4 KiB a call, and a
	 * tensor of a student over 2 GB may be larger */
	got = nx_pread_full(fd, dst, bytes, (uint64_t)(t->ext_offset < 0 ? 0 : t->ext_offset));
	if (got < 0)
		rc = nx_error_errno(err, NX_EIO, errno, path, "cannot read %s", path);
	else if ((size_t)got != bytes)
		rc = nx_error_set(err, NX_EFORMAT, path, 0, -1, "%s: tensor '%s' is short", path,
				  t->name);
	close(fd);
	return rc;
}

/* Every number of every output of every case, in order. */
struct outputs {
	double *v;
	size_t n, cap;
	double sq;     /* the sum of the squares of v[0..n) */
	bool failed;   /* a run failed or an output was not finite */
	bool oom;      /* sink() could not grow v */
	bool early;    /* stopped live before the last text: v holds a prefix */
};

/* rt_session_sink: every number of one output, appended. */
static int sink(void *ctx, const double *v, size_t count)
{
	struct outputs *o = ctx;
	size_t i;

	if (count > SIZE_MAX - o->n ||
	    nx_array_grow(&o->v, &o->cap, o->n + count, sizeof(*o->v), SIZE_MAX)) {
		o->oom = true;
		return NX_ENOMEM;
	}
	for (i = 0; i < count; i++) {
		if (!isfinite(v[i]))
			o->failed = true;
		o->sq += v[i] * v[i];
		o->v[o->n++] = v[i];
	}
	return 0;
}

/* One sequence of ids; a run that fails is o->failed, or (strict: the
 * model as it is must answer) the error. */
static int run_one(struct outputs *o, struct rt_session *s, struct rt_bundle *b, int64_t *ids,
		   size_t n, bool strict, nx_error *err)
{
	json_t *res = NULL;
	nx_error e;
	int rc;

	nx_error_clear(&e);
	o->oom = false;
	rt_session_sink(s, sink, o);
	rc = rt_session_run(s, b, &ids, NULL, NULL, &n, 1, &res, &e);
	rt_session_sink(s, NULL, NULL);
	json_decref(res);       /* NULL: the numbers went to sink() */
	if (o->oom)
		return nx_error_oom(err, NULL);
	if (rc) {
		if (strict)
			return nx_error_set(err, e.code, e.path, 0, -1, "%s", e.message);
		o->failed = true;
	}
	return 0;
}

/*
 * The relative change of o from base: ||o - base|| / ||base|| over every
 * number, INFINITY when a run failed or an output was not finite.  When o
 * stopped early (o->early) the numbers it has are a prefix of base's: the
 * sum over them is a lower bound of the whole one (every term is a square),
 * so a prefix at or over the threshold gives the verdict the whole would.
 */
static double change(const struct outputs *base, const struct outputs *o)
{
	double d = 0;
	size_t i;

	if (o->failed || (o->early ? o->n > base->n : o->n != base->n))
		return INFINITY;
	for (i = 0; i < o->n; i++) {
		double x = o->v[i] - base->v[i];

		d += x * x;
	}
	return sqrt(d) / (sqrt(base->sq) + 1e-30);
}

/*
 * Run every text through shared fed ov, or (shared NULL) a session opened
 * with ov; a failure to open, feed or run is recorded as o->failed, not
 * returned.  Then the probes, if any (a model that rejects random ids is
 * "failed" there, never an error).
 *
 * With stop (the baseline), the texts end early, o->early, as soon as
 * their change is already at RT_LIVE_REL_MIN or a run failed: the texts
 * left could only add to the change (the verdict is "live" either way), and
 * a failure makes it INFINITY whatever follows.  The texts run shortest
 * first (texts_new), so a live tensor costs one short run, not every text.
 */
static int run_all(struct outputs *o, struct rt_bundle *b, struct rt_session *shared,
		   const struct rt_override *ov, const struct seqs *texts, const struct seqs *pr,
		   const struct outputs *stop, nx_error *err)
{
	struct rt_session *s = NULL;
	size_t i;
	nx_error e;
	int rc = 0;

	o->n = 0;
	o->sq = 0;
	o->failed = o->early = false;
	/* every output, whatever the task prints by default (an embedding or
	 * rerank result carries only the pooled numbers without it) */
	b->set.raw = true;
	nx_error_clear(&e);
	/* unoptimized, baseline too: ONNX Runtime folds Cast(initializer) and
	 * the like from the model's own tensor, so a replacement behind one
	 * would change nothing (shared is unoptimized too) */
	if (shared ? rt_session_feed(s = shared, ov, &e) :
	    rt_session_open_with(&s, b, false, ov, true, &e)) {
		if (!ov)
			return nx_error_set(err, e.code, e.path, 0, -1, "%s", e.message);
		o->failed = true;
		return 0;
	}
	for (i = 0; i < texts->n && !rc; i++) {
		if ((rc = run_one(o, s, b, texts->ids[i], texts->lens[i], !ov, err)))
			break;
		if (stop && i + 1 < texts->n && !o->oom &&
		    (o->failed || (o->early = true, change(stop, o) >= RT_LIVE_REL_MIN)))
			goto out;
		o->early = false;
	}
	for (i = 0; pr && i < pr->n && !rc; i++)
		rc = run_one(o, s, b, pr->ids[i], pr->lens[i], false, err);
out:
	if (shared)
		rt_session_feed(shared, NULL, &e);      /* releases only */
	else
		rt_session_free(s);
	return rc;
}

/* zero_ch: NAN when not measured. */
static void print_line(FILE *f, const char *name, const char *verdict, size_t bytes, double ch,
		       double zero_ch)
{
	json_t *j = json_pack("{s:s,s:s,s:I}", "initializer", name, "verdict", verdict,
			      "bytes", (json_int_t)bytes);

	if (!j)
		return;
	if (!strcmp(verdict, "unchecked") || !strcmp(verdict, "subgraph") ||
	    !strcmp(verdict, "unperturbable"))
		;
	else if (isfinite(ch))
		json_object_set_new(j, "change", json_real(ch));
	else
		json_object_set_new(j, "change", json_string("run failed or not finite"));
	if (isfinite(zero_ch))
		json_object_set_new(j, "zero_change", json_real(zero_ch));
	else if (isinf(zero_ch))
		json_object_set_new(j, "zero_change", json_string("run failed or not finite"));
	json_dumpf(j, f, JSON_COMPACT | JSON_ENSURE_ASCII);
	fputc('\n', f);
	json_decref(j);
}

int rt_live_cores(void)
{
	cpu_set_t set;
	long quota = 0, period = 0;
	int n = 1;
	FILE *f;

	if (!sched_getaffinity(0, sizeof(set), &set) && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	/* a container's quota ("200000 100000": two cores' time); "max": none */
	if ((f = fopen("/sys/fs/cgroup/cpu.max", "re"))) {
		if (fscanf(f, "%ld %ld", &quota, &period) == 2 && quota > 0 && period > 0 &&
		    (quota + period - 1) / period < n)
			n = (int)((quota + period - 1) / period);
		fclose(f);
	}
	/* each thread may reserve a malloc arena (64 MiB of address space)
	 * under the sandbox's RLIMIT_AS; the small matrices of a check gain
	 * little past this many */
	return n < LIVE_THREADS_MAX ? n : LIVE_THREADS_MAX;
}

/* The main graph's initializers the check perturbs, shuffled; those of
 * --min-bytes or more it cannot (a string or complex tensor, a sparse
 * one) to unp, each a finding of verify rather than a silent skip. */
static int candidates(struct live_tensor **out, size_t *nout,
		      const struct nx_onnx_tensor ***subout, size_t *nsub,
		      struct live_tensor **unpout, size_t *nunp, const nx_onnx_summary *s,
		      size_t min_bytes, uint64_t *seed, nx_error *err)
{
	size_t cap = s->ntensors ? s->ntensors : 1;
	struct live_tensor *v = calloc(cap, sizeof(*v)), *unp = calloc(cap, sizeof(*unp));
	const struct nx_onnx_tensor **sub = calloc(cap, sizeof(*sub));
	size_t i, n = 0;
	double x;

	*nsub = 0;
	*nunp = 0;
	if (!v || !sub || !unp) {
		free(v);
		free(sub);
		free(unp);
		return nx_error_oom(err, NULL);
	}
	for (i = 0; i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];
		uint64_t bytes = dtype_bytes(t->data_type, t->nelem);
		unsigned char probe[8] = { 0 };

		/* ONNX Runtime replaces only the main graph's initializers */
		if (!t->attribute && strcmp(t->scope, "graph") && (!bytes || bytes >= min_bytes)) {
			sub[(*nsub)++] = t;
			continue;
		}
		if (t->attribute || strcmp(t->scope, "graph"))
			continue;
		if (t->sparse || !bytes || !get(&x, t->data_type, probe, 0)) {
			/* no width to perturb by: what the tensor message holds */
			if (t->sparse || !bytes)
				bytes = t->msg_length + t->sparse_index_bytes;
			if (bytes >= min_bytes) {
				unp[*nunp].t = t;
				unp[(*nunp)++].bytes = bytes;
			}
			continue;
		}
		if (bytes > RT_LIVE_TENSOR_MAX || bytes < min_bytes)
			continue;
		v[n].t = t;
		v[n++].bytes = bytes;
	}
	for (i = n; i > 1; i--) {
		size_t j = rnd(seed) % i;
		struct live_tensor tmp = v[i - 1];

		v[i - 1] = v[j];
		v[j] = tmp;
	}
	*out = v;
	*nout = n;
	*subout = sub;
	*unpout = unp;
	return 0;
}

static void seqs_free(struct seqs *p)
{
	size_t i;

	for (i = 0; p->ids && i < p->n; i++)
		free(p->ids[i]);
	free(p->ids);
	free(p->lens);
	memset(p, 0, sizeof(*p));
}

/* RT_LIVE_PROBES sequences of ids drawn uniformly from the vocabulary, of
 * lengths spread from 1 to max_sequence_length.  A model answers every
 * input of its vocabulary: these are inputs the selftest did not choose. */
static int probes_new(struct seqs *p, const struct rt_bundle *b, uint64_t *seed, nx_error *err)
{
	size_t vocab = nx_tokenizer_vocab_size(b->tok), max = b->set.max_len ? b->set.max_len : 1;
	size_t i, j;

	memset(p, 0, sizeof(*p));
	if (!vocab)
		return 0;
	p->ids = calloc(RT_LIVE_PROBES, sizeof(*p->ids));
	p->lens = calloc(RT_LIVE_PROBES, sizeof(*p->lens));
	if (!p->ids || !p->lens)
		goto oom;
	for (i = 0; i < RT_LIVE_PROBES; i++) {
		size_t len = 1 + (max - 1) * i / (RT_LIVE_PROBES - 1);

		if (!(p->ids[i] = malloc(len * sizeof(**p->ids))))
			goto oom;
		p->n++;
		p->lens[i] = len;
		for (j = 0; j < len; j++)
			p->ids[i][j] = (int64_t)(rnd(seed) % vocab);
	}
	return 0;
oom:
	seqs_free(p);
	return nx_error_oom(err, NULL);
}

/*
 * The selftest texts as ids, encoded once, shortest first (stable): a
 * check that stops early (run_all) has then run the least.  A decoder's
 * long selftest prompt fills the context: every check a full-context
 * forward pass (minutes on a 1B model).  Its first LIVE_GEN_TOKENS tokens
 * reach every initializer the whole does (the position table is one
 * tensor), so a decoder's texts are cut there.
 */
static int texts_new(struct seqs *p, const struct rt_bundle *b, json_t *cases, nx_error *err)
{
	size_t cap = b->set.task == RT_TASK_GENERATION && b->set.max_len > LIVE_GEN_TOKENS ?
		     LIVE_GEN_TOKENS : b->set.max_len;
	size_t i, j, n, count = json_array_size(cases);
	json_t *c;
	int rc;

	memset(p, 0, sizeof(*p));
	p->ids = calloc(count ? count : 1, sizeof(*p->ids));
	p->lens = calloc(count ? count : 1, sizeof(*p->lens));
	if (!p->ids || !p->lens)
		goto oom;
	json_array_foreach(cases, i, c) {
		json_t *text = json_object_get(c, "text");
		int64_t *ids;

		if (!json_is_string(text))
			continue;
		if (!(ids = calloc(cap ? cap : 1, sizeof(*ids))))
			goto oom;
		n = 0;
		if ((rc = nx_tokenizer_encode(b->tok, json_string_value(text), json_string_length(text),
					      cap, ids, &n, err))) {
			free(ids);
			seqs_free(p);
			return rc;
		}
		/* insertion: a selftest has a handful of texts */
		for (j = p->n; j > 0 && p->lens[j - 1] > n; j--) {
			p->ids[j] = p->ids[j - 1];
			p->lens[j] = p->lens[j - 1];
		}
		p->ids[j] = ids;
		p->lens[j] = n;
		p->n++;
	}
	return 0;
oom:
	seqs_free(p);
	return nx_error_oom(err, NULL);
}

/* The change of every output (selftest texts and probes) when the tensor
 * is all zero bytes (zero in every type perturb() handles but float8e8m0,
 * whose code 0 is 2^-127: the change measured is of what the build would
 * store). */
static int zero_change(double *out, struct rt_bundle *b, struct rt_session *shared,
		       struct rt_override *ov, const struct seqs *texts, const struct seqs *pr,
		       struct outputs *base_z, struct outputs *o, unsigned char *copy, nx_error *err)
{
	int rc;

	if (!base_z->v && (rc = run_all(base_z, b, shared, NULL, texts, pr, NULL, err)))
		return rc;
	memset(copy, 0, ov->bytes);
	ov->data = copy;
	if ((rc = run_all(o, b, shared, ov, texts, pr, NULL, err)))
		return rc;
	*out = base_z->failed ? INFINITY : change(base_z, o);
	return 0;
}

/*
 * One session for every check (overridable.c): the candidates made
 * overridable, the baseline run in it.  NULL, and a session per check
 * after, when ONNX Runtime does not take that model (IR version below 4,
 * a kernel that wants one of them constant) or the baseline fails in it.
 */
static struct rt_session *shared_open(struct rt_bundle *b, const struct live_tensor *v,
				      size_t n, const struct seqs *texts, struct outputs *base)
{
	struct rt_override *ov = calloc(n ? n : 1, sizeof(*ov));
	struct rt_session *s = NULL;
	nx_error e;
	size_t i;

	nx_error_clear(&e);
	if (!ov)
		return NULL;
	for (i = 0; i < n; i++) {
		const struct nx_onnx_tensor *t = v[i].t;

		ov[i] = (struct rt_override){ t->name, t->data_type, t->dims, t->ndims, NULL, 0 };
	}
	if (rt_session_open_overridable(&s, b, ov, n, &e) ||
	    run_all(base, b, s, NULL, texts, NULL, NULL, &e)) {
		fprintf(stderr, "nexus_cli: liveness: a session per initializer: %s\n", e.message);
		rt_session_free(s);
		s = NULL;
	}
	free(ov);
	return s;
}

int rt_liveness(struct rt_bundle *b, FILE *report, size_t min_bytes, uint64_t budget_ms,
		bool zero_check, bool session_each, nx_error *err)
{
	struct rt_session *shared = NULL;
	struct outputs base = {0}, o = {0}, base_z = {0};
	struct seqs pr = {0}, texts = {0};
	struct live_tensor *v = NULL, *unp = NULL;
	const struct nx_onnx_tensor **sub = NULL;
	size_t nsub = 0, nunp = 0;
	nx_onnx_model *m = NULL;
	json_t *golden = NULL, *cases;
	unsigned char *orig = NULL, *copy = NULL;
	size_t i, n = 0, checked = 0, ndead = 0, most = 1;
	uint64_t seed = 0, start = (uint64_t)(nx_now() * 1e3), total = 0, done = 0;
	char first[300] = "";
	int rc;

	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)start * 0x9E3779B97F4A7C15ull;
	seed |= 1;
	if ((rc = rt_selftest_load(&golden, b, err)))
		return rc;
	cases = json_object_get(golden, "cases");
	if ((rc = texts_new(&texts, b, cases, err)) ||
	    (rc = nx_onnx_open(&m, b->model_fd, RT_MODEL, err)) ||
	    (rc = candidates(&v, &n, &sub, &nsub, &unp, &nunp, nx_onnx_summary_get(m), min_bytes,
				 &seed, err)))
		goto out;
	if (!session_each && n)
		shared = shared_open(b, v, n, &texts, &base);
	if ((!shared && (rc = run_all(&base, b, NULL, NULL, &texts, NULL, NULL, err))) ||
	    (zero_check && (rc = probes_new(&pr, b, &seed, err))))
		goto out;
	for (i = 0; i < n; i++) {
		total += v[i].bytes;
		if (v[i].bytes > most)
			most = v[i].bytes;
	}
	/* one pair of buffers for every check, as large as the largest */
	orig = malloc(most);
	copy = malloc(most);
	if (!orig || !copy) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const struct nx_onnx_tensor *t = v[i].t;
		struct rt_override ov = { t->name, t->data_type, t->dims, t->ndims, NULL, v[i].bytes };
		double ch, zch;
		bool dead;

		if (budget_ms && (uint64_t)(nx_now() * 1e3) - start > budget_ms) {
			print_line(report, t->name, "unchecked", v[i].bytes, 0, NAN);
			continue;
		}
		if ((rc = contents(orig, v[i].bytes, b, t, err)))
			goto out;
		perturb(copy, orig, t->data_type, t->nelem, 1, &seed);
		ov.data = copy;
		if ((rc = run_all(&o, b, shared, &ov, &texts, NULL, &base, err)))
			goto out;
		ch = change(&base, &o);
		/* A float tensor whose every change turns the outputs non-finite
		 * (or fails the run) may be wired to a tripwire (sqrt(-|w - copy|)):
		 * a smaller change must then move them finitely. */
		if (!isfinite(ch) && is_float(t->data_type)) {
			perturb(copy, orig, t->data_type, t->nelem, 1e-3, &seed);
			if ((rc = run_all(&o, b, shared, &ov, &texts, NULL, &base, err)))
				goto out;
			ch = change(&base, &o);
			if (!isfinite(ch))
				ch = 0;
		}
		checked++;
		done += v[i].bytes;
		dead = !(ch >= RT_LIVE_REL_MIN) &&
		       !uniform(orig, v[i].bytes, nx_onnx_dtype_size(t->data_type) ?
				nx_onnx_dtype_size(t->data_type) : 1);
		if (dead && !ndead++)
			snprintf(first, sizeof(first), "'%.200s' (relative change %.3g)", t->name, ch);
		zch = NAN;
		if (dead && zero_check &&
		    (rc = zero_change(&zch, b, shared, &ov, &texts, &pr, &base_z, &o, copy, err)))
			goto out;
		print_line(report, t->name, dead ? "dead" : ch >= RT_LIVE_REL_MIN ? "live" :
			   "dead-empty", v[i].bytes, ch, zch);
	}
	for (i = 0; i < nsub; i++)
		print_line(report, sub[i]->name, "subgraph", (size_t)dtype_bytes(sub[i]->data_type,
			   sub[i]->nelem), 0, NAN);
	for (i = 0; i < nunp; i++) {
		print_line(report, unp[i].t->name, "unperturbable", unp[i].bytes, 0, NAN);
		total += unp[i].bytes;
	}
	fprintf(report, "{\"checked\":%zu,\"of\":%zu,\"bytes_checked\":%llu,\"bytes\":%llu,"
		"\"threshold\":%g}\n", checked, n + nunp, (unsigned long long)done,
		(unsigned long long)total, RT_LIVE_REL_MIN);
	if (ndead)
		rc = nx_error_set(err, NX_ECHECK, RT_MODEL, 0, -1,
				  "liveness: %zu initializer(s) do not influence the outputs, "
				  "first %s", ndead, first);
out:
	rt_session_free(shared);
	free(orig);
	free(copy);
	free(base.v);
	free(base_z.v);
	free(o.v);
	seqs_free(&pr);
	seqs_free(&texts);
	free(v);
	free(sub);
	free(unp);
	nx_onnx_free(m);
	json_decref(golden);
	return rc;
}
