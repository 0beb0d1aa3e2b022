/*
 * nexus/manifest.h - the bundle manifest (docs/FORMAT.md): an
 * in-memory form, its one canonical serialization, the bytes a signature
 * covers, and a strict parser.  docs/FORMAT.md is the normative description
 * with test vectors.
 *
 * Canonical form: jansson json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS)
 * followed by "\n".  Strings are raw UTF-8 (no \u escapes for non-ASCII)
 * and may not hold control characters, so the form equals Python's
 * json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n".
 */
#ifndef NEXUS_MANIFEST_H
#define NEXUS_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/bundle.h"
#include "nexus/error.h"
#include "nexus/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * schema_version: "1.0" is docs/FORMAT.md §1 exactly (no "policy", no "runtime");
 * "1.1" adds both, and both are then required.  Readers accept the two and
 * nothing else; writers write "1.1" whenever they record a policy.
 */
#define NX_MANIFEST_SCHEMA "1.0"
#define NX_MANIFEST_SCHEMA_1_1 "1.1"
/* "1.2" is "1.1" plus files[].mode ("0444" or "0555"), required on every file. */
#define NX_MANIFEST_SCHEMA_1_2 "1.2"
/* "1.3" is "1.2" plus "platform" (os, arch, min_glibc), required. */
#define NX_MANIFEST_SCHEMA_1_3 "1.3"
#define NX_PLATFORM_STRING_MAX 32          /* bytes of each platform value */
#define NX_MANIFEST_SIGNED_PREFIX "nexus-manifest-v1\n"
#define NX_MANIFEST_MAX (16u << 20)        /* bytes of manifest.json */
#define NX_MANIFEST_FILES_MAX 65536        /* entries of "files" */
#define NX_MANIFEST_PATH_MAX 1024          /* bytes of one path */
#define NX_MANIFEST_COMPONENT_MAX 255      /* bytes of one path component */
#define NX_MANIFEST_STRING_MAX 4096        /* bytes of any other string value */
#define NX_MANIFEST_LIST_MAX 1024          /* entries of each list in "policy" */
#define NX_MANIFEST_RUNTIME_FILES_MAX 64   /* entries of "runtime.files" */

struct nx_manifest_file {
	char *path;
	unsigned char sha256[NX_SHA256_LEN];
	uint64_t size;
	unsigned mode;  /* 0444 or 0555 (schema 1.2); 0 when not recorded (1.0, 1.1) */
};

struct nx_manifest_shared {
	char *name;    /* student tensor allowed to equal a teacher tensor */
	char *reason;  /* why, as nexus.yaml gives it */
};

/*
 * "policy" (schema 1.1): what the build enforced, so that `nexus verify`
 * enforces the same (docs/FORMAT.md §1.1).  Numbers that are not whole are
 * serialized as strings ("%.9g") so the canonical form stays one fixed
 * spelling in C and Python alike.
 */
typedef struct nx_manifest_policy {
	char *nexus_version;          /* of the nexus that built and checked */
	uint64_t max_model_bytes;     /* limits.max_model_bytes */
	uint64_t max_leak_bytes;      /* the leak budget enforced, limits.max_leak_bytes or
					 NX_BUDGET_DEFAULT (nexus/budget.h) */
	double size_slack;            /* limits.size_slack, 0..1 */
	double selftest_tolerance;    /* config/selftest.json's tolerance, 0..0.01 */
	char **forbidden_terms; size_t nforbidden_terms;   /* configured extras */
	char **forbidden_imports; size_t nforbidden_imports;
	char **python_packages; size_t npython_packages;   /* runtime.yaml's */
	struct nx_manifest_shared *allow_shared; size_t nallow_shared;
	uint64_t teacher_files;       /* teacher files fingerprinted; 0 = none */
	/* lower-case hex SHA-256 of the --vocab-reference the build charged the
	 * vocabulary against (optional key "vocab_reference_sha256"); NULL = none */
	char *vocab_reference_sha256;
} nx_manifest_policy;

/* "runtime" (schema 1.1): the nexus runtime packaged in bin/ and lib/. */
struct nx_manifest_runtime_file {
	char *path;                   /* "bin/nexus_cli" or "lib/<name>" */
	unsigned char sha256[NX_SHA256_LEN];
};

typedef struct nx_manifest_runtime {
	char *version;                /* nexus version of the runtime */
	struct nx_manifest_runtime_file *files; /* sorted by path; each also in files[] */
	size_t nfiles;
} nx_manifest_runtime;

