/*
 * postproc.c - what the runtime makes of the model's outputs: numbers as
 * JSON, softmax + argmax for classification, pooling + L2 for embeddings.
 * No ONNX Runtime here: these work on plain arrays of doubles.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

double rt_half_to_double(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);

	return (h & 0x8000) ? -v : v;
}

/*
 * Hand-written because neither libc nor jansson has it: printf("%.9g")
 * always round-trips a float32 but is not the shortest form (0.1f prints
 * 0.100000001), and %.17g of its double is longer still.  For each k,
 * "%.kg" is the k-digit decimal nearest to f, so some k-digit decimal reads
 * back as f exactly when "%.kg" does, and if k digits do, k + 1 do too: the
 * shortest k is found by a search over 1..9 (6, then 8, then 7 or 9: three tries at most).  %g drops
 * trailing zeros, so a form that passes at 6 digits is also the shortest
 * when fewer digits would do: below 7 digits a float32 is always nearer to
 * its short decimal than half a unit of the next digit (subnormals aside,
 * which are searched from 1 digit up).  A Ryu-style
 * algorithm would be faster but is hundreds of lines; this costs about half
 * a microsecond a number, far below the model's time per number printed.
 */
static bool reads_back(char *buf, size_t size, int digits, float f)
{
	snprintf(buf, size, "%.*g", digits, (double)f);
	return strtof(buf, NULL) == f;
}

size_t rt_f32_shortest(char *buf, size_t size, float f)
{
	char seven[32];
	int k;

	/* subnormals have fewer bits than their digits suggest: search all */
	if (fpclassify(f) == FP_SUBNORMAL) {
		for (k = 1; k < 9 && !reads_back(buf, size, k, f); k++)
			;
		if (k == 9)
			reads_back(buf, size, 9, f);
		return strlen(buf);
	}
	if (reads_back(buf, size, 6, f))
		return strlen(buf);
	if (!reads_back(buf, size, 8, f))
		reads_back(buf, size, 9, f);
	else if (reads_back(seven, sizeof(seven), 7, f))
		snprintf(buf, size, "%s", seven);
	return strlen(buf);
}

static json_t *real(double v, enum rt_num num)
{
	char buf[32];

	if (!isfinite(v))
		return json_null();
	if (num == RT_NUM_INT && v >= -9007199254740992.0 && v <= 9007199254740992.0)
		return json_integer((json_int_t)v);
	if (num != RT_NUM_F32)
		return json_real(v);
	rt_f32_shortest(buf, sizeof(buf), (float)v);
	return json_real(strtod(buf, NULL));
}

json_t *rt_reals(const double *v, size_t n, enum rt_num num)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		json_array_append_new(a, real(v[i], num));
	return a;
}

bool rt_reals_nonfinite(const json_t *a, size_t *at)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
		if (json_is_null(v)) {
			*at = i;
			return true;
		}
	return false;
}

/* A model that computes NaN or infinity is broken: its result must not pass
 * for an answer (nulls in "scores" used to), so the input reports an error. */
json_t *rt_nonfinite_result(json_t *res)
{
	static const char *const derived[] = { "scores", "embedding" };
	const char *name = NULL;
	json_t *v;
	size_t i, at = 0;
	char msg[512];

	json_object_foreach(json_object_get(res, "outputs"), name, v)
		if (rt_reals_nonfinite(v, &at))
			break;
	for (i = 0; !name && i < sizeof(derived) / sizeof(derived[0]); i++)
		if ((v = json_object_get(res, derived[i])) && rt_reals_nonfinite(v, &at))
			name = derived[i];
	if (!name)
		return NULL;
	snprintf(msg, sizeof(msg), "non-finite-output: output '%s' index %zu is not a finite "
		 "number (NaN or infinity); the model is broken for this input", name, at);
	return json_pack("{s:s,s:s,s:s,s:I}", "error", msg, "code", "non-finite-output",
			 "output", name, "index", (json_int_t)at);
}

/* Numbers the runtime derives (scores, embeddings) are as precise as the
 * output they come from, and never integers. */
static enum rt_num derived(enum rt_num num)
{
	return num == RT_NUM_F64 ? RT_NUM_F64 : RT_NUM_F32;
}

