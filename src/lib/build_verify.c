/*
 * build_verify.c - the build's self-verification: the published bundle must
 * pass `nexus verify`, so the same checks run on the sealed stage, with the
 * workspace's own extra terms, teacher files and size limits.
 */
#include "build_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/sign.h"
#include "nexus/verify.h"

int build_verify(struct build *b)
{
	const nx_workspace *ws = b->ws;
	struct nx_verify_opts vo;
	nx_report *rep = NULL;
	char **teachers = NULL;
	nx_key *signer = NULL;
	size_t i, nteachers = 0, nfail = 0, n;
	const struct nx_finding *f;
	int rc;

	rc = nx_stage_seal(b->stage, b->err);
	if (rc)
		return rc;
	/* Teacher paths are workspace-relative; verify opens them by path. */
	teachers = calloc(ws->nteacher + 1, sizeof(*teachers));
	if (!teachers)
		return nx_error_set(b->err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	for (i = 0; i < ws->nteacher; i++) {
		if (!b->teacher_present[i])
			continue;
		if (asprintf(&teachers[nteachers], "%s/%s", b->wspath, ws->teacher[i]) < 0) {
			rc = nx_error_set(b->err, NX_ENOMEM, NULL, 0, -1, "out of memory");
			goto out;
		}
		nteachers++;
	}
	nx_verify_opts_init(&vo);
	vo.extra_terms = (const char *const *)ws->forbidden_terms;
	vo.nextra_terms = ws->nforbidden_terms;
	vo.teachers = (const char *const *)teachers;
	vo.nteachers = nteachers;
	vo.runtime_dir = b->opts->runtime_dir;
	vo.max_model_bytes = ws->max_model_bytes;
	vo.size_slack = ws->size_slack;
	vo.functional = b->opts->functional;
	/* A signed build checks its signature with the public half of its key. */
	if (b->opts->key) {
		signer = (nx_key *)b->opts->key;
		vo.keys = &signer;
		vo.nkeys = 1;
	}
	rc = nx_verify_bundle(&rep, nx_stage_dirfd(b->stage), nx_stage_path(b->stage), &vo, b->err);
	if (rc)
		goto out;
	f = nx_report_findings(rep, &n);
	for (i = 0; i < n; i++)
		nfail += f[i].severity == NX_SEV_FAIL;
	if (strcmp(nx_report_verdict(rep), "FAIL") == 0)
		rc = nx_error_set(b->err, NX_ECHECK, b->opts->output, 0, -1,
				  "self-verification failed with %zu finding(s); nothing was "
				  "published (see the findings above, or docs/TRV.md)", nfail);
	if (b->opts->report) {
		*b->opts->report = rep;
		rep = NULL;
	}
out:
	nx_report_free(rep);
	for (i = 0; i < nteachers; i++)
		free(teachers[i]);
	free(teachers);
	return rc;
}
