/*
 * generate.c - the decoder loop of task: generation on the ONNX Runtime C
 * API: one prompt at a time (batch 1), prefill, then one token per step.
 *
 * With a cache (Optimum's text-generation-with-past, or the merged decoder
 * with use_cache_branch) the present.N outputs of a step are fed back as
 * the past_key_values.N inputs of the next as they are, OrtValues that ONNX
 * Runtime allocated: the runtime never copies the cache (the graph's own
 * Concat grows it).  The other inputs point into buffers allocated once
 * per request (the ids, a row of ones for the mask, 0..ctx-1 for the
 * positions).  Without a cache every step runs the whole sequence.
 *
 * Choosing a token follows Hugging Face's order: repetition penalty, then
 * greedy (argmax, the lowest id on a tie) or temperature, top-k, top-p and
 * a draw from our own PRNG (splitmix64), so a seed gives the same tokens
 * whatever the thread count or the C library.
 *
 * Text is decoded incrementally (as vLLM does): the ids since the last
 * emitted piece are decoded with a few before them for context, and a
 * piece is emitted only when it does not end in U+FFFD, the decoder's mark
 * of an incomplete UTF-8 sequence; text that could be the start of a stop
 * string is held back until it is known not to be one.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nexus/clock.h"
#include "rt_ort.h"

#define GEN_VOCAB_MAX (1u << 24)   /* logits per row handled */

/* splitmix64: tiny, fast, and the same sequence everywhere */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)     /* [0, 1) */
{
	return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

struct cand {
	float logit;
	int32_t id;
};

/* by logit, highest first; ties by id, lowest first (a total order) */
static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->logit != y->logit)
		return x->logit > y->logit ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

struct gen_state {
	struct rt_session *s;
	const struct rt_gen_params *p;
	size_t V, ctx, n;           /* vocabulary, context, ids so far (prompt + new) */
	int64_t *ids;               /* ctx */
	int32_t *ids32;             /* ctx, when input_ids is int32 */
	void *ones, *iota;          /* ctx each, typed as the mask / positions inputs */
	float *row;                 /* V: the logits of the last position */
	struct cand *cand;          /* V */
	unsigned char *seen;        /* V bits: ids of prompt and output (repetition penalty) */
	uint64_t rng;
	OrtValue *past[RT_PAST_MAX];
};

static bool is_eos(const struct rt_gen_params *p, int64_t id)
{
	size_t i;

	for (i = 0; i < p->neos; i++)
		if (p->eos[i] == id)
			return true;
	return false;
}

/* The next token from g->row; -1 when a logit is NaN (or +inf). */
static int64_t choose(struct gen_state *g)
{
	const struct rt_gen_params *p = g->p;
	size_t V = g->V, i, k, m;
	float *row = g->row, best;
	double t, sum, acc, u, mx;
	int64_t arg = 0;

	for (i = 0; i < V; i++)
		if (isnan(row[i]) || row[i] == INFINITY)
			return -1;
	if (p->repetition_penalty != 1)
		for (i = 0; i < V; i++)
			if (g->seen[i >> 3] & (1u << (i & 7)))
				row[i] = row[i] < 0 ? (float)(row[i] * p->repetition_penalty)
					 : (float)(row[i] / p->repetition_penalty);
	if (!p->do_sample || p->temperature == 0) {
		best = row[0];
		for (i = 1; i < V; i++)
			if (row[i] > best) {
				best = row[i];
				arg = (int64_t)i;
			}
		return arg;
	}
	t = p->temperature;
	for (i = 0; i < V; i++) {
		g->cand[i].logit = (float)(row[i] / t);
		g->cand[i].id = (int32_t)i;
	}
	m = V;
	k = p->top_k && p->top_k < V ? p->top_k : 0;
	if (k || p->top_p < 1) {
		/* sorted once; top-k then keeps a prefix, top-p a shorter one */
		qsort(g->cand, V, sizeof(*g->cand), cand_cmp);
		if (k)
			m = k;
	}
	mx = -INFINITY;
	for (i = 0; i < m; i++)
		if (g->cand[i].logit > mx)
			mx = g->cand[i].logit;
	if (mx == -INFINITY)
		return g->cand[0].id;
	for (sum = 0, i = 0; i < m; i++)
		sum += exp(g->cand[i].logit - mx);
	if (p->top_p < 1) {     /* the fewest, most likely, reaching top_p (at least one) */
		for (acc = 0, i = 0; i < m; i++) {
			acc += exp(g->cand[i].logit - mx) / sum;
			if (acc >= p->top_p) {
				i++;
				break;
			}
		}
		m = i ? i : 1;
		for (sum = 0, i = 0; i < m; i++)
			sum += exp(g->cand[i].logit - mx);
	}
	u = rng_unit(&g->rng) * sum;
	for (acc = 0, i = 0; i < m; i++) {
		acc += exp(g->cand[i].logit - mx);
		if (u < acc)
			return g->cand[i].id;
	}
	return g->cand[m - 1].id;
}

