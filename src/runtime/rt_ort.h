/*
 * rt_ort.h - the ONNX Runtime session shared by infer.c (one pass over a
 * batch), generate.c (the decoder loop) and overridable.c (liveness's one
 * session).  Only those include it: the rest of the runtime sees struct
 * rt_session through rt.h.
 */
#ifndef NEXUS_RT_ORT_H
#define NEXUS_RT_ORT_H

#include "onnxruntime_c_api.h"
#include "rt.h"

/* The inputs fed by name; a decoder's past_key_values.* come on top. */
enum { IN_IDS, IN_MASK, IN_TYPES, IN_POS, IN_BRANCH, IN_COUNT };

#define RT_PAST_MAX 256         /* past_key_values.* inputs (2 per layer) */

/*
 * A decoder's layout, found from the graph (docs/DESIGN-NOTES.md,
 * "generation"): Optimum's text-generation-with-past (past_key_values.N.key
 * / .value in, present.N.key / .value out), the merged decoder (the same
 * and use_cache_branch), or a plain decoder without cache.
 */
enum rt_dec_kind { RT_DEC_NONE, RT_DEC_PLAIN, RT_DEC_PAST, RT_DEC_MERGED };

struct rt_past {
	char *name;             /* input past_key_values.SUFFIX */
	size_t present;         /* index of output present.SUFFIX */
	int64_t dims[4];        /* [batch, heads, past, head_dim] as declared */
	ONNXTensorElementDataType type;
};

struct rt_session {
	const OrtApi *ort;
	OrtEnv *env;
	OrtSession *sess;
	OrtMemoryInfo *mem;
	OrtAllocator *alloc;
	int in_present[IN_COUNT];
	ONNXTensorElementDataType in_type[IN_COUNT];
	const char *run_in[IN_COUNT + RT_PAST_MAX];
	int run_kind[IN_COUNT + RT_PAST_MAX];   /* IN_* or IN_COUNT + past index */
	size_t nin;
	char *out_names[RT_OUTPUTS_MAX];
	size_t nout;
	size_t main_out;        /* output used by the task */
	bool out_seq[RT_OUTPUTS_MAX]; /* declared [batch, dynamic, ...]: per token */
	json_t *describe;
	OrtValue *override;     /* an initializer replaced (liveness.c); must outlive sess */
	OrtValue *feed;         /* an overridable initializer fed to every run (overridable.c) */
	const char *feed_name;  /* its name, borrowed */
	rt_sink_fn sink;        /* rt_session_sink */
	void *sink_ctx;
	bool any_f64;           /* some output is float64: print 17 digits */
	bool run_failed;        /* the last rt_session_run failed in ORT's Run */
	enum rt_dec_kind dec;
	struct rt_past past[RT_PAST_MAX];
	size_t npast;
};

/* err from an ORT status (released); NX_EIO "onnx runtime: WHAT: ..." */
int rt_ort_fail(const OrtApi *ort, OrtStatus *st, nx_error *err, const char *what);

#define ORT_TRY(call, what) do { OrtStatus *st_ = (call); \
	if (st_) { rc = rt_ort_fail(s->ort, st_, err, what); goto out; } } while (0)

/* rt_session_open_with on the model bytes model[0..size) (the bundle's
 * model, or overridable.c's reading of it) instead of the model fd. */
int rt_session_open_model(struct rt_session **out, const struct rt_bundle *b, bool verbose,
			  const struct rt_override *ov, bool unoptimized, const void *model,
			  size_t size, nx_error *err);

/* A past_key_values input of length 0 ([batch, heads, 0, head_dim]): the
 * prefill, and every pass of rt_session_run over a decoder. */
int rt_past_empty(OrtValue **out, struct rt_session *s, size_t k, int64_t batch, nx_error *err);

#endif
