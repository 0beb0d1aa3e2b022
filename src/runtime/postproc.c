/*
 * postproc.c - what the runtime makes of the model's outputs: numbers as
 * JSON, softmax + argmax for classification, pooling + L2 for embeddings.
 * No ONNX Runtime here: these work on plain arrays of doubles.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

double rt_half_to_double(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);

	return (h & 0x8000) ? -v : v;
}

json_t *rt_reals(const double *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		json_array_append_new(a, isfinite(v[i]) ? json_real(v[i]) : json_null());
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

int rt_classify(json_t *res, const struct rt_settings *set, const double *v, size_t n,
		    nx_error *err)
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
	json_object_set_new(res, "scores", rt_reals(p, n));
	free(p);
	return 0;
}

/* Row r of a [B, L, H] or [B, H] output, pooled to H numbers. */
int rt_embed(json_t *res, const struct rt_settings *set, const struct rt_output *o, size_t r,
		 size_t len, const int64_t *mask, nx_error *err)
{
	size_t used = 0;
	size_t B = (size_t)o->dims[0], H = (size_t)o->dims[o->nd - 1], L, t, h;
	const double *row = o->v + r * (o->count / B);
	double *e = calloc(H ? H : 1, sizeof(*e)), norm = 0;

	if (!e)
		return NX_ENOMEM;
	if (o->nd == 2) {
		memcpy(e, row, H * sizeof(*e));
	} else if (o->nd == 3) {
		L = (size_t)o->dims[1];
		if (set->pool_cls || len > L)
			len = set->pool_cls ? 1 : L;
		for (t = 0; t < len; t++) {
			/* padding the tokenizer.json asks for is not averaged in */
			if (mask && !mask[t] && !set->pool_cls)
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
	if (set->normalize) {
		for (h = 0; h < H; h++)
			norm += e[h] * e[h];
		norm = sqrt(norm);
		for (h = 0; norm > 0 && h < H; h++)
			e[h] /= norm;
	}
	json_object_set_new(res, "embedding", rt_reals(e, H));
	free(e);
	return 0;
}