/*
 * "platform" (schema 1.3): the hosts the packaged runtime loads on, read from
 * its ELF files at build (nx_build: the machine of bin/nexus_cli, the
 * highest GLIBC_x.y version any of bin/ and lib/ needs).  os is "linux";
 * arch the kernel's name for the machine (uname -m: "x86_64", "aarch64");
 * min_glibc "MAJOR.MINOR" (or with a third number).  nexus verify
 * recomputes it from the bundle.
 */
typedef struct nx_manifest_platform {
	char *os, *arch, *min_glibc;
} nx_manifest_platform;

typedef struct nx_manifest {
	char *schema_version;   /* "1.0" */
	char *bundle_id;        /* one path component, e.g. "nexus_bundle_v1" */
	char *build_timestamp;  /* ISO 8601 UTC "2026-11-27T01:02:03Z" */
	char *architecture, *parameters, *format, *quantization; /* model_metadata */
	bool teacher_free, training_code_excluded;               /* invariants */
	struct nx_manifest_file *files; /* sorted by path (byte order), unique */
	size_t nfiles;
	char *signature;        /* "" when unsigned */
	nx_manifest_policy *policy;   /* schema 1.1; NULL for 1.0 */
	nx_manifest_runtime *runtime; /* schema 1.1; NULL for 1.0 */
	nx_manifest_platform *platform; /* schema 1.3; NULL before */
} nx_manifest;

/*
 * Allocate a manifest with schema_version "1.0", every other string "",
 * both invariants false and no files.  Free with nx_manifest_free.
 */
int nx_manifest_new(nx_manifest **out, nx_error *err);

/*
 * Replace the string *field (one of m's char * members) with a copy of
 * value.  NX_ENOMEM leaves *field unchanged.
 */
int nx_manifest_set(nx_manifest *m, char **field, const char *value, nx_error *err);

/*
 * Record policy and runtime (both taken over: m frees them; on error they
 * are freed here) and set schema_version "1.1".  runtime lists, with their
 * digests from m->files, every file of m under bin/ and lib/, so call it
 * after the last nx_manifest_add_file.  NX_ENOMEM.
 */
int nx_manifest_set_v11(nx_manifest *m, nx_manifest_policy *policy, const char *runtime_version,
			nx_error *err);

/* Free a policy and everything it owns.  Accepts NULL. */
void nx_manifest_policy_free(nx_manifest_policy *p);

/*
 * Record every file's mode (schema "1.2", after nx_manifest_set_v11): 0555
 * where <dirfd>/<path> has its owner's execute bit, else 0444 - the modes
 * nx_stage_seal gives them.  NX_EIO naming a file that cannot be stat'ed.
 */
int nx_manifest_set_modes(nx_manifest *m, int dirfd, nx_error *err);

/*
 * The mode a listed file must have: its recorded mode, or for a manifest
 * without modes (1.0, 1.1) the rule those bundles were built by
 * (bin/nexus_cli 0555, every other file 0444).
 */
unsigned nx_manifest_file_mode(const struct nx_manifest_file *f);

/*
 * Record the platform (copies of the three strings) and set schema "1.3";
 * call after nx_manifest_set_modes.  NX_EFORMAT when a value breaks
 * nx_manifest_platform_check, NX_ENOMEM.
 */
int nx_manifest_set_platform(nx_manifest *m, const char *os, const char *arch,
			     const char *min_glibc, nx_error *err);

/*
 * The platform rules: os "linux"; arch [a-z0-9_]+ (at most
 * NX_PLATFORM_STRING_MAX bytes); min_glibc two or three dot-separated
 * numbers of at most 3 digits ("2.34", "2.2.5").  0, or
 * NX_EFORMAT naming the value (path is for the message).
 */
int nx_manifest_platform_check(const nx_manifest_platform *p, const char *path, nx_error *err);

/*
 * Compare two glibc versions "MAJOR.MINOR[.PATCH...]" numerically: <0, 0, >0
 * as strcmp.  A string that is not such a version sorts first.
 */
int nx_manifest_glibc_cmp(const char *a, const char *b);

/*
 * True for a runtime path: "bin/nexus_cli", "lib/<one component>" or
 * NX_BUNDLE_NOTICES (the runtime's licence texts).
 */
bool nx_manifest_is_runtime_path(const char *path);

