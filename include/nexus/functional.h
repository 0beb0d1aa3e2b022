/*
 * nexus/functional.h - TRV-5 `functional` (docs/TRV.md): run the bundle's
 * own `bin/nexus_cli selftest` and import its Python sources inside the
 * sandbox of nexus/sandbox.h.
 *
 * Findings are handed to a callback, so that the verifier (nexus/verify.h,
 * through nx_report_add) and the build's self-check can both collect them.
 * Codes (docs/TRV.md):
 *   functional-sandbox-unavailable  FAIL (WARN with allow_no_sandbox, FAIL
 *                                   again when strict): no sandbox backend
 *                                   can run here; the check is skipped
 *   functional-sandbox              INFO: the backend the check ran in
 *   functional-no-runtime           FAIL: bin/nexus_cli missing
 *   functional-selftest-failed      FAIL: selftest exited non-zero
 *   functional-killed               FAIL: selftest died of a signal
 *   functional-timeout              FAIL: wall-clock timeout
 *   functional-output-cap           FAIL: more output than the cap
 *   functional-import               FAIL: a Python source imports a module
 *                                   that is neither stdlib, the bundle, nor
 *                                   a runtime.yaml python_packages entry;
 *                                   path:line is the importing statement
 *   functional-import-error         WARN: a Python source raised something
 *                                   else while being imported
 *   functional-python-failed        FAIL: the import driver did not finish
 *   dead-initializer                FAIL: an initializer of at least
 *                                   NX_FUNCTIONAL_LIVE_MIN_BYTES that, replaced
 *                                   by noise of its own scale, changes the
 *                                   selftest outputs by less than
 *                                   NX_FUNCTIONAL_LIVE_REL_MIN (relative L2)
 *   liveness-checked / -sampled     INFO: how many were checked (sampled:
 *                                   the time budget ran out first)
 *   liveness-failed                 FAIL: `nexus_cli liveness` did not finish
 *   liveness-unavailable            WARN: the runtime has no liveness verb
 *   liveness-subgraph               WARN: an initializer of a subgraph (If,
 *                                   Loop, Scan), which cannot be replaced
 *
 * Python: `/usr/bin/python3 -I -S -B` with only the interpreter's ELF
 * closure, its standard library directory (incl. lib-dynload and the
 * closure of its extension modules), the bundle and a private read-only
 * driver directory visible; no dist-packages or site-packages.  Each name
 * in runtime.yaml python_packages (and its submodules) is served by a
 * permissive stand-in module.  Code running in the sandbox can forge the
 * driver's result lines (they carry a per-run random nonce, but the
 * imported code runs in the same process); the check proves that honest
 * sources have no training-time dependency, the sandbox contains the rest.
 */
#ifndef NEXUS_FUNCTIONAL_H
#define NEXUS_FUNCTIONAL_H

#include <stdbool.h>
#include <stdint.h>

#include "nexus/error.h"
#include "nexus/findings.h"
#include "nexus/sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_FUNCTIONAL_PYTHON "/usr/bin/python3"
#define NX_FUNCTIONAL_PY_MODULES_MAX 256   /* Python files in src/ imported */
#define NX_FUNCTIONAL_SELFTEST_MS 60000
#define NX_FUNCTIONAL_IMPORT_MS 30000
#define NX_FUNCTIONAL_LIVENESS_MS 600000    /* the liveness check's time budget: 10 min, so
                                             * a real 1B-parameter student (a session
                                             * per initializer) can be checked whole */
#define NX_FUNCTIONAL_LIVE_MIN_BYTES 64     /* initializers it perturbs */
#define NX_FUNCTIONAL_LIVE_REL_MIN 1e-6     /* relative output change: below is dead */
#define NX_FUNCTIONAL_MODEL "model/student_model.onnx"

enum nx_functional_sev { NX_FUNCTIONAL_INFO, NX_FUNCTIONAL_WARN, NX_FUNCTIONAL_FAIL };

/* One finding; strings are borrowed for the call.  Return 0 or a negative
 * NX_E* code, which aborts the check and is returned by it. */
typedef int (*nx_functional_fn)(void *ctx, enum nx_functional_sev sev, enum nx_finding_code code,
				const char *path, long line, const char *message);

struct nx_functional_opts {
	enum nx_sandbox_backend backend;   /* NX_SANDBOX_AUTO = the first that runs */
	bool allow_no_sandbox;   /* no usable backend is a WARN, not a FAIL */
	uint64_t model_bytes;    /* the model and its external data: scales the limits */
	uint64_t sandbox_memory; /* RLIMIT_AS; 0 = nx_sandbox_scale(model_bytes) */
	const char *bwrap;       /* NULL = NX_SANDBOX_BWRAP */
	const char *python;      /* NULL = NX_FUNCTIONAL_PYTHON */
	bool strict;             /* sandbox unavailable is FAIL instead of WARN */
	bool selftest;           /* run bin/nexus_cli selftest (default true) */
	bool imports;            /* import the Python sources (default true) */
	bool liveness;           /* bin/nexus_cli liveness (default true) */
	uint64_t selftest_ms;    /* 0 = NX_FUNCTIONAL_SELFTEST_MS */
	uint64_t import_ms;      /* 0 = NX_FUNCTIONAL_IMPORT_MS */
	uint64_t liveness_ms;    /* 0 = NX_FUNCTIONAL_LIVENESS_MS */
};

void nx_functional_opts_init(struct nx_functional_opts *o);

/* The liveness check's budget in ms: NX_FUNCTIONAL_LIVENESS_MS, lowered
 * (never raised) by $NEXUS_LIVENESS_BUDGET_MS - a test simulates a model too
 * slow to check that way.  Verify and build's zero-check pass share it. */
uint64_t nx_functional_liveness_ms(void);

/*
 * Run the check over the bundle open at bundle_dirfd (borrowed) whose path
 * is bundle_path (used to read the ELF closure of bin/nexus_cli; the bundle
 * itself is bound into the sandbox from the fd).  Findings go to fn.
 * *skipped is set when the sandbox is unavailable.  Errors are for
 * environment failures only (NX_ENOMEM, NX_EIO on the temporary directory,
 * or whatever fn returned).
 */
int nx_functional_check(bool *skipped, int bundle_dirfd, const char *bundle_path,
			const struct nx_functional_opts *o, nx_functional_fn fn, void *ctx,
			nx_error *err);

#ifdef __cplusplus
}
#endif
#endif
