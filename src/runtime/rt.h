/*
 * rt.h - the pieces of bin/nexus_cli, the bundle's own runtime:
 *   main.c     verbs, options, exit codes
 *   bundle.c   finding the bundle, start-up integrity against manifest.json,
 *              runtime.yaml and the tokenizer
 *   infer.c    one ONNX Runtime session: inputs, padding, outputs; a
 *              decoder's layout (rt_ort.h, shared with generate.c)
 *   generate.c the decoder loop of task: generation: cache, sampling, stop
 *              strings, incremental decoding
 *   generate_cli.c  the generate verb: settings, prompts, printing
 *   input.c    reading texts (JSONL lines) and the batcher
 *   selftest.c config/selftest.json: compare and --write
 *   liveness.c every initializer must move the outputs (hidden verb)
 *   postproc.c softmax, pooling, numbers as JSON
 *   opts.c     option tables and --help
 *   serve*.c   the `serve` verb: HTTP, batching thread, metrics (serve.h)
 * Only src/runtime/ includes this.  It uses libnexus through include/nexus/.
 */
#ifndef NEXUS_RT_H
#define NEXUS_RT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nexus/bundle.h"
#include "nexus/config.h"
#include "nexus/error.h"
#include "nexus/functional.h"
#include "nexus/manifest.h"
#include "util/array_int.h"
#include "nexus/tokdecode.h"
#include "nexus/tokenizer.h"

#define RT_LINE_MAX (4u << 20)       /* bytes of one input line */
#define RT_BATCH_MAX 4096            /* batch_size cap */
#define RT_SEQ_MAX 65536             /* max_sequence_length cap */
#define RT_OUTPUTS_MAX 256           /* model outputs handled (a decoder: 2 per layer + 1) */
#define RT_WINDOW_BATCHES 16         /* inputs read ahead and sorted by length, in batches */
#define RT_WINDOW_MAX 1024           /* ... and in inputs */
#define RT_RUN_WINDOW 512            /* `run` reads ahead at least this many inputs ... */
#define RT_RUN_WINDOW_TOKENS (1u << 18) /* ... while inputs x max_sequence_length fit this */
#define RT_STREAM_WAIT_S 0.05        /* from a stream, answer an input read this long ago */
/* What one Run costs beyond its tokens, in padded tokens: ONNX Runtime's
 * fixed work per Run and per op.  A guess, not a measurement (on the
 * encoders of bench/run.py a token costs about 0.1-0.6 ms on one thread);
 * too high a guess only pads as fixed batches did. */
#define RT_RUN_COST 16
#define RT_LOG_LINE_MAX 2048
#define RT_LARGE_MODEL (64u << 20)   /* bytes of model + data: session options for large */         /* bytes of one ONNX Runtime log line printed */

#define RT_MODEL NX_MODEL_PATH
#define RT_MODEL_DATA NX_BUNDLE_MODEL_DATA
#define RT_TOKENIZER NX_BUNDLE_TOKENIZER_DIR
#define RT_CONFIG NX_BUNDLE_RUNTIME_CONFIG
#define RT_SELFTEST NX_BUNDLE_SELFTEST
#define RT_GENCONFIG NX_BUNDLE_GENERATION_CONFIG
/* The decoder inputs the runtime drives (Optimum's layouts), for messages. */
#define RT_PAST_PREFIX "past_key_values."
#define RT_INPUTS_EXPECTED "input_ids, attention_mask, token_type_ids; a decoder: input_ids, " \
	"attention_mask, position_ids?, past_key_values.N.key/.value with outputs logits and " \
	"present.N.key/.value, use_cache_branch? (Optimum's text-generation-with-past), or " \
	"input_ids and attention_mask alone"

enum rt_task { RT_TASK_CLASSIFICATION, RT_TASK_EMBEDDING, RT_TASK_RAW, RT_TASK_RERANK,
	       RT_TASK_GENERATION };
enum rt_pool { RT_POOL_MEAN, RT_POOL_CLS, RT_POOL_LAST };