int rt_classify(json_t *res, const struct rt_settings *set, const double *v, size_t n,
		enum rt_num num, nx_error *err)
{
	double mx = -INFINITY, sum = 0, *p;
	size_t i, best = 0;

	if (set->nlabels && set->nlabels != n)
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "runtime.yaml has %zu labels but the model gives %zu scores",
				    set->nlabels, n);
	if (!(p = malloc((n ? n : 1) * sizeof(*p))))
		return NX_ENOMEM;
	for (i = 0; i < n; i++)
		if (v[i] > mx) {
			mx = v[i];
			best = i;
		}
	for (i = 0; i < n; i++)
		sum += (p[i] = exp(v[i] - mx));
	for (i = 0; i < n; i++)
		p[i] /= sum;
	json_object_set_new(res, "label", set->nlabels ? json_string(set->labels[best])
						       : json_integer((json_int_t)best));
	if (set->scores_map && set->nlabels) {
		json_t *m = json_object();

		for (i = 0; m && i < n; i++)
			json_object_set_new(m, set->labels[i], real(p[i], derived(num)));
		json_object_set_new(res, "scores", m);
	} else {
		json_object_set_new(res, "scores", rt_reals(p, n, derived(num)));
	}
	free(p);
	return 0;
}

int rt_rerank(json_t *res, const double *v, size_t n, enum rt_num num, nx_error *err)
{
	double s;

	if (n == 1)
		s = v[0];
	else if (n == 2)
		s = 1.0 / (1.0 + exp(v[0] - v[1]));  /* softmax of class 1 */
	else
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "task: rerank needs one score (or two classes) per input; the "
				    "model gives %zu", n);
	json_object_set_new(res, "score", real(s, derived(num)));
	return 0;
}

/* Row r of a [B, L, H] or [B, H] output, pooled to H numbers. */
int rt_embed(json_t *res, const struct rt_settings *set, const struct rt_output *o, size_t r,
	     size_t off, size_t len, const int64_t *mask, nx_error *err)
{
	size_t B = (size_t)o->dims[0], H = (size_t)o->dims[o->nd - 1], L, t, h, lo = 0, used = 0;
	const double *row = o->v + r * (o->count / B);
	double *e = calloc(H ? H : 1, sizeof(*e)), norm = 0;

	if (!e)
		return NX_ENOMEM;
	if (o->nd == 2) {
		memcpy(e, row, H * sizeof(*e));
	} else if (o->nd == 3) {
		L = (size_t)o->dims[1];
		if (off > L)
			off = L;
		if (len > L - off)
			len = L - off;
		row += off * H;
		/* the padding of the batch (outside off..off+len) never counts,
		 * nor the padding the tokenizer.json asks for (mask 0), on
		 * whichever side it is */
		if (mask) {
			while (len > 1 && !mask[len - 1])
				len--;
			while (lo + 1 < len && !mask[lo])
				lo++;
		}
		if (set->pool == RT_POOL_CLS && len)
			len = lo + 1;
		else if (set->pool == RT_POOL_LAST && len)
			lo = len - 1;
		for (t = lo; t < len; t++) {
			if (mask && !mask[t] && set->pool == RT_POOL_MEAN)
				continue;
			used++;
			for (h = 0; h < H; h++)
				e[h] += row[t * H + h];
		}
		for (h = 0; used && h < H; h++)
			e[h] /= (double)used;
	} else {
		free(e);
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "an embedding output must be [batch, seq, hidden] or [batch, hidden]");
	}
	if (set->output_dims) {
		if (set->output_dims > H) {
			free(e);
			return nx_error_set(err, NX_ECONFIG, RT_CONFIG, 0, -1,
					    "%s: output_dims %zu is more than the model's %zu dimensions",
					    RT_CONFIG, set->output_dims, H);
		}
		H = set->output_dims;   /* Matryoshka: the first dims, then normalised */
	}
	if (set->normalize) {
		for (h = 0; h < H; h++)
			norm += e[h] * e[h];
		norm = sqrt(norm);
		for (h = 0; norm > 0 && h < H; h++)
			e[h] /= norm;
	}
	json_object_set_new(res, "embedding", rt_reals(e, H, derived(o->num)));
	free(e);
	return 0;
}

