/*
 * nexus/verify.h - the Teacher Removal Validation (TRV) gate of
 * docs/TRV.md: integrity, signature, allowlist (TRV-1), code (TRV-2),
 * budget (the leak budget, nexus/budget.h), weights (TRV-3), size (TRV-4)
 * and functional (TRV-5) checks over a bundle
 * directory, producing a report of findings with stable codes
 * (docs/TRV.md lists and explains every code).
 *
 * The bundle is untrusted: every file is opened beneath the bundle
 * directory without following symlinks, sizes are compared before any byte
 * is read, nothing is read past the size the manifest declares, and special
 * files are never opened for reading.
 */
#ifndef NEXUS_VERIFY_H
#define NEXUS_VERIFY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"
#include "nexus/fs.h"
#include "nexus/findings.h"
#include "nexus/sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nx_key nx_key;   /* nexus/sign.h */

enum nx_check_status { NX_CHECK_PASS, NX_CHECK_WARN, NX_CHECK_FAIL, NX_CHECK_SKIP };
enum nx_verdict { NX_VERDICT_PASS, NX_VERDICT_WARN, NX_VERDICT_FAIL };

/* The check ids, in the order they run and are reported. */
#define NX_CHECK_INTEGRITY "integrity"
#define NX_CHECK_SIGNATURE "signature"
#define NX_CHECK_POLICY "policy"
#define NX_CHECK_ALLOWLIST "allowlist"
#define NX_CHECK_CODE "code"
#define NX_CHECK_BUDGET "budget"
#define NX_CHECK_WEIGHTS "weights"
#define NX_CHECK_SIZE "size"
#define NX_CHECK_FUNCTIONAL "functional"

#define NX_VERIFY_MAX_MODEL_BYTES (2ull << 30)  /* default TRV-4 threshold */
#define NX_VERIFY_SIZE_SLACK 0.05               /* default TRV-4 slack */
#define NX_REPORT_FINDINGS_MAX 2000
/* The installation's list of trusted runtimes, in its runtime directory
 * (beside bin/nexus_cli): "nexus <version>" lines, each followed by the
 * "<sha256>  <path>" lines of that release's bin/ and lib/ files. */
#define NX_TRUSTED_RUNTIMES_NAME "trusted-runtimes"             /* further findings are counted */

struct nx_finding {
	char *check;               /* check id */
	enum nx_severity severity;
	const char *code;          /* stable, kebab-case: nx_finding_name(id), see docs/TRV.md */
	enum nx_finding_code id;
	char *path;                /* bundle-relative path, "" if none */
	long line;                 /* 1-based, 0 if not applicable */
	char *message;
};

struct nx_check_result {
	char *id;
	enum nx_check_status status;
	double seconds;            /* wall-clock duration */
};

/* Opaque: the checks run so far and their findings. */
typedef struct nx_report nx_report;

/*
 * Fields of the manifest's signed policy (docs/FORMAT.md §1.1) that
 * --override-policy may loosen: bits of nx_verify_opts.override_policy.
 * Without the bit, verify's own limits can only tighten the recorded one.
 */
enum nx_policy_field {
	NX_POLICY_MAX_MODEL_BYTES = 1 << 0,
	NX_POLICY_SIZE_SLACK = 1 << 1,
	NX_POLICY_FORBIDDEN_TERMS = 1 << 2,
	NX_POLICY_FORBIDDEN_IMPORTS = 1 << 3,
	NX_POLICY_ALLOW_SHARED = 1 << 4,
	NX_POLICY_MAX_LEAK_BYTES = 1 << 5,
	NX_POLICY_ALL = (1 << 6) - 1,
};
/* Names --override-policy accepts, comma-separated, for help and errors. */
#define NX_POLICY_FIELD_NAMES \
	"max_model_bytes, size_slack, max_leak_bytes, forbidden_terms, forbidden_imports, " \
	"allow_shared_tensors, all"

/* The field called name (a policy key, or "all"): *out |= its bit.
 * 0, or NX_EUSAGE naming the valid names. */
int nx_verify_policy_field(unsigned *out, const char *name, nx_error *err);