/* What the runtime needs from config/runtime.yaml. */
struct rt_settings {
	enum rt_task task;
	char **labels;
	size_t nlabels;
	bool scores_map;        /* classification: "scores" as {label: score} */
	enum rt_pool pool;      /* embedding: mean over the text's tokens, first, last */
	bool normalize;         /* embedding: L2 (after output_dims) */
	size_t output_dims;     /* embedding: keep the first N numbers; 0 = all */
	bool raw;               /* "outputs" in every result (run --raw, selftest);
				 * always for classification and raw */
	size_t max_len;
	size_t batch_size;
	int threads;            /* 0 = ONNX Runtime's default */
	bool no_spin;           /* intra-op threads sleep rather than spin between
				 * ops (liveness.c: a busy host) */
	bool integrity_full;    /* hash every file vs. sizes only */
	int graph_opt;          /* GraphOptimizationLevel */
	char *output;           /* NULL = first output */
	const char *inputs[NX_INPUT_ROLES]; /* the model's input name per role (runtime.yaml
					       inputs:, else input_ids, ...) */
};

struct rt_hashjob;

struct rt_bundle {
	char root[4096];
	int rootfd;
	struct rt_settings set; /* borrows from rc */
	nx_runtime_config *rc;
	nx_tokenizer *tok;
	nx_manifest *manifest;  /* NULL when opened without the check */
	int model_fd;           /* model/student_model.onnx, checked */
	uint64_t model_size;
	uint64_t data_size;     /* model/student_model.onnx.data, 0 if none */
	struct rt_hashjob *hash; /* SHA-256 of the files, running beside the load */
};

/*
 * Open the bundle at `dir` (NULL: <dir of /proc/self/exe>/..), check every
 * manifest file unless `check` is false, then read runtime.yaml and the
 * tokenizer.  runtime.yaml is hashed before it is read; the sizes of the
 * others are checked here, and with integrity: full their SHA-256 is
 * computed on a second thread, started here, while the caller loads the
 * model: rt_bundle_verified() waits for it, and nothing may be answered
 * before it returned 0 (docs/DESIGN-NOTES.md, "start-up integrity").  A
 * file that differs from the manifest is NX_ECHECK naming it.
 */
int rt_bundle_open(struct rt_bundle *b, const char *dir, bool check, nx_error *err);
/* Wait for the hashes started by rt_bundle_open; 0 when every file matched
 * (or nothing was to hash), else NX_ECHECK naming the first that did not. */
int rt_bundle_verified(struct rt_bundle *b, nx_error *err);
void rt_bundle_release(struct rt_bundle *b);

struct rt_session;
/* verbose: ONNX Runtime's log from INFO up, else ERROR up; either way its
 * lines go through nexus_cli's own logger on stderr, control bytes (colour
 * escapes) removed. */
int rt_session_open(struct rt_session **out, const struct rt_bundle *b, bool verbose,
		    nx_error *err);
void rt_session_free(struct rt_session *s);

/* An initializer of the model replaced by these contents (borrowed; they
 * must outlive the session): data_type is ONNX's (1 float, 10 float16...),
 * which ONNX Runtime's element types number alike. */
struct rt_override {
	const char *name;
	int32_t data_type;
	const int64_t *dims;
	size_t ndims;
	void *data;
	size_t bytes;
};
/* rt_session_open with ov (NULL: none) replacing one initializer;
 * unoptimized: no graph optimization (constant folding would compute
 * from the model's own initializer, not the replacement). */
int rt_session_open_with(struct rt_session **out, const struct rt_bundle *b, bool verbose,
			 const struct rt_override *ov, bool unoptimized, nx_error *err);
/*
 * An unoptimized session in which the n initializers of ov[] (their name,
 * type and shape; data unused) are overridable: ONNX Runtime reads the
 * model as if each were also an input of the main graph (IR version 4 and
 * later: an initializer listed as an input is its default value), so that
 * rt_session_feed can replace any one of them run by run, without a new
 * session.  NX_ECHECK when ONNX Runtime does not offer every one as
 * overridable; the caller then opens a session per replacement.
 */
int rt_session_open_overridable(struct rt_session **out, const struct rt_bundle *b,
				const struct rt_override *ov, size_t n, nx_error *err);
/* Every later rt_session_run of s (from rt_session_open_overridable) takes
 * ov's contents (borrowed: they must outlive the runs) in place of the
 * initializer ov->name; NULL: the model's own again. */
