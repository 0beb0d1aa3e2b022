/*
 * build_quant.c - export.quantize's accuracy gate.
 *
 * A quantized student must still give the answers the float one gives.
 * The export step also exports the student without quantization into
 * model/.float/ (the same extraction, so the same graph but for the int8
 * forms).  After the bundle's runtime has produced the golden selftest
 * outputs of the quantized model, the float pair is swapped in
 * (renameat2 RENAME_EXCHANGE, so the runtime loads it under the bundle's
 * own paths), the same selftest runs in the same sandbox, the pair is
 * swapped back and the float files are deleted before anything is sealed
 * or listed.  The two sets of outputs are then compared input by input:
 *  - an input with a label (classification): the labels must agree on all
 *    but export.quantize_tolerance of the inputs;
 *  - a decoder's (generation): its greedy ids (the selftest's first
 *    RT_SELFTEST_GEN_TOKENS new tokens) must be the same, on all but
 *    quantize_tolerance of the inputs, as labels;
 *  - otherwise (embedding, raw): the cosine of the input's outputs (all
 *    output tensors, flattened) must be at least 1 - quantize_tolerance.
 * The figures go into the build result (nexus build prints them) and into
 * the error when the gate fails.
 */
#include "build_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "nexus/export.h"

#define FLOAT_MODEL BUILD_FLOAT_MODEL
#define FLOAT_DATA BUILD_FLOAT_DIR "/" NX_EXPORT_DATA_NAME
#define QUANT_MODEL "model/student_model.onnx"
#define QUANT_DATA "model/" NX_EXPORT_DATA_NAME

static int float_ext_open(void *ctx, int *out_fd, nx_error *err)
{
	struct build *b = ctx;

	return nx_stage_create_file(out_fd, b->stage, FLOAT_DATA, false, err);
}

int nx_build__quant_export_float(struct build *b)
{
	struct nx_export_result r = { .size = 0 };
	struct nx_export_opts o;
	int fd, rc;

	nx_build__export_opts(b, &o, NX_EXPORT_DIGEST_NONE, float_ext_open);
	o.dst_name = FLOAT_MODEL;
	o.ext_name = FLOAT_DATA;
	if ((rc = nx_stage_create_file(&fd, b->stage, FLOAT_MODEL, false, b->err)) != 0)
		return rc;
	b->float_staged = true;
	rc = nx_export_run(&r, b->student_fd, b->ws->student.model, fd, &o, b->err);
	close(fd);
	nx_export_result_release(&r);
	return rc;
}