struct nx_verify_opts {
	bool strict;                    /* recorded in the report; exit policy is the caller's */
	nx_key *const *keys;            /* trusted public keys (borrowed) */
	size_t nkeys;
	bool require_signature;         /* unsigned is FAIL instead of WARN */
	const char *const *teachers;    /* teacher model files to fingerprint against */
	size_t nteachers;
	/*
	 * For nexus build's self-check only: the caller wrote every file of the
	 * (private, sealed) tree itself and computed the manifest's digests
	 * while writing, so integrity checks types, modes and sizes but takes
	 * the digests from the manifest instead of reading every byte again.
	 * Never set it for a tree someone else could have written.
	 */
	bool digests_known;
	/*
	 * With digests_known, when set: asked for each file (st: its fstat)
	 * before its digest is taken from the manifest; false means the file
	 * is not as the caller left it, and it is hashed like any other
	 * (nexus pull: inode, size and the mtime it stamped).
	 */
	bool (*digest_still_known)(void *ctx, const char *path, const struct stat *st);
	void *digest_known_ctx;
	/* TRV-5 without the selftest run (imports only): for nexus build, whose
	 * golden outputs were computed by that same run moments before. */
	bool functional_imports_only;
	/* Only the integrity check (nexus sign: files == manifest before a
	 * signature vouches for them); the other checks are not reported. */
	bool integrity_only;
	/* student tensor names the verifier allows to equal a teacher's (--accept-shared);
	 * the signed policy's allow_shared_tensors is believed only for these
	 * (it is workspace configuration), or wholly under trust_policy */
	const char *const *allow_shared;
	size_t nallow_shared;
	const char *const *extra_terms; /* forbidden terms besides teacher/distillation/soft_targets */
	size_t nextra_terms;
	const char *runtime_dir;        /* trusted nexus release: bin/nexus_cli, lib/... ; NULL = none */
	/* optional file of trusted runtimes, in the format of
	 * NX_TRUSTED_RUNTIMES_NAME (runtime_dir's own list is also read) */
	const char *trusted_list;
	bool functional;                /* run TRV-5 */
	enum nx_sandbox_backend sandbox; /* TRV-5's backend; NX_SANDBOX_AUTO = the first that runs */
	bool allow_no_sandbox;          /* no usable backend: WARN instead of FAIL */
	uint64_t sandbox_memory;        /* TRV-5's RLIMIT_AS; 0 = scaled to the model */
	/* Verify's own limits.  With a recorded policy they only tighten it
	 * (a looser value is reported and ignored) unless override_policy has
	 * their bit. */
	uint64_t max_model_bytes;       /* 0 = the policy's, else NX_VERIFY_MAX_MODEL_BYTES */
	double size_slack;              /* < 0 = the policy's, else NX_VERIFY_SIZE_SLACK */
	unsigned override_policy;       /* enum nx_policy_field bits: each a WARN finding */
	/*
	 * For nexus build's self-check only: the manifest's policy is the one
	 * the caller just wrote, so it applies as if signed by a trusted key.
	 * (Otherwise a policy looser than verify's defaults applies only when
	 * the signature is valid for a --pubkey key.)
	 */
	bool trust_policy;
	/* leak budget in bytes: 0 = the policy's, else NX_BUDGET_DEFAULT, which
	 * is also the most any caller gets (a larger value counts as the
	 * default); like max_model_bytes it only tightens the policy */
	uint64_t max_leak_bytes;
	/* the vocabulary the runtime loads may hold at most this many tokens
	 * (0 = no limit): its allowance, 6 bytes a token, is the insider's to
	 * grow otherwise (docs/TRV.md "Leak budget") */
	uint64_t max_vocab_tokens;
	/* a tokenizer.json or vocab.txt the verifier trusts (the teacher's or
	 * the base model's; NULL = none): the vocabulary stream is coded with
	 * its stream as a zstd dictionary and charged with no allowance a
	 * token, so the bound is 64 KiB whatever N (docs/TRV.md "Leak budget") */
	const char *vocab_reference;
	int threads;                    /* hashing threads, <= 0 = 2 */
	/* the bundle's path in the commands hints name ('nexus fix-modes
	 * PATH'): for a stage, the path it is published at; NULL = bundle_path */
	const char *hint_path;
	/* Called as each check starts (done false; seconds = the check's
	 * default time budget, nx_verify_time_budget) and ends (seconds it
	 * took); may be NULL. */
	void (*progress)(void *ctx, const char *check, bool done, double seconds);
	void *progress_ctx;
};

/* Defaults: everything off/empty, functional on, default limits. */
void nx_verify_opts_init(struct nx_verify_opts *opts);

/*
 * Run every check over the bundle open at bundle_dirfd (borrowed; used with
 * *at() calls only).  bundle_path is for messages and the report.  On
 * success *out is a report (free with nx_report_free) whatever its verdict:
 * a tampered or teacher-carrying bundle is a FAIL verdict, not an error.
 * Errors (NX_ENOMEM, NX_EIO on the bundle directory itself, NX_EINTERNAL)
 * are for environment failures only; *out is then untouched.
 */
int nx_verify_bundle(nx_report **out, int bundle_dirfd, const char *bundle_path,
		     const struct nx_verify_opts *opts, nx_error *err);

/*
 * Verify a sealed stage (nexus/fs.h) whose every file the caller wrote and
 * checked against the manifest's SHA-256 as it went (pull, unpack): the
 * digests are taken as known (opts->digests_known).  *out is the report
 * (the caller frees it) whenever verification ran.  A verdict of FAIL, or
 * WARN under opts->strict, is NX_ECHECK: "the <what> bundle fails
 * verification (verdict V); nothing was written to <final_path>".  The
 * checks themselves run on the stage's own path (nx_stage_path): TRV-5
 * binds the bundle into its sandbox by path, and final_path does not exist
 * yet.
 */