static void mark_seen(struct gen_state *g, int64_t id)
{
	if (id >= 0 && (size_t)id < g->V)
		g->seen[id >> 3] |= (unsigned char)(1u << (id & 7));
}

/* An [1, len] tensor of the kind of input k over data (borrowed). */
static int int_tensor(OrtValue **out, struct rt_session *s, int k, void *data, size_t len,
		      nx_error *err)
{
	bool i32 = s->in_type[k] == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
	int64_t shape[2] = { 1, (int64_t)len };
	int rc = 0;

	ORT_TRY(s->ort->CreateTensorWithDataAsOrtValue(s->mem, data, len * (i32 ? 4 : 8), shape, 2,
		i32 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, out),
		"input tensor");
out:
	return rc;
}

static void *typed_at(const struct rt_session *s, int k, void *base, size_t at)
{
	return (char *)base + at * (s->in_type[k] == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 ? 4 : 8);
}

/* The last position's logits of out into g->row. */
static int take_logits(struct gen_state *g, OrtValue *out, nx_error *err)
{
	struct rt_session *s = g->s;
	OrtTensorTypeAndShapeInfo *info = NULL;
	ONNXTensorElementDataType t;
	int64_t dims[3];
	size_t nd, i, V;
	void *data;
	int rc = 0;

	ORT_TRY(s->ort->GetTensorTypeAndShape(out, &info), "logits shape");
	ORT_TRY(s->ort->GetTensorElementType(info, &t), "logits type");
	ORT_TRY(s->ort->GetDimensionsCount(info, &nd), "logits shape");
	if (nd != 3 || (t != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
			t != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16)) {
		rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				  "the model output '%s' is not float logits [batch, sequence, vocabulary]",
				  s->out_names[s->main_out]);
		goto out;
	}
	ORT_TRY(s->ort->GetDimensions(info, dims, 3), "logits shape");
	V = (size_t)dims[2];
	if (dims[0] != 1 || dims[1] < 1 || (g->V && V != g->V) || V < 2 || V > GEN_VOCAB_MAX) {
		rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				  "the model output '%s' has shape [%lld, %lld, %lld]; [1, sequence, "
				  "vocabulary] expected", s->out_names[s->main_out], (long long)dims[0],
				  (long long)dims[1], (long long)dims[2]);
		goto out;
	}
	if (!g->V) {
		g->V = V;
		g->row = malloc(V * sizeof(*g->row));
		g->cand = malloc(V * sizeof(*g->cand));
		g->seen = calloc(V / 8 + 1, 1);
		if (!g->row || !g->cand || !g->seen) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		for (i = 0; i < g->n; i++)
			mark_seen(g, g->ids[i]);
	}
	ORT_TRY(s->ort->GetTensorMutableData(out, &data), "logits");
	if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
		memcpy(g->row, (float *)data + (size_t)(dims[1] - 1) * V, V * sizeof(float));
	else
		for (i = 0; i < V; i++)
			g->row[i] = (float)rt_half_to_double(((uint16_t *)data)[(size_t)(dims[1] - 1) * V + i]);
out:
	if (info)
		s->ort->ReleaseTensorTypeAndShapeInfo(info);
	return rc;
}

/*
 * One step: feed ids[from..g->n) (with the cache: the new ones; without:
 * all, from == 0) and leave the next token's logits in g->row.
 */
