/*
 * build_int.h - state shared by the build steps (build*.c); not public.
 *
 * A byte of the model goes: workspace fd (opened in build.c, load step) ->
 * build_export.c (validated by nx_onnx_open, copied and hashed in one read
 * by nx_copy_hash into the stage) -> its digest into the manifest
 * (build_manifest.c) -> published by nx_stage_publish (stage.c).
 */
#ifndef NEXUS_BUILD_INT_H
#define NEXUS_BUILD_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "nexus/build.h"
#include "nexus/bundle.h"
#include "nexus/export.h"
#include "nexus/sandbox.h"
#include "nexus/config.h"
#include "nexus/fs.h"
#include "nexus/hash.h"
#include "nexus/manifest.h"
#include "nexus/onnx.h"
#include "util/array_int.h"

#define BUILD_WRITEBACK_MAX 2  /* the exported model and its external data */
/* The tolerance config/selftest.json records; the manifest's policy too. */
#define BUILD_CHAT_CONFIG_MAX (4u << 20) /* bytes of tokenizer_config.json */
#define BUILD_SELFTEST_TOLERANCE 1e-4
#define BUILD_SELFTEST_TOLERANCE_ARG "0.0001"

enum build_kind {
	BUILD_COPY,     /* copied byte for byte from fd */
	BUILD_PYTHON,   /* read into buf, filtered, written */
	BUILD_RUNTIME,  /* runtime.yaml: read into buf, validated, written */
	BUILD_TEXT,     /* README/LICENSE/other sources: read into buf, written */
};

/* One file that goes into the bundle, opened during the load step. */
struct build_input {
	char *src;           /* workspace-relative (or runtime_dir-relative) path */
	char *dst;           /* bundle-relative path */
	enum build_kind kind;
	bool exec;
	int fd;              /* BUILD_COPY: open until copied */
	struct stat st;
	char *buf;           /* other kinds */
	size_t len;
};

struct build {
	const struct nx_build_opts *opts;
	nx_error *err;
	int wsfd, rtfd;
	nx_workspace *ws;
	nx_runtime_config *rtcfg;   /* config/runtime.yaml, parsed by the assemble step */
	nx_stage *stage;
	nx_manifest *m;
	struct nx_build_result *res;
	nx_onnx_model *model;
	int student_fd;
	struct stat student_st;
	struct stat *teacher_st;  /* identities of the teacher files that exist */
	size_t nteacher_st;
	struct build_input *in;
	size_t nin, capin;
	pthread_t wb[BUILD_WRITEBACK_MAX]; /* early fdatasync of the exported model */
	int nwb;
	nx_hash_follow *data_hash;  /* the weights file's digest, still being computed */
	uint64_t data_size;
	char *model_name, *data_name; /* the exported files' bundle paths, for errors */
	bool float_staged;  /* export.quantize: the float export is in BUILD_FLOAT_DIR */
};

#define BUILD_FLOAT_DIR "model/.float"
#define BUILD_FLOAT_MODEL BUILD_FLOAT_DIR "/student_model.onnx"
#define BUILD_STUDENT_DST NX_MODEL_PATH
#define BUILD_STUDENT_DATA NX_BUNDLE_MODEL_DATA

/* build_ctx.c: "<bundle path>/<relpath>", a new string (NULL: out of memory): how errors
 * name a bundle file the build is writing (the stage is a hidden name). */
char *nx_build__bundle_file(const struct build *b, const char *relpath);

/* Wait for the weights file's digest (nx_build__export deferred it) and list the
 * file in the manifest.  No-op without a data file. */
int nx_build__export_join(struct build *b);
/* Wait for the export's write-back threads (build_export.c). */
void nx_build__writeback_join(struct build *b);

/* The export options nexus.yaml gives (no quantization), with the data
 * file's digest and opener. */
void nx_build__export_opts(const struct build *b, struct nx_export_opts *o,
		       enum nx_export_data_digest digest, nx_export_ext_open_fn ext);

/* Steps (each returns 0 or an NX_E* code with b->err filled). */
int nx_build__export(struct build *b);
int nx_build__filter(struct build *b);
int nx_build__assemble(struct build *b);
int nx_build__manifest(struct build *b);
int nx_build__sign(struct build *b);
/* Run bin/nexus_cli selftest --write on the stage in the sandbox; *r holds
 * the golden JSON it printed (release it also on error). */
int nx_build__selftest_run(struct build *b, struct nx_sandbox_result *r);
/* build_quant.c: export.quantize's accuracy gate.  The float export beside
 * the quantized one (in BUILD_FLOAT_DIR), and the comparison of the two
 * models' selftest outputs (golden: the quantized model's). */
int nx_build__quant_export_float(struct build *b);
int nx_build__quant_gate(struct build *b, const char *golden, size_t len);
/* Append every number under v (depth first) to (*a)[*n], growing *cap; -1: out of memory. */
int nx_build__flatten(json_t *v, double **a, size_t *n, size_t *cap);
int nx_build__verify(struct build *b);
/* build_dead.c: dead bias vectors stored as zeros, config/selftest.json
 * (golden, written) recomputed when any was. */
int nx_build__zero_dead(struct build *b, const char *golden, size_t len);
/* Sandbox options for running the staged bin/nexus_cli (build_selftest.c). */
int nx_build__sandbox_opts(struct build *b, struct nx_sandbox_opts *so, uint64_t wall_ms);

/* build_ctx.c: write buf to relpath in the stage, hash it, add it to the manifest. */
int nx_build__put(struct build *b, const char *relpath, const void *buf, size_t len, bool exec);
/* Write buf over the staged file relpath (already listed), hash it, update its entry. */
int nx_build__replace(struct build *b, const char *relpath, const void *buf, size_t len);
/* Copy size bytes of src_fd to relpath in the stage, hashing while copying. */
int nx_build__copy(struct build *b, const char *relpath, int src_fd, uint64_t size,
	       const char *src_name, bool exec);
/* Record one import removed by the filter. */
int nx_build__removed_add(struct build *b, const char *file, long line, const char *module,
		      const char *kind);

#endif