/*
 * Add a file entry (the path is copied), keeping files sorted.  NX_EUNSAFE
 * if the path breaks nx_manifest_path_check or is "manifest.json" itself
 * (in any case);
 * NX_EEXIST if it equals an existing path or collides with one when
 * ASCII-case-folded; NX_ELIMIT past NX_MANIFEST_FILES_MAX.  Costs O(nfiles).
 */
int nx_manifest_add_file(nx_manifest *m, const char *path,
			 const unsigned char sha256[NX_SHA256_LEN], uint64_t size,
			 nx_error *err);

/*
 * Replace the digest and size of the entry for path (a file the build
 * rewrote in place).  NX_EINTERNAL when path is not listed.
 */
int nx_manifest_update_file(nx_manifest *m, const char *path,
			    const unsigned char sha256[NX_SHA256_LEN], uint64_t size,
			    nx_error *err);

/*
 * The path rules: relative, '/'-separated, every component non-empty,
 * made of [A-Za-z0-9._-], not "." or "..", at most NX_MANIFEST_COMPONENT_MAX
 * bytes; whole path at most NX_MANIFEST_PATH_MAX bytes.  0, or NX_EUNSAFE
 * with a message naming the path.
 */
int nx_manifest_path_check(const char *path, nx_error *err);

/*
 * The canonical serialization, signature key included.  *out is
 * NUL-terminated and malloc'd (caller frees); *out_len excludes the NUL.
 */
int nx_manifest_serialize(char **out, size_t *out_len, const nx_manifest *m, nx_error *err);

/*
 * The signed message: NX_MANIFEST_SIGNED_PREFIX followed by the canonical
 * serialization of m without its "signature" key.  Ownership as above.
 */
int nx_manifest_signed_bytes(char **out, size_t *out_len, const nx_manifest *m,
			     nx_error *err);

/*
 * Strict parse of len bytes (buf need not be NUL-terminated; path is for
 * messages).  Rejects, with NX_EFORMAT naming the key or entry: invalid JSON,
 * duplicate keys, trailing data, a missing or unknown key at any level,
 * wrong types, schema_version other than "1.0" and "1.1", "policy" or
 * "runtime" missing under 1.1 or present under 1.0, a runtime file not
 * listed in files with the same digest (or a bin/ or lib/ file of files
 * missing from runtime), a bundle_id that is not one
 * path component, a build_timestamp not of the form YYYY-MM-DDTHH:MM:SSZ,
 * strings with control characters or longer than NX_MANIFEST_STRING_MAX,
 * sha256 not 64 lower-case hex digits, size_bytes not a non-negative
 * integer, files unsorted or repeated (also ASCII-case-folded), and bytes
 * that differ from the canonical re-serialization ("not in canonical
 * form").  Path rule violations are NX_EUNSAFE; the caps NX_MANIFEST_MAX and
 * NX_MANIFEST_FILES_MAX give NX_ELIMIT.  The signature string is not checked
 * here (see nx_manifest_verify_signature).
 */
int nx_manifest_parse(nx_manifest **out, const char *buf, size_t len, const char *path,
		      nx_error *err);

/*
 * Open <dirfd>/<name> (name NULL means "manifest.json") with O_NOFOLLOW,
 * require a regular file of at most NX_MANIFEST_MAX bytes, read and parse it.
 * NX_EUNSAFE for a symlink or non-regular file, NX_EIO for read errors.
 */
int nx_manifest_load(nx_manifest **out, int dirfd, const char *name, nx_error *err);

/*
 * Write m canonically to <dirfd>/manifest.json atomically: a temporary
 * "manifest.json.tmp.XXXXXX" (mode 0444) in the same directory, fsync,
 * renameat over manifest.json, fsync the directory.  The directory must be
 * writable.  On error the temporary file is removed and manifest.json is
 * untouched.
 */
int nx_manifest_write_atomic(int dirfd, const nx_manifest *m, nx_error *err);

/* Entry with exactly this path, or NULL.  Binary search; borrowed pointer. */
const struct nx_manifest_file *nx_manifest_find(const nx_manifest *m, const char *path);

/* Is some listed file beneath directory dir ("a/b", no trailing slash)? */
bool nx_manifest_has_dir(const nx_manifest *m, const char *dir);

/* Free m and everything it owns.  Accepts NULL. */
void nx_manifest_free(nx_manifest *m);

#ifdef __cplusplus
}
#endif
#endif