static int step(struct gen_state *g, size_t from, nx_error *err)
{
	struct rt_session *s = g->s;
	OrtValue *in[IN_COUNT + RT_PAST_MAX] = { NULL }, *outv[RT_PAST_MAX + 1] = { NULL };
	const char *outn[RT_PAST_MAX + 1];
	size_t ni, k, nout = 1, len = g->n - from;
	unsigned char branch = from > 0;
	int64_t one = 1;
	int rc = 0;

	outn[0] = s->out_names[s->main_out];
	for (k = 0; k < s->npast; k++)
		outn[nout++] = s->out_names[s->past[k].present];
	for (ni = 0; ni < s->nin; ni++) {
		int kind = s->run_kind[ni];

		if (kind == IN_IDS && g->ids32)
			rc = int_tensor(&in[ni], s, kind, g->ids32 + from, len, err);
		else if (kind == IN_IDS)
			rc = int_tensor(&in[ni], s, kind, g->ids + from, len, err);
		else if (kind == IN_MASK)      /* the whole sequence, cache included */
			rc = int_tensor(&in[ni], s, kind, g->ones, g->n, err);
		else if (kind == IN_POS)
			rc = int_tensor(&in[ni], s, kind, typed_at(s, kind, g->iota, from), len, err);
		else if (kind == IN_TYPES)     /* zeros: the mask's buffer would be ones */
			rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
					  "a decoder with token_type_ids is not supported (%s)",
					  RT_INPUTS_EXPECTED);
		else if (kind == IN_BRANCH)
			ORT_TRY(s->ort->CreateTensorWithDataAsOrtValue(s->mem, &branch, 1, &one, 1,
				ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, &in[ni]), "input tensor");
		else if (!g->past[kind - IN_COUNT])
			rc = rt_past_empty(&in[ni], s, (size_t)(kind - IN_COUNT), 1, err);
		else {                         /* the previous step's present, as it is */
			in[ni] = g->past[kind - IN_COUNT];
			g->past[kind - IN_COUNT] = NULL;
		}
		if (rc)
			goto out;
	}
	s->run_failed = true;
	ORT_TRY(s->ort->Run(s->sess, NULL, s->run_in, (const OrtValue *const *)in, s->nin, outn,
			    nout, outv), "run");
	s->run_failed = false;
	if ((rc = take_logits(g, outv[0], err)))
		goto out;
	for (k = 0; k < s->npast; k++) {
		g->past[k] = outv[k + 1];
		outv[k + 1] = NULL;
	}
out:
	for (k = 0; k < ni && k < s->nin; k++)
		if (in[k])
			s->ort->ReleaseValue(in[k]);
	for (k = 0; k < nout; k++)
		if (outv[k])
			s->ort->ReleaseValue(outv[k]);
	return rc;
}

/* The text so far and what of it went out. */
struct gen_text {
	nx_tokdecoder *dec;
	rt_text_fn emit;
	void *ctx;
	char *buf;
	size_t len, cap, printed;
	size_t prefix, read;        /* generated ids: decode context, decoded up to */
	size_t stop_max;            /* longest stop string */
	const struct rt_gen_params *p;
	ssize_t stopped;            /* where a stop string starts, -1 none */
};

static int text_append(struct gen_text *t, const char *s, size_t n, nx_error *err)
{
	if (n > SIZE_MAX - t->len - 1 || nx_array_grow(&t->buf, &t->cap, t->len + n + 1, 1, SIZE_MAX))
		return nx_error_oom(err, NULL);
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return 0;
}

static bool ends_incomplete(const char *s, size_t n)
{
	return n >= 3 && !memcmp(s + n - 3, "\xef\xbf\xbd", 3);
}