int rt_session_feed(struct rt_session *s, const struct rt_override *ov, nx_error *err);
/* With fn set, rt_session_run of one text (n = 1) hands every output's
 * numbers, in the session's output order, to fn(ctx, v, count) instead of
 * building results (left NULL); fn returns nonzero when out of memory.
 * NULL: results again. */
typedef int (*rt_sink_fn)(void *ctx, const double *v, size_t count);
void rt_session_sink(struct rt_session *s, rt_sink_fn fn, void *ctx);
/* Whether the last rt_session_run failed in ONNX Runtime's Run (the model
 * rejected these inputs) rather than before or after it. */
bool rt_session_run_failed(const struct rt_session *s);

/* Model description for `info`: inputs/outputs with types and shapes. */
json_t *rt_session_describe(const struct rt_session *s);

/*
 * Run one batch: n texts, already tokenized (ids[i] has lens[i] ids, with
 * their token type ids types[i] and attention mask masks[i]; types or masks
 * may be NULL: zeros, ones).  The batch is padded with the tokenizer's pad
 * id and pad type id, attention mask 0, on the side its padding.direction
 * names (right unless Left); a model input position_ids gets each token's
 * position among the unmasked ones (Hugging Face's cumsum(mask) - 1; 1 on
 * padding), so that left padding moves no text's positions.
 * results[i] is set to a new JSON object per input ({"outputs":..., and
 * "label"/"scores" or "embedding"}).
 */
int rt_session_run(struct rt_session *s, const struct rt_bundle *b, int64_t *const *ids,
		   int64_t *const *types, int64_t *const *masks, const size_t *lens, size_t n,
		   json_t **results, nx_error *err);

/* How an output's numbers print: float32 (and float16) in the shortest
 * form that reads back as the same float32, float64 in full, integers as
 * integers. */
enum rt_num { RT_NUM_F32, RT_NUM_F64, RT_NUM_INT };

/* One output tensor as doubles, with its shape (infer.c -> postproc.c). */
struct rt_output {
	double *v;
	size_t count;
	int64_t dims[8];
	size_t nd;
	enum rt_num num;
};

double rt_half_to_double(uint16_t h);
/*
 * The shortest decimal (at most 9 significant digits) that reads back as
 * the float32 f, into buf (at least 24 bytes); returns its length.
 */
size_t rt_f32_shortest(char *buf, size_t size, float f);
/* A JSON array of the numbers; NaN and infinities become null.  With
 * RT_NUM_F32 each number is the double nearest rt_f32_shortest() of it, so
 * that json_dumps with JSON_REAL_PRECISION(9) prints that shortest form. */
json_t *rt_reals(const double *v, size_t n, enum rt_num num);
/* jansson dump flags for results: JSON_REAL_PRECISION(9) unless some
 * output is float64 (17 digits). */
size_t rt_session_json_flags(const struct rt_session *s);
/* Sets "label" and "scores" on res from one row of n scores. */
int rt_classify(json_t *res, const struct rt_settings *set, const double *v, size_t n,
		enum rt_num num, nx_error *err);
/* Sets "embedding" on res from row r of a [B, L, H] (len tokens from
 * position off, after the batch's left padding; the mean is over those
 * whose mask is 1, all when mask is NULL) or [B, H] output. */
int rt_embed(json_t *res, const struct rt_settings *set, const struct rt_output *o, size_t r,
	     size_t off, size_t len, const int64_t *mask, nx_error *err);
/* Sets "score" on res from one row of n numbers: the logit when n is 1,
 * the softmax probability of class 1 when n is 2. */
int rt_rerank(json_t *res, const double *v, size_t n, enum rt_num num, nx_error *err);
/* Where a list of numbers holds a null (a NaN or infinity, see rt_reals):
 * true and its index in *at, false when every entry is a number. */
bool rt_reals_nonfinite(const json_t *a, size_t *at);
/* The result that replaces res when one of its numbers is not finite:
 * {"error": "...", "code": "non-finite-output", "output": NAME, "index": I}
 * (new reference), or NULL when every number of res is finite. */
json_t *rt_nonfinite_result(json_t *res);

/* One input read from --text or a JSONL line. */
struct rt_input {
	char *text;             /* NULL when the line was bad */
	size_t len;
	char *error;            /* why the line was bad */
	char *pair;             /* "text_pair" of a JSONL line, or --pair; NULL if none */
	size_t pair_len;
	json_t *obj;            /* the JSON line, when it was one ({"text"|"prompt", ...}, or
				 * {"messages": [...]} whose list is the text, as JSON) */
};

