/*
 * nexus/build.h - workspace -> bundle (docs/INTERNALS.md, docs/man/nexus-build.1).
 *
 * nx_build() is strictly subtractive: it copies only what nexus.yaml names,
 * each input opened beneath the workspace without following links, into a
 * sibling staging directory, and publishes it with one atomic rename.
 *
 *   load     nexus.yaml; every input opened (regular, unlinked, not a
 *            teacher file) before anything is written
 *   stage    nx_stage_create() beside the output path
 *   export   the student ONNX validated and copied to model/student_model.onnx
 *   filter   each source through nx_pyfilter_run() into src/
 *   assemble tokenizer, config/runtime.yaml, README.md, LICENSE, bin/, lib/
 *   manifest every file's SHA-256 (hashed while copied, never re-read),
 *            metadata from the student's own weights
 *   sign     invariants set, signed when a key is given, manifest.json written
 *   verify   the stage is sealed (final modes) and nx_verify_bundle() runs
 *            every TRV check on it, exactly as `nexus verify` would on the
 *            published bundle; any FAIL and nothing is published, so the
 *            invariants written true are true of every published bundle
 *   publish  fsync, renameat2(RENAME_NOREPLACE)
 *
 * The library never prints: progress goes to the callback.  On error the
 * staging directory is removed and nothing exists at the output path that
 * did not exist before.
 */
#ifndef NEXUS_BUILD_H
#define NEXUS_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nx_report;
struct nx_export_result;

#include "nexus/error.h"
#include "nexus/sandbox.h"
#include "nexus/fs.h"

#ifdef __cplusplus
extern "C" {
#endif

struct nx_manifest;
struct nx_key;

#define NX_BUILD_SOURCE_MAX (16u << 20)   /* bytes of one Python/config/text input */
#define NX_BUILD_RUNTIME_MAX (1ull << 30) /* bytes of bin/nexus_cli or the ORT library */

enum nx_build_step {
	NX_BUILD_LOAD, NX_BUILD_STAGE, NX_BUILD_EXPORT, NX_BUILD_FILTER,
	NX_BUILD_ASSEMBLE, NX_BUILD_MANIFEST, NX_BUILD_SIGN, NX_BUILD_VERIFY, NX_BUILD_PUBLISH,
	NX_BUILD_NSTEPS
};

/* "load", "stage", ... Never NULL. */
const char *nx_build_step_name(enum nx_build_step step);

/* Called at the start (done=false, seconds=0) and end of every step. */
typedef void (*nx_build_progress_fn)(void *ctx, enum nx_build_step step, bool done,
				     double seconds);

/*
 * Told the active stage right after it is created, and NULL before it is
 * freed, so that a program can remove it from a signal handler with
 * nx_stage_remove_signal_safe().
 */
typedef void (*nx_build_stage_fn)(void *ctx, nx_stage *active);

struct nx_build_opts {
	const char *workspace;      /* directory holding nexus.yaml; NULL = "." */
	const char *config;         /* the workspace file's name in it; NULL = "nexus.yaml" */
	const char *output;         /* bundle path; NULL = "<bundle_id>" in the cwd */
	bool force;                 /* replace an existing output atomically */
	const struct nx_key *key;   /* private key to sign with, or NULL (unsigned) */
	const char *runtime_dir;    /* trusted dir with bin/nexus_cli, lib/libonnxruntime.so.1 */
	int64_t source_date_epoch;  /* build_timestamp; -1 = now */
	nx_build_progress_fn progress;
	void *progress_ctx;
	bool functional;            /* run TRV-5 (sandboxed selftest) in the self-check */
	enum nx_sandbox_backend sandbox;  /* NX_SANDBOX_AUTO: the first that runs */
	uint64_t sandbox_memory;    /* RLIMIT_AS; 0 = limits.sandbox_memory, else scaled */
	struct nx_report **report;  /* optional out: the self-verification report, set
				       whenever the verify step ran (also when it failed
				       with NX_ECHECK); the caller frees it with
				       nx_report_free() */
	nx_build_stage_fn on_stage;
	void *stage_ctx;
	bool no_fsync;              /* publish without fsync (nx_stage_set_nosync) */
	bool strict;                /* self-verify as `nexus verify --strict` does (e.g. no
				       teacher: is FAIL no-teacher-fingerprint) */
	/* a tokenizer.json or vocab.txt (the teacher's or the base model's): the
	 * self-verification charges the vocabulary against it (nexus verify
	 * --vocab-reference) and the policy records its SHA-256; NULL = none */
	const char *vocab_reference;
};

struct nx_build_file {
	char *path;     /* bundle-relative */
	uint64_t size;
};

struct nx_build_removed {
	char *file;     /* bundle-relative, e.g. "src/inference.py" */
	long line;
	char *module;
	char *statement_kind;
};

/* A dead parameter the build stored as zeros (build_dead.c, docs/TRV.md). */
struct nx_build_zeroed {
	char *name;          /* the initializer */
	uint64_t bytes;
	double change;       /* relative change of the outputs under noise (< 1e-6) */
	double zero_change;  /* ... when zeros, on the selftest texts and random ids */
};

struct nx_build_result {
	char *bundle_path;
	char *bundle_id;
	char *architecture;
	char *parameters;          /* human form, "4.4M" */
	uint64_t parameter_count;  /* exact */
	char *quantization;
	char *build_timestamp;
	bool is_signed;
	char key_id[17];           /* "" when unsigned */
	struct nx_build_file *files;  /* every file, manifest.json included, sorted */
	size_t nfiles;
	uint64_t bytes;            /* sum of file sizes */
	double step_seconds[NX_BUILD_NSTEPS];
	struct nx_build_removed *removed;
	size_t nremoved;
	struct nx_export_result *exported; /* what the export step removed from the
					    student (nexus/export.h) */
	/* export.quantize's accuracy gate: the selftest inputs through the float
	 * and the quantized student (quant_cases 0: no gate ran) */
	size_t quant_cases, quant_agree;   /* inputs; of those, labels equal */
	double quant_min_cosine;           /* lowest cosine of an input's outputs */
	struct nx_build_zeroed *zeroed;  /* dead bias vectors stored as zeros */
	size_t nzeroed;
	char **warnings;           /* WARN lines for the user (e.g. the tokenizer's
				      truncation and runtime.yaml disagree) */
	size_t nwarnings;
};

/*
 * Build the bundle.  *out (a new result the caller frees) is written only
 * on success.  Errors: NX_ECONFIG (nexus.yaml, runtime.yaml, a packaged path
 * that is a teacher path), NX_EEXIST (output exists without force),
 * NX_EUNSAFE (symlink, hard link, special file, escaping path), NX_EFORMAT
 * (student not ONNX, with err->offset), NX_ECHECK (a forbidden import still
 * used, with err->path/line; or self-verification failed), NX_EIO, NX_ELIMIT,
 * NX_ENOMEM, NX_EDEP (runtime files missing from runtime_dir).
 */
int nx_build(struct nx_build_result **out, const struct nx_build_opts *opts, nx_error *err);

/* Free a result.  Accepts NULL. */
void nx_build_result_free(struct nx_build_result *r);

#ifdef __cplusplus
}
#endif
#endif