/* Emit what is known not to be (the start of) a stop string. */
static int text_release(struct gen_text *t, size_t searched_from, bool final, nx_error *err)
{
	size_t upto = t->len, i, k, from;

	for (i = 0; i < t->p->nstop; i++) {
		const char *st = t->p->stop[i], *hit;
		size_t sl = strlen(st);

		from = searched_from > sl ? searched_from - sl : 0;
		if (from < t->len && (hit = memmem(t->buf + from, t->len - from, st, sl)) &&
		    (t->stopped < 0 || hit - t->buf < t->stopped))
			t->stopped = hit - t->buf;
	}
	if (t->stopped >= 0) {
		t->len = (size_t)t->stopped;
		t->buf[t->len] = '\0';
		upto = t->len;
	} else if (!final) {
		for (i = 0; i < t->p->nstop; i++) {
			const char *st = t->p->stop[i];
			size_t sl = strlen(st);

			for (k = sl - 1; k > 0; k--)    /* the longest tail that begins st */
				if (k <= t->len && !memcmp(t->buf + t->len - k, st, k)) {
					if (t->len - k < upto)
						upto = t->len - k;
					break;
				}
		}
	}
	if (upto > t->printed && t->emit && t->emit(t->ctx, t->buf + t->printed, upto - t->printed))
		return nx_error_set(err, NX_EIO, NULL, 0, -1, "cannot write the output");
	if (upto > t->printed)
		t->printed = upto;
	return 0;
}

/* New generated ids gen[0..n): decode what is complete. */
static int text_step(struct gen_text *t, const int64_t *gen, size_t n, nx_error *err)
{
	char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0, old = t->len;
	int rc;

	if ((rc = nx_tokdecoder_decode(t->dec, gen + t->prefix, t->read - t->prefix, true, &a, &alen,
				       err)) ||
	    (rc = nx_tokdecoder_decode(t->dec, gen + t->prefix, n - t->prefix, true, &b, &blen, err)))
		goto out;
	if (blen > alen && !ends_incomplete(b, blen) && !memcmp(a, b, alen)) {
		if ((rc = text_append(t, b + alen, blen - alen, err)))
			goto out;
		t->prefix = t->read;
		t->read = n;
		rc = text_release(t, old, false, err);
	}
out:
	free(a);
	free(b);
	return rc;
}

/* The end: the whole output decoded at once is the text (unless a stop
 * string cut it); what was not printed yet goes out. */
static int text_finish(struct gen_text *t, const int64_t *gen, size_t n, nx_error *err)
{
	char *full = NULL;
	size_t flen = 0, old = t->len;
	int rc;

	if (t->stopped < 0) {
		if ((rc = nx_tokdecoder_decode(t->dec, gen, n, true, &full, &flen, err)))
			return rc;
		if (flen >= t->len && !memcmp(full, t->buf, t->len)) {
			rc = text_append(t, full + t->len, flen - t->len, err);
		} else {
			/* only invalid UTF-8 decodes otherwise in pieces than whole:
			 * the result holds the whole decode */
			t->len = 0;
			t->printed = 0;
			t->emit = NULL;
			rc = text_append(t, full, flen, err);
		}
		free(full);
		if (rc)
			return rc;
	}
	return text_release(t, old, true, err);
}

