/*
 * nexus/config.h - the two configuration files: a workspace's nexus.yaml
 * (nexus.yaml(5)) and the bundle's config/runtime.yaml (read by nexus_cli).
 *
 * Both are parsed strictly (nexus/yaml.h) and then typed strictly:
 *  - unknown keys are errors naming the key and listing the valid ones, so a
 *    typo never silently disables a check;
 *  - booleans are plain `true`/`false`; integers are plain decimal (no
 *    quotes, no leading zeros, no 0x/0o); a quoted "2" is not an integer;
 *  - a string value that YAML 1.1 would read as something else (null, ~,
 *    yes/no/on/off, true/false, numbers) must be quoted, because the bundle's
 *    Python sources may read the same file with another YAML library;
 *  - a list is a YAML sequence, never a single scalar;
 *  - every path is relative, non-empty, `/`-separated, with no `.`, `..` or
 *    empty component and no backslash or control character.
 *
 * Errors: NX_ECONFIG with err->path = the `path` given and err->line = the
 * 1-based line of the offending node (of the enclosing mapping for a
 * missing key); NX_EFORMAT/NX_ELIMIT from the YAML layer; NX_ENOMEM; the
 * _load functions also NX_EIO (cannot read) and NX_EUNSAFE (symlink,
 * not a regular file).  *out is written only on success.
 */
#ifndef NEXUS_CONFIG_H
#define NEXUS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_CONFIG_PATH_MAX 4095      /* bytes of one configured path */
#define NX_CONFIG_BUNDLE_ID_MAX 255  /* bytes of bundle_id (a file name) */
#define NX_CONFIG_DEFAULT_MAX_MODEL_BYTES (2ULL << 30)

/*
 * The inputs the runtime feeds a model, by role: token ids, attention mask,
 * token type ids, position ids (0, 1, ... per text).  A model's input is
 * matched by its name: by default input_ids, attention_mask,
 * token_type_ids, position_ids; an `inputs:` mapping {ids, mask, type_ids,
 * positions} names them otherwise (nexus.yaml student.inputs, copied into
 * the bundle's runtime.yaml).
 */
enum nx_input_role { NX_INPUT_IDS, NX_INPUT_MASK, NX_INPUT_TYPE_IDS, NX_INPUT_POSITIONS,
		     NX_INPUT_ROLES };
extern const char *const nx_input_role_keys[NX_INPUT_ROLES];     /* "ids", "mask", ... */
extern const char *const nx_input_default_names[NX_INPUT_ROLES]; /* "input_ids", ... */

struct nx_student {
	char *model;     /* path of the student ONNX model */
	char *inputs[NX_INPUT_ROLES]; /* student.inputs: input name per role, NULL = default */
	char **outputs;  /* graph outputs to keep; none = all graph outputs */
	size_t noutputs;
};

struct nx_shared_tensor {
	char *name;   /* student initializer allowed to equal a teacher tensor */
	char *reason; /* why; non-empty */
};

typedef struct nx_workspace {
	char *bundle_id;            /* default "nexus_bundle_v1"; [A-Za-z0-9._-]+, not "." or ".." */
	char *architecture;         /* default "student" */
	struct nx_student student;  /* required; outputs default empty = all graph outputs */
	char **teacher; size_t nteacher;          /* default none */
	char *tokenizer;            /* required: directory, stored without trailing '/' */
	char *runtime_config;       /* required */
	char *source_dir; char **source_files; size_t nsource_files; /* required: source {dir, files} */
	char **follow_roots; size_t nfollow_roots; /* source.follow_links_within: directories
						      links may resolve into ("~" = $HOME) */
	char **forbidden_imports; size_t nforbidden_imports; /* default [teacher_model, training_modules] */
	char **forbidden_terms; size_t nforbidden_terms;     /* configured extras only; default [] */
	char **metadata_keep; size_t nmetadata_keep;         /* default [] */
	struct nx_shared_tensor *allow_shared; size_t nallow_shared; /* allow_shared_tensors: [{name, reason}] */
	uint64_t max_model_bytes;   /* limits.max_model_bytes, default 2 GiB */
	double size_slack;          /* limits.size_slack, 0..1, default 0.05 */
	uint64_t max_leak_bytes;    /* limits.max_leak_bytes, 0 = the default 64 KiB (nexus/budget.h) */
	uint64_t sandbox_memory;    /* limits.sandbox_memory (RLIMIT_AS), 0 = scaled */
	char **selftest; size_t nselftest;                   /* default [] */
	char *readme;               /* default "README.md" */
	char *license;              /* default "LICENSE" */
	bool readme_given, license_given; /* the keys were in nexus.yaml: then the file
					     must exist; by default an absent README is
					     generated and an absent LICENSE left out */
	bool export_extract;        /* export.extract, default true */
	bool export_strip_metadata; /* export.strip_metadata, default true */
	int export_external;        /* export.external_data: enum nx_export_external, default auto */
	int export_quantize;        /* export.quantize: enum nx_export_quantize, default none */
	char **quantize_exclude; size_t nquantize_exclude; /* export.quantize_exclude (fnmatch patterns) */
	uint64_t quantize_min_elements; /* export.quantize_min_elements, default NX_QUANT_MIN_ELEMENTS */
	double quantize_tolerance;  /* export.quantize_tolerance, 0..1, default NX_QUANT_TOLERANCE */
	unsigned quantize_block;    /* export.quantize_block (int4): 32, 64, 128; 0 = default 32 */
} nx_workspace;

