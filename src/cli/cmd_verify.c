/* cmd_verify.c - `nexus verify`: the TRV gate for deployment CI. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "nexus/attest.h"
#include "nexus/budget.h"
#include "nexus/config.h"
#include "nexus/sign.h"
#include "nexus/verify.h"

#define LIST_MAX 64

enum {
	OPT_JSON = 1, OPT_STRICT, OPT_PUBKEY, OPT_REQUIRE_SIG, OPT_TEACHER, OPT_NO_SANDBOX,
	OPT_MAX_MODEL, OPT_TRUSTED_LIST, OPT_TERM, OPT_MAX_LEAK, OPT_SANDBOX, OPT_ALLOW_NO_SANDBOX,
	OPT_SANDBOX_MEMORY, OPT_TIME_BUDGET, OPT_OVERRIDE, OPT_ATTEST, OPT_KEY, OPT_ACCEPT_SHARED,
	OPT_MAX_VOCAB, OPT_VOCAB_REF,
};

/* Seconds one check may take: --time-budget, else each check's default
 * (nx_verify_time_budget: 300 s plus 60 s per GiB of model, the functional
 * check also its programs' own budgets).  Every check is linear in the
 * bundle (docs/TRV.md "Cost"). */
#define TIME_BUDGET_MAX 86400.0

static const struct cli_opt opts[] = {
	{"json", 0, NULL, "print the report as one JSON document (schema nexus.verify.v1)", OPT_JSON},
	{"strict", 0, NULL, "a WARN verdict exits 1", OPT_STRICT},
	{"pubkey", 0, "PUB", "trust this Ed25519 public key (PEM); repeatable", OPT_PUBKEY},
	{"require-signature", 0, NULL, "an unsigned manifest FAILs instead of WARNs", OPT_REQUIRE_SIG},
	{"teacher", 0, "PATH", "fingerprint the student against this teacher model; repeatable",
	 OPT_TEACHER},
	{"accept-shared", 0, "NAME", "accept student tensor NAME equal to a teacher tensor "
	 "(the bundle's allow_shared_tensors is workspace configuration: believed only for the "
	 "names given here); repeatable", OPT_ACCEPT_SHARED},
	{"no-sandbox", 0, NULL, "do not run the functional check (TRV-5)", OPT_NO_SANDBOX},
	{"sandbox", 0, "NAME", CLI_SANDBOX_HELP, OPT_SANDBOX},
	{"allow-no-sandbox", 0, NULL, "no usable sandbox backend is a WARN, not a FAIL",
	 OPT_ALLOW_NO_SANDBOX},
	{"sandbox-memory", 0, "SIZE", CLI_SANDBOX_MEMORY_HELP, OPT_SANDBOX_MEMORY},
	{"max-model-bytes", 0, "N", "model size threshold, e.g. 500MiB (default: the bundle's "
	 "policy, else 2GiB); only tightens the policy", OPT_MAX_MODEL},
	{"max-leak-bytes", 0, "N", "leak budget: information outside the weights, at most "
	 "the default 64KiB (it can only be lowered)", OPT_MAX_LEAK},
	{"max-vocab-tokens", 0, "N", "FAIL when the vocabulary the runtime loads holds more than "
	 "N tokens (each brings 6 bytes of leak allowance; default: no limit)", OPT_MAX_VOCAB},
	{"vocab-reference", 0, "FILE", "a tokenizer.json or vocab.txt you trust (the teacher's or "
	 "the base model's): the vocabulary is charged what it adds to FILE's, with no allowance "
	 "a token (the bound is the leak budget whatever its size)", OPT_VOCAB_REF},
	{"trusted-list", 0, "FILE", "trusted runtime releases: 'nexus <version>' lines, each "
	 "followed by its '<sha256>  <path>' lines", OPT_TRUSTED_LIST},
	{"forbidden-term", 0, "TERM", "also forbid TERM (besides teacher, distillation, "
	 "soft_targets); repeatable", OPT_TERM},
	{"time-budget", 0, "SECONDS", "a check running longer FAILs (check-over-budget) "
	 "instead of hanging (default 300 + 60 per GiB of model; the functional check "
	 "also its programs' own budgets)", OPT_TIME_BUDGET},
	{"override-policy", 0, "FIELD", "let verify's own value replace this field of the bundle's "
	 "signed policy, even if looser (" NX_POLICY_FIELD_NAMES "); a WARN finding; repeatable",
	 OPT_OVERRIDE},
	{"attest", 0, "OUT", "write the report as a signed in-toto attestation (DSSE envelope, "
	 "docs/FORMAT.md section 8.5) to OUT; needs --key", OPT_ATTEST},
	{"key", 0, "KEY", "the release's Ed25519 private key (PEM, as for 'nexus build --key') "
	 "that signs --attest", OPT_KEY},
	{0},
};