/* Reads texts: a file of lines (one text or one {"text": ...} per line). */
struct rt_reader;
int rt_reader_open(struct rt_reader **out, const char *path, nx_error *err);
/* 1 = got one, 0 = end, <0 = I/O error */
int rt_reader_next(struct rt_reader *r, struct rt_input *in, nx_error *err);
/* true when the next line has not wholly arrived (a pipe the writer waits
 * on); takes in what has arrived, without blocking */
bool rt_reader_idle(struct rt_reader *r);
/* true unless the input is a regular file (whose lines are all there) */
bool rt_reader_stream(const struct rt_reader *r);
void rt_reader_free(struct rt_reader *r);
void rt_input_release(struct rt_input *in);

/*
 * Tokenize and run texts in batches of at most b->set.batch_size, bucketed
 * by length over a window of inputs (rt_batcher_new); each result goes to
 * `emit` in input order (borrowed: emit takes its own reference if it keeps
 * it), then emit(ctx, NULL) marks the end of a window.  A per-input problem
 * (bad line, tokenizer error, an input the model rejects) becomes
 * {"error": ...} in its place.
 */
typedef int (*rt_emit_fn)(void *ctx, json_t *result);
struct rt_batcher;
/* cap: inputs held before a flush; 0: rt_batcher_window(b).  A batcher of
 * at most batch_size inputs runs each flush as one Run: its caller cut the
 * batch (serve, which plans its whole round with rt_plan_batches). */
int rt_batcher_new(struct rt_batcher **out, struct rt_session *s, struct rt_bundle *b,
		   size_t cap, rt_emit_fn emit, void *ctx, nx_error *err);
/* `run`'s window: the inputs sorted by length at once */
size_t rt_batcher_window(const struct rt_bundle *b);
int rt_batcher_add(struct rt_batcher *q, const struct rt_input *in, nx_error *err);
/* An input already tokenized (serve counts tokens before it batches): n
 * ids, type ids and mask entries (n <= max_sequence_length), copied. */
int rt_batcher_add_encoded(struct rt_batcher *q, const int64_t *ids, const int64_t *types,
			   const int64_t *mask, size_t n, nx_error *err);
int rt_batcher_flush(struct rt_batcher *q, nx_error *err);
void rt_batcher_free(struct rt_batcher *q);
/*
 * Where to cut n texts sorted by length (lens ascending; texts[i] texts
 * of that length, NULL: one each) into batches of at most `batch` texts:
 * the cuts that minimise padded tokens + RT_RUN_COST per Run.  best and
 * from have n + 1 entries; from[i] is where the last batch of the first i
 * starts (read back from from[n]).
 */
void rt_plan_batches(const size_t *lens, const size_t *texts, size_t n, size_t batch,
		     uint64_t *best, size_t *from);

int rt_selftest_check(struct rt_session *s, struct rt_bundle *b, FILE *report, nx_error *err);
/* config/selftest.json, checked ({"schema", "tolerance", "cases"}). */
int rt_selftest_load(json_t **out, struct rt_bundle *b, nx_error *err);
/* liveness.c: see there; NX_ECHECK when an initializer is dead. */
#define RT_LIVE_MIN_BYTES NX_FUNCTIONAL_LIVE_MIN_BYTES
#define RT_LIVE_BUDGET_MS NX_FUNCTIONAL_LIVENESS_MS
int rt_liveness(struct rt_bundle *b, FILE *report, size_t min_bytes, uint64_t budget_ms,
		bool zero_check, bool session_each, nx_error *err);
/* The cores this process may run on (its CPU affinity, within the
 * cgroup's cpu.max quota where one is readable), at most 16: liveness's
 * threads. */
int rt_live_cores(void);
/* long_case: one more case, a text of max_sequence_length tokens; when the
 * model rejects it, NX_ECONFIG naming max_sequence_length and the longest
 * input the model takes. */
int rt_selftest_write(struct rt_session *s, struct rt_bundle *b, char *const *texts,
		      size_t ntexts, bool long_case, const char *out_path, double tolerance,
		      nx_error *err);

struct rt_verb;
struct rt_args;