/*
 * Parse nexus.yaml text buf[0..len) (borrowed, need not be NUL-terminated).
 * path is used only in errors.  On success *out owns a new workspace; free
 * it with nx_workspace_free().  source_dir, like tokenizer, is stored
 * without a trailing '/'; source_files are relative to source_dir and
 * unique.  forbidden_imports entries are dotted Python module names.
 */
int nx_workspace_parse(nx_workspace **out, const char *buf, size_t len,
		       const char *path, nx_error *err);

/* Read <dirfd>/<name> (O_NOFOLLOW, regular file, at most
 * NX_YAML_INPUT_MAX bytes) and parse it; errors name `name`. */
int nx_workspace_load(nx_workspace **out, int dirfd, const char *name,
		      nx_error *err);

/* Free a workspace. Accepts NULL. */
void nx_workspace_free(nx_workspace *ws);

enum nx_task { NX_TASK_CLASSIFICATION, NX_TASK_EMBEDDING, NX_TASK_RAW, NX_TASK_RERANK,
	       NX_TASK_GENERATION };
enum nx_pooling { NX_POOL_MEAN, NX_POOL_CLS, NX_POOL_LAST };
enum nx_integrity { NX_INTEGRITY_FULL, NX_INTEGRITY_SIZE };

typedef struct nx_runtime_config {
	enum nx_task task;          /* required: classification | embedding | raw | rerank | generation */
	char **labels; size_t nlabels;   /* classification: required, non-empty, unique */
	bool scores_map;            /* classification: scores as {label: score}; default false (list) */
	enum nx_pooling pooling;    /* embedding: mean | cls | last, default mean */
	bool normalize;             /* embedding: default true */
	int output_dims;            /* embedding: keep the first N dims (Matryoshka); 0 = all */
	int max_sequence_length;    /* default 128, 1..8192 */
	int batch_size;             /* default 8, 1..1024 */
	int threads;                /* default 1, 0..256 (0 = ONNX Runtime default) */
	enum nx_integrity integrity;/* default full */
	char *graph_optimization;   /* "disable" | "basic" | "extended" | "all", default "all" */
	char *output;               /* NULL = decode the model's first output */
	char **python_packages; size_t npython_packages; /* default []; dotted module names */
	char *inputs[NX_INPUT_ROLES]; /* inputs: the model's input name per role; NULL =
					 nx_input_default_names */
	/* generation: runtime.yaml's `generation:` mapping, the defaults of
	 * `nexus_cli generate` (its flags override them; what is unset here
	 * comes from config/generation_config.json, then built-in defaults).
	 * Unset: -1, or NAN for the reals. */
	struct nx_generation_defaults {
		int max_new_tokens;         /* 1..NX_GEN_NEW_TOKENS_MAX */
		int do_sample;              /* 0 greedy, 1 sample */
		double temperature;         /* 0..100 (0 = greedy) */
		int top_k;                  /* 0 = off */
		double top_p;               /* 0..1, 1 = off */
		double repetition_penalty;  /* 0.01..100, 1 = off */
		long long seed;             /* 0..2^53 */
		int64_t *eos_token_id; size_t neos_token_id; /* an id or a list; none: unset */
		char **stop; size_t nstop;  /* stop strings, default none */
	} gen;
} nx_runtime_config;

#define NX_GEN_NEW_TOKENS_MAX 65536   /* max_new_tokens cap (runtime.yaml, flags) */

/*
 * Parse runtime.yaml text.  labels are allowed only with task
 * classification, pooling and normalize only with task embedding.
 * Ownership and errors as nx_workspace_parse().
 */
int nx_runtime_config_parse(nx_runtime_config **out, const char *buf,
			    size_t len, const char *path, nx_error *err);
int nx_runtime_config_load(nx_runtime_config **out, int dirfd,
			   const char *name, nx_error *err);
void nx_runtime_config_free(nx_runtime_config *rc);

/*
 * Parse a size: decimal digits with an optional fraction, at most one space,
 * and an optional unit B, KB/MB/GB/TB (1000^n) or KiB/MiB/GiB/TiB (1024^n),
 * e.g. "2GiB", "500 MB", "1.5GB", "1234".  The result must be a whole number
 * of bytes.  NX_ECONFIG on anything else or on overflow (err->path unset).
 */
int nx_parse_size(uint64_t *out, const char *s, nx_error *err);

/* True if p is a valid workspace-relative path by the rules above
 * (no trailing '/'). */
bool nx_config_path_ok(const char *p);

/* True if s is a dotted Python module name ("numpy", "a.b_c"). */
bool nx_config_module_ok(const char *s);

#ifdef __cplusplus
}
#endif
#endif