/* OUT gets the envelope of the report of the bundle open at dfd, signed
 * with key.  manifest.json is read again here: the attestation names the
 * bytes that are there now, which verify has just checked. */
static int attest(const char *out, int dfd, const nx_report *r,
		  const char *key_path, nx_error *err)
{
	char *mjson = NULL, *json = NULL, *env = NULL;
	nx_manifest *m = NULL;
	nx_key *key = NULL;
	size_t mlen, elen, put = 0;
	ssize_t w;
	int rc, fd = -1;

	if ((rc = nx_key_load_private(&key, key_path, err)) ||
	    (rc = nx_fs_read_all(&mjson, &mlen, dfd, NX_MANIFEST_NAME, NX_MANIFEST_MAX, err)) ||
	    (rc = nx_manifest_parse(&m, mjson, mlen, NX_MANIFEST_NAME, err)) ||
	    (rc = nx_report_json(&json, r, err)) ||
	    (rc = nx_attest_create(&env, &elen, m, mjson, mlen, json, key, err)))
		goto out;
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	while (fd >= 0 && put < elen && ((w = write(fd, env + put, elen - put)) > 0 || errno == EINTR))
		put += w > 0 ? (size_t)w : 0;
	if (fd < 0 || put < elen || close(fd)) {
		rc = nx_error_errno(err, NX_EIO, errno, out, "cannot write the attestation %s", out);
		if (fd >= 0)
			unlink(out);
	}
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	nx_key_free(key);
	nx_manifest_free(m);
	free(mjson);
	free(json);
	free(env);
	return rc;
}

/* A size by nexus.yaml's grammar (nx_parse_size: "123", "2GiB", "500 MB",
 * "1.5GB"), at least one byte.  0 on success. */
static int parse_size(uint64_t *out, const char *s)
{
	nx_error err;
	uint64_t v;

	nx_error_clear(&err);
	if (nx_parse_size(&v, s, &err) || v < 1)
		return -1;
	*out = v;
	return 0;
}

static void print_human(const nx_report *r, FILE *f)
{
	const struct nx_check_result *checks;
	const struct nx_finding *fs;
	size_t n, i;

	checks = nx_report_checks(r, &n);
	for (i = 0; i < n; i++)
		fprintf(f, "%-4s  %-10s (%.0f ms)\n", nx_check_status_name(checks[i].status),
			checks[i].id, checks[i].seconds * 1000.0);
	fs = nx_report_findings(r, &n);
	if (n)
		fprintf(f, "\n");
	for (i = 0; i < n; i++) {
		fprintf(f, "%s %s %s %s", nx_severity_name(fs[i].severity), fs[i].check, fs[i].code,
			fs[i].path[0] ? fs[i].path : "-");
		if (fs[i].line > 0)
			fprintf(f, ":%ld", fs[i].line);
		fprintf(f, ": %s\n", fs[i].message);
	}
	if (nx_report_dropped(r))
		fprintf(f, "... and %zu more findings\n", nx_report_dropped(r));
	fprintf(f, "\nverdict: %s\n", nx_verdict_name(nx_report_verdict(r)));
}

/*
 * The watchdog: a thread that holds the deadline of the check under way
 * (told by the progress callback).  A check past its budget ends verify
 * with a FAIL report naming it (check-over-budget) and exit 1: a gate must
 * answer, and an input that makes a check slow is an attack on the gate.
 * The library cannot be stopped mid-check, so the process exits; what the
 * other checks found is lost, the verdict is FAIL either way.
 */
struct watchdog {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const char *check;          /* under way, or NULL */
	struct timespec deadline;   /* CLOCK_MONOTONIC */
	double budget;              /* --time-budget, or 0: each check's default */
	double check_budget;        /* of the check under way */
	bool json, quit;
	const char *bundle;
};

static void over_budget(struct watchdog *w)
{
	nx_report *r = NULL;
	char *json = NULL;

	cli_status("verify", NULL);
	if (nx_report_over_budget(&r, w->bundle, w->check, w->check_budget, NULL))
		fprintf(stderr, "nexus verify: the %s check ran past its time budget; verdict: FAIL\n",
			w->check);
	else if (!w->json)
		print_human(r, stdout);
	else if (!nx_report_json(&json, r, NULL))
		printf("%s\n", json);
	fflush(stdout);
	_exit(1);
}

