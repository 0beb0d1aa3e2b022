/*
 * build_filter.c - the filter step (SPEC §2A.3): every named Python source
 * goes through nx_pyfilter_run, which removes imports of forbidden modules
 * (teacher_model, training_modules, ...) keeping line numbers, and fails when
 * a name they bound is still used - the code would break at serving time.
 */
#include "build_int.h"

#include <string.h>

#include "nexus/pyfilter.h"

int build_filter(struct build *b)
{
	const nx_workspace *ws = b->ws;
	size_t i, j;
	int rc = 0;

	for (i = 0; i < b->nin && !rc; i++) {
		struct build_input *in = &b->in[i];
		struct nx_pyfilter_result r = { 0 };

		if (in->kind != BUILD_PYTHON)
			continue;
		rc = nx_pyfilter_run(&r, in->buf, in->len,
				     (const char *const *)ws->forbidden_imports,
				     ws->nforbidden_imports, in->src, b->err);
		if (rc)
			break;
		for (j = 0; j < r.nremoved && !rc; j++)
			rc = build_removed_add(b, in->dst, r.removed[j].line, r.removed[j].module,
					       r.removed[j].statement_kind);
		if (!rc)
			rc = build_put(b, in->dst, r.text, r.len, false);
		nx_pyfilter_result_release(&r);
	}
	/* Non-Python sources (data files the code reads) are copied unchanged. */
	for (i = 0; i < b->nin && !rc; i++)
		if (b->in[i].kind == BUILD_TEXT && !strncmp(b->in[i].dst, "src/", 4))
			rc = build_put(b, b->in[i].dst, b->in[i].buf, b->in[i].len, false);
	return rc;
}