void rt_gen_result_release(struct rt_gen_result *r)
{
	free(r->ids);
	free(r->text);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

static int request_error(struct rt_gen_result *res, const char *code, nx_error *err,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int request_error(struct rt_gen_result *res, const char *code, nx_error *err,
			 const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&res->error, fmt, ap);
	va_end(ap);
	if (n < 0) {
		res->error = NULL;
		return nx_error_oom(err, NULL);
	}
	res->code = code;
	return 0;
}

int rt_generate(struct rt_session *s, struct rt_bundle *b, nx_tokdecoder *dec, const char *prompt,
		size_t plen, const struct rt_gen_params *p, rt_text_fn emit, void *ctx,
		struct rt_gen_result *res, nx_error *err)
{
	struct gen_state g;
	struct gen_text t;
	size_t ctxlen = b->set.max_len, i, np, cap, from = 0;
	double t0 = nx_now(), t1 = 0;
	bool i32mask, i32pos;
	int64_t tok;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	memset(&g, 0, sizeof(g));
	memset(&t, 0, sizeof(t));
	t.stopped = -1;
	g.s = s;
	g.p = p;
	g.ctx = ctxlen;
	g.rng = p->seed;
	if (s->dec == RT_DEC_NONE)
		return nx_error_set(err, NX_ECONFIG, RT_CONFIG, 0, -1,
				    "%s: generate needs task: generation", RT_CONFIG);
	if (!plen)
		return request_error(res, "empty-prompt", err, "the prompt is empty; give some text "
				     "to continue");
	/* one slot more than the context: a prompt that fills it is seen */
	g.ids = calloc(ctxlen + 1, sizeof(*g.ids));
	i32mask = s->in_type[IN_MASK] == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
	i32pos = s->in_type[IN_POS] == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
	g.ones = malloc(ctxlen * (i32mask ? 4 : 8));
	g.iota = malloc(ctxlen * (i32pos ? 4 : 8));
	if (s->in_type[IN_IDS] == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32)
		g.ids32 = calloc(ctxlen + 1, sizeof(*g.ids32));
	if (!g.ids || !g.ones || !g.iota ||
	    (s->in_type[IN_IDS] == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 && !g.ids32)) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < ctxlen; i++) {
		if (i32mask)
			((int32_t *)g.ones)[i] = 1;
		else
			((int64_t *)g.ones)[i] = 1;
		if (i32pos)
			((int32_t *)g.iota)[i] = (int32_t)i;
		else
			((int64_t *)g.iota)[i] = (int64_t)i;
	}
	rc = p->rendered ? nx_tokenizer_encode_plain(b->tok, prompt, plen, ctxlen + 1, g.ids, &np, err)
			 : nx_tokenizer_encode(b->tok, prompt, plen, ctxlen + 1, g.ids, &np, err);
	if (rc) {
		if (rc != NX_ENOMEM)    /* invalid UTF-8 and the like: this prompt's */
			rc = request_error(res, "bad-prompt", err, "%s", err->message);
		goto out;
	}
	if (np >= ctxlen) {
		rc = request_error(res, "prompt-too-long", err, "the prompt is %s%zu tokens; the "
				   "context (max_sequence_length) holds %zu, prompt and output together",
				   np > ctxlen ? "more than " : "", np > ctxlen ? ctxlen : np, ctxlen);
		goto out;
	}
	if (!np) {
		rc = request_error(res, "empty-prompt", err, "the prompt has no tokens");
		goto out;
	}
	g.n = np;
	res->prompt_tokens = np;
	cap = p->max_new_tokens < ctxlen - np ? p->max_new_tokens : ctxlen - np;
	res->finish = "length";
	t.dec = dec;
	t.emit = emit;
	t.ctx = ctx;
	t.p = p;
	while (g.n - np < cap) {
		if (g.ids32)
			for (i = from; i < g.n; i++)
				g.ids32[i] = (int32_t)g.ids[i];
		if ((rc = step(&g, from, err))) {
			if (s->run_failed)     /* the model refused this input: this request's */
				rc = request_error(res, "model-error", err, "%s", err->message);
			goto out;
		}
		if ((tok = choose(&g)) < 0) {
			rc = request_error(res, "non-finite-output", err, "the model produced a NaN "
					   "logit at output token %zu", g.n - np);
			goto out;
		}
		if (g.n == np)
			t1 = nx_now();
		g.ids[g.n++] = tok;
		mark_seen(&g, tok);
		if (s->dec != RT_DEC_PLAIN)
			from = g.n - 1;
		if (is_eos(p, tok)) {
			res->finish = "eos";
			break;
		}
		if ((rc = text_step(&t, g.ids + np, g.n - np, err)))
			goto out;
		if (t.stopped >= 0) {
			res->finish = "stop";
			break;
		}
	}
	if ((rc = text_finish(&t, g.ids + np, g.n - np, err)))
		goto out;
	if (t.stopped >= 0)
		res->finish = "stop";
	res->nids = g.n - np;
	if (!(res->ids = malloc((res->nids ? res->nids : 1) * sizeof(*res->ids)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	memcpy(res->ids, g.ids + np, res->nids * sizeof(*res->ids));
	res->text = t.buf;
	res->len = t.len;
	t.buf = NULL;
	res->ttft_ms = t1 ? (t1 - t0) * 1e3 : 0;
	res->tokens_per_s = res->nids > 1 ? (double)(res->nids - 1) / (nx_now() - t1) : 0;
out:
	for (i = 0; i < s->npast; i++)
		if (g.past[i])
			s->ort->ReleaseValue(g.past[i]);
	free(g.ids);
	free(g.ids32);
	free(g.ones);
	free(g.iota);
	free(g.row);
	free(g.cand);
	free(g.seen);
	free(t.buf);
	return rc;
}