/* generate.c: one prompt, the decoder loop (task: generation). */
#define RT_GEN_EOS_MAX 64
#define RT_GEN_STOP_MAX 16
struct rt_gen_params {
	size_t max_new_tokens;
	bool do_sample;                 /* false: greedy */
	double temperature;             /* > 0 when sampling */
	size_t top_k;                   /* 0: off */
	double top_p;                   /* 1: off */
	double repetition_penalty;      /* 1: off */
	uint64_t seed;
	int64_t eos[RT_GEN_EOS_MAX];
	size_t neos;
	const char *stop[RT_GEN_STOP_MAX];   /* borrowed */
	size_t nstop;
	bool rendered;                  /* a chat template's output: encoded without the
					 * post-processor's special tokens (the template
					 * wrote them), as transformers does */
};

struct rt_gen_result {
	int64_t *ids;                   /* the new tokens (an EOS included) */
	size_t nids, prompt_tokens;
	char *text;                     /* their text, cut before a stop string */
	size_t len;
	const char *finish;             /* "length", "eos", "stop" */
	double ttft_ms, tokens_per_s;   /* first token; the tokens after it */
	char *error;                    /* this request failed: why; NULL when not */
	const char *code;               /* ... and a short code ("prompt-too-long") */
};

/* Called with each piece of text as it is complete (never a broken UTF-8
 * character); nonzero stops with NX_EIO. */
typedef int (*rt_text_fn)(void *ctx, const char *piece, size_t len);

/*
 * Continue `prompt` by at most p->max_new_tokens tokens (and the context,
 * max_sequence_length, prompt included).  A problem of this request (empty
 * or too long prompt, the model failing on it, a NaN logit) returns 0 with
 * res->error set; a nonzero return is a problem of the runtime (memory,
 * the model's layout, output).  res is released with rt_gen_result_release.
 */
int rt_generate(struct rt_session *s, struct rt_bundle *b, nx_tokdecoder *dec, const char *prompt,
		size_t plen, const struct rt_gen_params *p, rt_text_fn emit, void *ctx,
		struct rt_gen_result *res, nx_error *err);
void rt_gen_result_release(struct rt_gen_result *r);

/* A JSON list of the n integers (main.c); NULL when out of memory. */
json_t *rt_int_list(const int64_t *v, size_t n);

/* One setting by its generation_config.json name (max_new_tokens,
 * temperature, top_k, top_p, repetition_penalty, seed, do_sample) from a
 * number; explicit: a temperature turns sampling on (0: off), as a flag or
 * a request does.  0, or -1 with *why (a static string). */
int rt_gen_set(struct rt_gen_params *p, const char *key, double v, bool explicit_sampling,
	       const char **why);
/* generate_cli.c: the defaults: built in, then config/generation_config.json,
 * then runtime.yaml's generation: (flags and JSONL lines override them). */
int rt_gen_defaults(struct rt_gen_params *p, struct rt_bundle *b, nx_error *err);
/* `nexus_cli generate`, and `run` on a generation bundle */
int rt_cmd_generate(const struct rt_verb *v, int argc, char **argv);
/* The prompts of a (--text/--prompt, --input), generated and printed (JSONL
 * with json); the exit status. */
int rt_gen_main(struct rt_bundle *b, struct rt_session *s, const struct rt_args *a, bool json);
/* Greedy ids of the selftest (RT_SELFTEST_GEN_TOKENS new tokens). */
#define RT_SELFTEST_GEN_TOKENS 8
int rt_gen_selftest_ids(json_t **out, struct rt_session *s, struct rt_bundle *b, const char *text,
			size_t len, nx_error *err);

