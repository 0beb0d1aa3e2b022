/*
 * build_export.c - the export step: only the student's weights leave the
 * workspace.  Today the student ONNX is validated and copied as is; graph
 * surgery (extracting student.outputs, stripping metadata) replaces
 * export_copy() here later without touching the other steps.
 */
#include "build_int.h"

#include <stdlib.h>
#include <string.h>

#define BUILD_STUDENT_DST "model/student_model.onnx"

/* The copy: one read of the source, hashed while copied. */
static int export_copy(struct build *b)
{
	return build_copy(b, BUILD_STUDENT_DST, b->student_fd, (uint64_t)b->student_st.st_size,
			  b->ws->student.model, false);
}

int build_export(struct build *b)
{
	const nx_onnx_summary *sum;
	char human[32];
	int rc, n;

	/* Not ONNX or truncated: nx_onnx_open says where (err->offset). */
	rc = nx_onnx_open(&b->model, b->student_fd, b->ws->student.model, b->err);
	if (rc)
		return rc;
	sum = nx_onnx_summary_get(b->model);
	n = nx_human_count(human, sizeof(human), sum->parameters);
	if (n < 0 || (size_t)n >= sizeof(human))
		return nx_error_set(b->err, NX_EINTERNAL, b->ws->student.model, 0, -1,
				    "cannot format the parameter count");
	b->res->parameter_count = sum->parameters;
	b->res->parameters = strdup(human);
	b->res->quantization = strdup(sum->quantization ? sum->quantization : "none");
	if (!b->res->parameters || !b->res->quantization)
		return nx_error_set(b->err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	return export_copy(b);
}