static void *watchdog_main(void *arg)
{
	struct watchdog *w = arg;

	pthread_mutex_lock(&w->mu);
	while (!w->quit) {
		if (!w->check)
			pthread_cond_wait(&w->cv, &w->mu);
		else if (pthread_cond_timedwait(&w->cv, &w->mu, &w->deadline) == ETIMEDOUT &&
			 w->check)
			over_budget(w);   /* does not return; the lock stays held */
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void watchdog_stop(struct watchdog *w, pthread_t t)
{
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	w->check = NULL;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(t, NULL);
}

/* A check starts (done false) or ends: arm or disarm the watchdog. */
static void on_progress(void *ctx, const char *check, bool done, double seconds)
{
	struct watchdog *w = ctx;
	double end;

	if (!done)
		cli_status("verify", "%s...", check);
	pthread_mutex_lock(&w->mu);
	w->check = done ? NULL : check;
	if (!done) {
		w->check_budget = w->budget > 0 ? w->budget : seconds;
		clock_gettime(CLOCK_MONOTONIC, &w->deadline);
		end = (double)w->deadline.tv_nsec / 1e9 + w->check_budget;
		w->deadline.tv_sec += (time_t)end;
		w->deadline.tv_nsec = (long)((end - (double)(time_t)end) * 1e9);
	}
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	const char *teachers[LIST_MAX], *terms[LIST_MAX], *accept[LIST_MAX];
	nx_key *keys[LIST_MAX];
	struct nx_verify_opts vo;
	struct cli_parser p;
	nx_report *r = NULL;
	int rc;
	char *rt = NULL, *json = NULL;
	bool as_json = false, watching = false;
	struct watchdog wd = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL,
			       { 0, 0 }, 0, 0, false, false, NULL };
	pthread_condattr_t ca;
	pthread_t wd_thread;
	char *end;
	const char *sandbox = NULL, *sandbox_mem = NULL, *attest_out = NULL, *key_path = NULL;
	nx_error err;
	size_t nkeys = 0, i;
	int k, dfd = -1, status = 0;

	nx_error_clear(&err);
	nx_verify_opts_init(&vo);
	vo.teachers = teachers;
	vo.extra_terms = terms;
	vo.allow_shared = accept;
	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		switch (k) {
		case OPT_JSON: as_json = true; break;
		case OPT_STRICT: vo.strict = true; break;
		case OPT_REQUIRE_SIG: vo.require_signature = true; break;
		case OPT_NO_SANDBOX: vo.functional = false; break;
		case OPT_TRUSTED_LIST: vo.trusted_list = p.optarg; break;
		case OPT_VOCAB_REF: vo.vocab_reference = p.optarg; break;
		case OPT_SANDBOX: sandbox = p.optarg; break;
		case OPT_ALLOW_NO_SANDBOX: vo.allow_no_sandbox = true; break;
		case OPT_SANDBOX_MEMORY: sandbox_mem = p.optarg; break;
		case OPT_ATTEST: attest_out = p.optarg; break;
		case OPT_KEY: key_path = p.optarg; break;
		case OPT_OVERRIDE:
			if (nx_verify_policy_field(&vo.override_policy, p.optarg, &err)) {
				status = cli_usage(verb, "%s", err.message);
				goto out;
			}
			break;
		case OPT_MAX_MODEL:
			if (parse_size(&vo.max_model_bytes, p.optarg)) {
				status = cli_usage(verb, "--max-model-bytes: '%s' is not a size", p.optarg);
				goto out;
			}
			break;
		case OPT_MAX_LEAK:
			if (parse_size(&vo.max_leak_bytes, p.optarg) ||
			    vo.max_leak_bytes > NX_BUDGET_DEFAULT) {
				status = cli_usage(verb, "--max-leak-bytes: '%s' is not a size of at "
						   "most %u bytes (the budget can only be lowered)",
						   p.optarg, NX_BUDGET_DEFAULT);
				goto out;
			}
			break;
		case OPT_MAX_VOCAB:
			errno = 0;
			vo.max_vocab_tokens = strtoull(p.optarg, &end, 10);
			if (errno || end == p.optarg || *end || p.optarg[0] == '-' ||
			    !vo.max_vocab_tokens) {
				status = cli_usage(verb, "--max-vocab-tokens: '%s' is not a count "
						   "of tokens (>= 1)", p.optarg);
				goto out;
			}
			break;
		case OPT_TIME_BUDGET:
			errno = 0;
			wd.budget = strtod(p.optarg, &end);
			if (errno || end == p.optarg || *end || !(wd.budget > 0) ||
			    wd.budget > TIME_BUDGET_MAX) {
				status = cli_usage(verb, "--time-budget: '%s' is not a number of "
						   "seconds (0 < s <= %.0f)", p.optarg, TIME_BUDGET_MAX);
				goto out;
			}
			break;
		case OPT_TEACHER:
		case OPT_TERM:
		case OPT_ACCEPT_SHARED:
		case OPT_PUBKEY:
			if ((k == OPT_TEACHER ? vo.nteachers : k == OPT_TERM ? vo.nextra_terms :
			     k == OPT_ACCEPT_SHARED ? vo.nallow_shared : nkeys) >= LIST_MAX) {
				status = cli_usage(verb, "at most %d of each repeatable option", LIST_MAX);
				goto out;
			}
			if (k == OPT_TEACHER)
				teachers[vo.nteachers++] = p.optarg;
			else if (k == OPT_TERM)
				terms[vo.nextra_terms++] = p.optarg;
			else if (k == OPT_ACCEPT_SHARED)
				accept[vo.nallow_shared++] = p.optarg;
			else if (nx_key_load_public(&keys[nkeys], p.optarg, &err)) {
				status = cli_fail(verb->name, &err);
				goto out;
			} else {
				nkeys++;
			}
			break;
		}
	}
	if (k < 0) {
		status = k == -1 ? 0 : 2;
		goto out;
	}
	if (p.npos != 1) {
		status = cli_usage(verb, "expected one BUNDLE directory");
		goto out;
	}
	if (!attest_out != !key_path) {
		status = cli_usage(verb, "--attest OUT and --key KEY go together");
		goto out;
	}
	if ((status = cli_sandbox_opts(verb, &vo.sandbox, sandbox, &vo.sandbox_memory, sandbox_mem)))
		goto out;
	vo.keys = keys;
	vo.nkeys = nkeys;
	rt = cli_runtime_dir();
	vo.runtime_dir = rt;
	dfd = open(p.pos[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		nx_error_errno(&err, NX_EIO, errno, p.pos[0], "cannot open bundle directory %s", p.pos[0]);
		status = cli_fail(verb->name, &err);
		goto out;
	}
	wd.json = as_json;
	wd.bundle = p.pos[0];
	/* deadlines on the monotonic clock: a clock step must not fire one */
	if (!(rc = pthread_condattr_init(&ca))) {
		if (!(rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) &&
		    !(rc = pthread_cond_init(&wd.cv, &ca)))
			rc = pthread_create(&wd_thread, NULL, watchdog_main, &wd);
		pthread_condattr_destroy(&ca);
	}
	if (rc) {
		/* these return their error; errno is not theirs */
		nx_error_errno(&err, NX_EIO, rc, NULL, "cannot start the time-budget watchdog");
		status = cli_fail(verb->name, &err);
		goto out;
	}
	watching = true;
	vo.progress = on_progress;
	vo.progress_ctx = &wd;
	rc = nx_verify_bundle(&r, dfd, p.pos[0], &vo, &err);
	watchdog_stop(&wd, wd_thread);
	watching = false;
	cli_status(verb->name, NULL);
	if (rc) {
		status = cli_fail(verb->name, &err);
		goto out;
	}
	if (as_json) {
		if (nx_report_json(&json, r, &err)) {
			status = cli_fail(verb->name, &err);
			goto out;
		}
		printf("%s\n", json);
	} else {
		print_human(r, stdout);
	}
	if (attest_out && attest(attest_out, dfd, r, key_path, &err)) {
		status = cli_fail(verb->name, &err);
		goto out;
	}
	if (nx_report_verdict(r) == NX_VERDICT_FAIL)
		status = 1;
	else if (nx_report_verdict(r) == NX_VERDICT_WARN && vo.strict)
		status = 1;
out:
	if (watching)
		watchdog_stop(&wd, wd_thread);
	if (fflush(stdout) && !status)
		status = 3;
	for (i = 0; i < nkeys; i++)
		nx_key_free(keys[i]);
	if (dfd >= 0)
		close(dfd);
	nx_report_free(r);
	free(json);
	free(rt);
	return status;
}

const struct cli_verb cmd_verify = {
	.name = "verify",
	.args = "BUNDLE",
	.summary = "prove a bundle intact and teacher-free (Teacher Removal Validation)",
	.details =
	"Checks, in order: integrity (files == manifest, sizes then SHA-256, no\n"
	"symlink/hard link/special/writable file), signature (--pubkey), policy (the\n"
	"limits the build recorded in the manifest: options only tighten them,\n"
	"--override-policy loosens them), allowlist (TRV-1: layout, names, content by\n"
	"magic bytes, bin/ and lib/ one trusted runtime release: $NEXUS_RUNTIME_DIR or\n"
	"<prefix>/libexec/nexus, its trusted-runtimes list, or --trusted-list), code\n"
	"(TRV-2), budget, weights (TRV-3), size (TRV-4), functional (TRV-5).  Every\n"
	"finding has a stable code explained in docs/TRV.md.  Verdict PASS/WARN exits 0\n"
	"(WARN exits 1 with --strict), FAIL exits 1.  A check running past --time-budget\n"
	"seconds stops verify with a FAIL (check-over-budget).  --attest OUT --key KEY\n"
	"also writes the report as an in-toto Statement in a DSSE envelope signed with\n"
	"KEY (docs/FORMAT.md section 8.5), for 'nexus push --attest'.",
	.opts = opts,
	.run = run,
};