static bool exists(int dirfd, const char *path)
{
	struct stat st;

	return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Exchange the float and the quantized files (again: back).  The float
 * model may have a data file where the quantized one has none (an int8
 * tensor under the external threshold): that one is moved, not exchanged. */
static int swap(struct build *b)
{
	int dirfd = nx_stage_dirfd(b->stage);
	bool fdata = exists(dirfd, FLOAT_DATA), qdata = exists(dirfd, QUANT_DATA);

	if (renameat2(dirfd, FLOAT_MODEL, dirfd, QUANT_MODEL, RENAME_EXCHANGE) != 0 ||
	    ((fdata || qdata) &&
	     renameat2(dirfd, fdata ? FLOAT_DATA : QUANT_DATA, dirfd, fdata ? QUANT_DATA : FLOAT_DATA,
		       fdata && qdata ? RENAME_EXCHANGE : RENAME_NOREPLACE) != 0))
		return nx_error_errno(b->err, NX_EIO, errno, nx_stage_path(b->stage),
				      "cannot swap the float and quantized student in %s",
				      nx_stage_path(b->stage));
	return 0;
}

static void remove_float(struct build *b)
{
	int dirfd = nx_stage_dirfd(b->stage);

	unlinkat(dirfd, FLOAT_MODEL, 0);
	unlinkat(dirfd, FLOAT_DATA, 0);
	unlinkat(dirfd, BUILD_FLOAT_DIR, AT_REMOVEDIR);
	b->float_staged = false;
}

/* Every number of v (nested arrays, objects of arrays) appended to *a. */
int nx_build__flatten(json_t *v, double **a, size_t *n, size_t *cap)
{
	size_t i;
	const char *k;
	json_t *x;

	if (json_is_number(v)) {
		if (*n == *cap && nx_array_grow(a, cap, *n + 1, sizeof(**a), SIZE_MAX))
			return -1;
		(*a)[(*n)++] = json_number_value(v);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if (nx_build__flatten(x, a, n, cap))
				return -1;
	} else if (json_is_object(v)) {
		json_object_foreach(v, k, x)
			if (nx_build__flatten(x, a, n, cap))
				return -1;
	}
	return 0;
}

static double cosine(json_t *qo, json_t *fo, bool *ok)
{
	double *a = NULL, *c = NULL, dot = 0, na = 0, nc = 0;
	size_t n = 0, m = 0, capa = 0, capc = 0, i;

	*ok = !nx_build__flatten(qo, &a, &n, &capa) && !nx_build__flatten(fo, &c, &m, &capc) &&
	      n == m;
	for (i = 0; *ok && i < n; i++) {
		dot += a[i] * c[i];
		na += a[i] * a[i];
		nc += c[i] * c[i];
	}
	free(a);
	free(c);
	if (!*ok)
		return 0;
	if (na == 0 || nc == 0)
		return na == nc ? 1.0 : 0.0;
	return dot / sqrt(na) / sqrt(nc);
}

static int compare(struct build *b, const char *golden, size_t glen, const char *fl, size_t flen)
{
	json_t *q = json_loadb(golden, glen, 0, NULL), *f = json_loadb(fl, flen, 0, NULL);
	json_t *qc = json_object_get(q, "cases"), *fc = json_object_get(f, "cases");
	struct nx_build_result *res = b->res;
	double tol = b->ws->quantize_tolerance, min_cos = 1.0;
	size_t i, labels = 0;
	int rc = 0;

	if (!json_is_array(qc) || !json_is_array(fc) || json_array_size(qc) != json_array_size(fc) ||
	    !json_array_size(qc)) {
		rc = nx_error_set(b->err, NX_EINTERNAL, b->ws->student.model, 0, -1,
				  "the selftest outputs of the float and quantized student "
				  "cannot be compared");
		goto out;
	}
	res->quant_cases = json_array_size(qc);
	res->quant_agree = 0;
	for (i = 0; i < res->quant_cases; i++) {
		json_t *a = json_array_get(qc, i), *c = json_array_get(fc, i);
		const char *la = json_string_value(json_object_get(a, "label"));
		const char *lc = json_string_value(json_object_get(c, "label"));
		json_t *ia = json_object_get(a, "ids"), *ic = json_object_get(c, "ids");
		bool ok;
		double cs = cosine(json_object_get(a, "outputs"), json_object_get(c, "outputs"), &ok);

		if (!ok) {
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "the quantized student's outputs for selftest input %zu "
					  "do not have the float student's shape", i + 1);
			goto out;
		}
		if (la && lc) {
			labels++;
			res->quant_agree += !strcmp(la, lc);
		} else if (json_is_array(ia) && json_is_array(ic)) {
			/* a decoder: its outputs are {}, the greedy tokens are the answer */
			labels++;
			res->quant_agree += json_equal(ia, ic);
		}
		if (cs < min_cos)
			min_cos = cs;
	}
	res->quant_min_cosine = min_cos;
	if (labels ? (double)(labels - res->quant_agree) > tol * (double)labels + 1e-9
		   : min_cos < 1.0 - tol)
		rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
				  "export.quantize %s changes the student's answers beyond "
				  "export.quantize_tolerance %g: on the %zu selftest inputs the "
				  "labels (a decoder's greedy tokens) agree on %zu%s, the lowest "
				  "cosine of the outputs is %.6f; "
				  "list the sensitive layers in export.quantize_exclude, raise the "
				  "tolerance, or set export.quantize: none",
				  nx_export_quantize_names[b->ws->export_quantize], tol,
				  res->quant_cases, res->quant_agree, labels ? "" : " (no labels)",
				  min_cos);
out:
	json_decref(q);
	json_decref(f);
	return rc;
}

int nx_build__quant_gate(struct build *b, const char *golden, size_t len)
{
	struct nx_sandbox_result r = {0};
	int rc, back;

	if ((rc = swap(b)) != 0)
		return rc;
	rc = nx_build__selftest_run(b, &r);
	back = swap(b);
	remove_float(b);
	if (!rc)
		rc = back;
	if (!rc)
		rc = compare(b, golden, len, r.out, r.out_len);
	nx_sandbox_result_release(&r);
	return rc;
}
