/*
 * rt.h - the pieces of bin/nexus_cli, the bundle's own runtime:
 *   main.c     verbs, options, exit codes
 *   bundle.c   finding the bundle, start-up integrity against manifest.json,
 *              runtime.yaml and the tokenizer
 *   infer.c    one ONNX Runtime session, batching, pooling, softmax
 *   input.c    reading texts (--text, JSONL files) and writing results
 *   selftest.c config/selftest.json: compare and --write
 * Only src/runtime/ includes this.  It uses libnexus through include/nexus/.
 */
#ifndef NEXUS_RT_H
#define NEXUS_RT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nexus/config.h"
#include "nexus/error.h"
#include "nexus/manifest.h"
#include "nexus/tokenizer.h"

#define RT_LINE_MAX (4u << 20)       /* bytes of one input line */
#define RT_BATCH_MAX 4096            /* batch_size cap */
#define RT_SEQ_MAX 65536             /* max_sequence_length cap */
#define RT_OUTPUTS_MAX 64            /* model inputs/outputs handled */

#define RT_MODEL "model/student_model.onnx"
#define RT_TOKENIZER "model/tokenizer"
#define RT_CONFIG "config/runtime.yaml"
#define RT_SELFTEST "config/selftest.json"

enum rt_task { RT_TASK_CLASSIFICATION, RT_TASK_EMBEDDING, RT_TASK_RAW };

/* What the runtime needs from config/runtime.yaml. */
struct rt_settings {
	enum rt_task task;
	char **labels;
	size_t nlabels;
	bool pool_cls;          /* embedding: CLS instead of mean pooling */
	bool normalize;         /* embedding: L2 */
	size_t max_len;
	size_t batch_size;
	int threads;            /* 0 = ONNX Runtime's default */
	bool integrity_full;    /* hash every file vs. sizes only */
	int graph_opt;          /* GraphOptimizationLevel */
	char *output;           /* NULL = first output */
};

struct rt_bundle {
	char root[4096];
	int rootfd;
	struct rt_settings set; /* borrows from rc */
	nx_runtime_config *rc;
	nx_tokenizer *tok;
	nx_manifest *manifest;  /* NULL when opened without the check */
	int model_fd;           /* model/student_model.onnx, checked */
	uint64_t model_size;
};

/*
 * Open the bundle at `dir` (NULL: <dir of /proc/self/exe>/..), check every
 * manifest file (sizes, and SHA-256 too when integrity is full) unless
 * `check` is false, then read runtime.yaml and the tokenizer.  A file that
 * differs from the manifest is NX_ECHECK naming it.
 */
int rt_bundle_open(struct rt_bundle *b, const char *dir, bool check, nx_error *err);
void rt_bundle_release(struct rt_bundle *b);

struct rt_session;
int rt_session_open(struct rt_session **out, const struct rt_bundle *b, nx_error *err);
void rt_session_free(struct rt_session *s);

/* Model description for `info`: inputs/outputs with types and shapes. */
json_t *rt_session_describe(const struct rt_session *s);

/*
 * Run one batch: n texts, already tokenized (ids[i] has lens[i] ids).
 * results[i] is set to a new JSON object per input ({"outputs":..., and
 * "label"/"scores" or "embedding"}).
 */
int rt_session_run(struct rt_session *s, const struct rt_bundle *b, int64_t *const *ids,
		   const size_t *lens, size_t n, json_t **results, nx_error *err);

/* One input read from --text or a JSONL line. */
struct rt_input {
	char *text;             /* NULL when the line was bad */
	size_t len;
	char *error;            /* why the line was bad */
};

/* Reads texts: a file of lines (one text or one {"text": ...} per line). */
struct rt_reader;
int rt_reader_open(struct rt_reader **out, const char *path, nx_error *err);
/* 1 = got one, 0 = end, <0 = I/O error */
int rt_reader_next(struct rt_reader *r, struct rt_input *in, nx_error *err);
void rt_reader_free(struct rt_reader *r);
void rt_input_release(struct rt_input *in);

/*
 * Tokenize and run texts in batches of b->set.batch_size; each result goes
 * to `emit` in input order (borrowed: emit takes its own reference if it
 * keeps it), then emit(ctx, NULL) marks the end of a batch.  A per-input
 * problem becomes {"error": ...}.
 */
typedef int (*rt_emit_fn)(void *ctx, json_t *result);
struct rt_batcher;
int rt_batcher_new(struct rt_batcher **out, struct rt_session *s, struct rt_bundle *b,
		   rt_emit_fn emit, void *ctx, nx_error *err);
int rt_batcher_add(struct rt_batcher *q, const struct rt_input *in, nx_error *err);
int rt_batcher_flush(struct rt_batcher *q, nx_error *err);
void rt_batcher_free(struct rt_batcher *q);

int rt_selftest_check(struct rt_session *s, struct rt_bundle *b, FILE *report, nx_error *err);
int rt_selftest_write(struct rt_session *s, struct rt_bundle *b, char *const *texts,
		      size_t ntexts, const char *out_path, double tolerance, nx_error *err);

#endif