int nx_verify_stage(nx_report **out, const nx_stage *stage, const char *final_path,
		    const char *what, const struct nx_verify_opts *opts, nx_error *err);

/*
 * The end of pull and unpack: write manifest.json (mjson[0..mlen)) into the
 * stage whose other files the caller wrote, seal it, verify it with
 * nx_verify_stage when opts is not NULL, and publish it to final_path
 * atomically.  *out as for nx_verify_stage; on any failure nothing is
 * published and the caller frees the stage.
 */
int nx_verify_publish(nx_report **out, nx_stage *stage, const char *mjson, size_t mlen,
		      const char *final_path, const char *what,
		      const struct nx_verify_opts *opts, nx_error *err);

/* An empty report for bundle_path (may be NULL). */
int nx_report_new(nx_report **out, const char *bundle_path, nx_error *err);

/*
 * The default time budget of check `check`, in seconds, for a bundle whose
 * model and external data hold model_bytes: NX_VERIFY_CHECK_S plus
 * NX_VERIFY_CHECK_S_PER_GIB per GiB (every check is linear in the bundle).
 * The functional check also gets the budgets of the programs it runs
 * (selftest, imports, liveness: nexus/functional.h), which end in findings
 * of their own: a watchdog firing first would turn a liveness WARN into
 * check-over-budget.  A caller's single --time-budget replaces all of it.
 */
#define NX_VERIFY_CHECK_S 300.0
#define NX_VERIFY_CHECK_S_PER_GIB 60.0
double nx_verify_time_budget(const char *check, uint64_t model_bytes);

/*
 * The report of a verify stopped because check `check` ran past its time
 * budget of `budget` seconds: one FAIL finding, check-over-budget.  For a
 * caller that watches nx_verify_bundle's progress and must answer instead
 * of waiting (the library cannot stop a check from outside).  0, or
 * NX_ENOMEM with *out untouched.
 */
int nx_report_over_budget(nx_report **out, const char *bundle_path, const char *check,
			  double budget, nx_error *err);

/*
 * Add a finding of code (a row of nexus/findings.def; reported as its
 * string, nx_finding_name(code)) (strings copied; path may be NULL).  Past
 * NX_REPORT_FINDINGS_MAX findings only the counters and the verdict change.
 * Returns 0 or NX_ENOMEM.
 */
int nx_report_add(nx_report *r, const char *check, enum nx_severity sev, enum nx_finding_code code,
		  const char *path, long line, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
int nx_report_vadd(nx_report *r, const char *check, enum nx_severity sev, enum nx_finding_code code,
		   const char *path, long line, const char *fmt, va_list ap)
	__attribute__((format(printf, 7, 0)));

/*
 * Record that check `id` ran for `seconds`.  Its status is derived from its
 * findings (worst severity: INFO is PASS) unless skipped is true (SKIP).
 */
int nx_report_check(nx_report *r, const char *id, bool skipped, double seconds);
/* Recompute the status of check id, recorded before, from the findings
 * reported so far (a finding may come after its check ran).  Returns 0. */
int nx_report_check_update(nx_report *r, const char *id);

/* The worst finding severity of the report (INFO is PASS). */
enum nx_verdict nx_report_verdict(const nx_report *r);

/* Borrowed views, valid until the next nx_report_* call that modifies r. */
const struct nx_finding *nx_report_findings(const nx_report *r, size_t *out_n);
const struct nx_check_result *nx_report_checks(const nx_report *r, size_t *out_n);
/* Findings not stored because of NX_REPORT_FINDINGS_MAX. */
size_t nx_report_dropped(const nx_report *r);
/* Number of findings of a code (including dropped ones is not possible: stored only). */
size_t nx_report_count(const nx_report *r, enum nx_finding_code code);

/* Findings whose path is `from` get `to` instead (build: the workspace file
 * a bundle file was copied from, so that the user knows which to edit).
 * 0 or NX_ENOMEM. */
int nx_report_rename_path(nx_report *r, const char *from, const char *to);

const char *nx_severity_name(enum nx_severity s);          /* "INFO","WARN","FAIL" */
const char *nx_check_status_name(enum nx_check_status s);  /* "PASS","WARN","FAIL","SKIP" */
const char *nx_verdict_name(enum nx_verdict v);            /* "PASS","WARN","FAIL" */

/*
 * The report as one JSON document (malloc'd, NUL-terminated, caller frees):
 * {"schema": "nexus.verify.v1", "bundle", "verdict", "checks": [{"id",
 * "status", "duration_ms", "findings"}], "findings": [{"check", "severity",
 * "code", "path", "line" (only when known), "message"}], "dropped_findings"}.
 */
int nx_report_json(char **out, const nx_report *r, nx_error *err);

void nx_report_free(nx_report *r);

#ifdef __cplusplus
}
#endif
#endif