/* Verbs and their options (opts.c, main.c). */
enum {
	RT_OPT_BUNDLE = 1, RT_OPT_JSON, RT_OPT_TEXT, RT_OPT_INPUT, RT_OPT_WRITE, RT_OPT_OUTPUT,
	RT_OPT_TOL, RT_OPT_TOKDIR, RT_OPT_MAXLEN, RT_OPT_VERBOSE, RT_OPT_RAW, RT_OPT_LONG,
	RT_OPT_MINBYTES, RT_OPT_BUDGET, RT_OPT_SKIP_SPECIAL, RT_OPT_PAIR,
	RT_OPT_LISTEN, RT_OPT_READY, RT_OPT_PORT, RT_OPT_QUEUE, RT_OPT_MAXBATCH, RT_OPT_MAXWAIT,
	RT_OPT_MAXBODY, RT_OPT_TIMEOUT, RT_OPT_MAXCONN, RT_OPT_UNIX, RT_OPT_LISTENFD,
	RT_OPT_STOP_EOF, RT_OPT_NOGENPROMPT, RT_OPT_ZERO, RT_OPT_EACH,
	RT_OPT_GEN_MAXNEW, RT_OPT_GEN_TEMP, RT_OPT_GEN_TOPK, RT_OPT_GEN_TOPP, RT_OPT_GEN_REP,
	RT_OPT_GEN_SEED, RT_OPT_GEN_STOP, RT_OPT_GEN_SAMPLE, RT_OPT_GEN_GREEDY, RT_OPT_THREADS,
	RT_OPT_GEN_CHAT
};

struct rt_opt {
	const char *name, *arg, *help;
	int key;
};

struct rt_verb {
	const char *name, *summary, *details;
	const struct rt_opt *opts;
	int (*fn)(const struct rt_verb *v, int argc, char **argv);
	bool hidden;
};

#define RT_OPT_BUNDLE_ENTRY \
	{ "bundle", "DIR", "the bundle root (default: the directory above bin/)", RT_OPT_BUNDLE }, \
	{ "verbose", NULL, "also print ONNX Runtime's informational log lines", RT_OPT_VERBOSE }

/* Parsed options of one invocation; --text may repeat. */
struct rt_args {
	const char *bundle, *input, *output, *tokdir;
	char **texts;
	size_t ntexts;
	char **pairs;           /* --pair values, the i-th going with the i-th --text */
	size_t npairs;
	bool json, write, raw, long_case;
	bool skip_special;      /* detokenize --skip-special-tokens */
	bool zero_check;        /* liveness --zero-check */
	bool session_each;      /* liveness --session-each */
	bool verbose;           /* ONNX Runtime logs from INFO instead of ERROR */
	bool no_gen_prompt;     /* chat: add_generation_prompt false */
	bool chat;              /* generate --chat: prompts are messages */
	double tol;
	long maxlen;
	uint64_t min_bytes, budget_ms;   /* liveness */
	/* serve */
	const char *listen, *ready_file;
	const char *unix_path;  /* --unix: listen there instead of TCP */
	long listen_fd;         /* --listen-fd: an inherited listening socket; -1 none */
	bool stop_on_eof;       /* --stop-on-eof: stdin's end stops as SIGTERM does */
	long port, queue, max_batch, max_wait, max_body, timeout, max_conn;
	/* generate: the values as given, checked by generate_cli.c */
	const char *gen[RT_OPT_GEN_SEED - RT_OPT_GEN_MAXNEW + 1];
	const char **stops;
	size_t nstops;
	int sample;             /* --do-sample 1, --greedy 0, neither -1 */
	long threads;           /* --threads, -1: runtime.yaml's */
};

void rt_help(const struct rt_verb *v, FILE *f);
/* Open the bundle (check: against its manifest) and, when s is not NULL,
 * its session, and wait for the integrity check; on failure prints
 * "nexus_cli VERB: error: ..." and returns the exit status. */
int rt_start(struct rt_bundle *b, struct rt_session **s, const char *verb,
	     const struct rt_args *a, bool check);
/* Print err as "nexus_cli VERB: error: ..."; returns its exit status. */
int rt_fail(const char *verb, const nx_error *err);
/* Print "nexus_cli VERB: message" and a hint; returns 2. */
int rt_usage(const struct rt_verb *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 0 parsed, -1 --help printed (exit 0), 2 usage error printed; in every
 * case the caller frees a->texts and a->pairs (the values, not copied). */
int rt_parse(struct rt_args *a, const struct rt_verb *v, int argc, char **argv);
/* `nexus_cli chat` (chat.c) */
int rt_cmd_chat(const struct rt_verb *v, int argc, char **argv);
/* The chat template of the bundle's tokenizer_config.json (checked with the
 * bundle); *out NULL when there is none and !required, else NX_ECONFIG. */
struct nx_chat_template;
int rt_chat_load(struct nx_chat_template **out, struct rt_bundle *b, bool required,
		 nx_error *err);

#endif
