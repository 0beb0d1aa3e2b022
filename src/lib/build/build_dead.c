/*
 * build_dead.c - parameters the outputs cannot see are stored as zeros.
 *
 * A real student carries some: a separate key bias before softmax (every
 * Hugging Face BERT layer) adds the same number q.b to every score of a
 * query, which softmax ignores; a bias before an InstanceNorm or GroupNorm
 * is removed with the mean.  Trained, such a vector is not zeros, and
 * verify's liveness check rightly calls it dead: 3 KiB per layer that no
 * output reveals (docs/TRV.md, "Re-encoded teacher tensors").  Zeros carry
 * nothing, so the build stores zeros in its place and says so.
 *
 * The staged bundle's own runtime decides, in the sandbox, after the
 * golden outputs are written: `nexus_cli liveness --zero-check` (src/
 * runtime/liveness.c) names each dead initializer with the change of the
 * outputs when it is zeros, on the selftest texts and on random token
 * sequences.  One is zeroed when
 *   - it is dead (noise of its own scale moved the outputs by < 1e-6),
 *   - zeros move them by < 1e-6 too, on the random inputs as well, and
 *   - it is a vector (at most one dimension above 1): a bias.
 * A dead matrix is no parameter of any architecture: it stays, and the
 * self-verification fails on it (dead-initializer), so its author hears of
 * it instead of shipping a graph that silently computes nothing with it.
 *
 * The bytes are overwritten in place (raw_data in the model, or the
 * external data file), the files re-hashed, the selftest recomputed by
 * the runtime and compared with the first golden outputs (relative change
 * < 1e-6, else the build fails), and config/selftest.json replaced.
 */
#include "build_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/functional.h"

#define DEAD_REL_MAX NX_FUNCTIONAL_LIVE_REL_MIN   /* the liveness threshold */
#define DEAD_WALL_MS (2 * NX_FUNCTIONAL_LIVENESS_MS)
#define DEAD_ZERO_CHUNK (1u << 20)

/* One line of `nexus_cli liveness --zero-check`: a dead vector zeros cannot tell. */
static bool zeroable(json_t *j, const nx_onnx_summary *sum, const struct nx_onnx_tensor **out)
{
	const char *name = json_string_value(json_object_get(j, "initializer"));
	const char *verdict = json_string_value(json_object_get(j, "verdict"));
	json_t *zc = json_object_get(j, "zero_change"), *ch = json_object_get(j, "change");
	size_t i, d, wide;

	if (!name || !verdict || strcmp(verdict, "dead") || !json_is_number(zc) ||
	    !json_is_number(ch) || !(json_number_value(zc) < DEAD_REL_MAX) ||
	    !(json_number_value(ch) < DEAD_REL_MAX))
		return false;
	for (i = 0; i < sum->ntensors; i++) {
		const struct nx_onnx_tensor *t = &sum->tensors[i];

		if (t->attribute || t->sparse || strcmp(t->scope, "graph") || strcmp(t->name, name))
			continue;
		for (d = 0, wide = 0; d < t->ndims; d++)
			wide += t->dims[d] > 1;
		if (wide > 1 || !nx_onnx_dtype_bits(t->data_type))
			return false;
		*out = t;
		return true;
	}
	return false;
}

static int write_zeros(struct build *b, int fd, uint64_t off, uint64_t len, const char *path)
{
	static const unsigned char zeros[DEAD_ZERO_CHUNK];

	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		ssize_t w = pwrite(fd, zeros, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return nx_error_errno(b->err, NX_EIO, w < 0 ? errno : EIO, path,
					      "cannot write staged %s", path);
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

/* Zero tensor t in the staged model or its data file; *touched_data set
 * when the data file changed. */
/* Bytes of t's contents; sub-byte types (int4, uint4, float4) packed. */
static uint64_t tensor_bytes(const struct nx_onnx_tensor *t)
{
	return (t->nelem * nx_onnx_dtype_bits(t->data_type) + 7) / 8;
}

static int zero_tensor(struct build *b, int model_fd, int data_fd,
		       const struct nx_onnx_tensor *t, bool *touched_data)
{
	uint64_t bytes = tensor_bytes(t);

	if (t->location == NX_TENSOR_INLINE) {
		/* a canonical model holds each tensor as raw_data (verify's
		 * onnx-not-canonical): its contents are one range of the file */
		if (t->contents_encoded || t->contents_length != bytes)
			return nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					    "the dead initializer '%s' is not stored as raw_data, so "
					    "it cannot be zeroed; re-export the student", t->name);
		return write_zeros(b, model_fd, t->contents_offset, bytes, BUILD_STUDENT_DST);
	}
	if (data_fd < 0 || !t->ext_location || strcmp(t->ext_location, NX_EXPORT_DATA_NAME) ||
	    t->ext_offset < 0 || (t->ext_length >= 0 && (uint64_t)t->ext_length != bytes))
		return nx_error_set(b->err, NX_EINTERNAL, b->ws->student.model, 0, -1,
				    "the dead initializer '%s' is not in %s", t->name,
				    NX_EXPORT_DATA_NAME);
	*touched_data = true;
	return write_zeros(b, data_fd, (uint64_t)t->ext_offset, bytes, BUILD_STUDENT_DATA);
}

static int rehash(struct build *b, int fd, const char *path)
{
	unsigned char sum[NX_SHA256_LEN];
	struct stat st;
	int rc;

	if (fstat(fd, &st) != 0)
		return nx_error_errno(b->err, NX_EIO, errno, path, "cannot stat staged %s", path);
	if ((rc = nx_sha256_fd(sum, fd, (uint64_t)st.st_size, path, b->err)))
		return rc;
	return nx_manifest_update_file(b->m, path, sum, (uint64_t)st.st_size, b->err);
}

static int record(struct build *b, const struct nx_onnx_tensor *t, json_t *j)
{
	struct nx_build_result *r = b->res;
	struct nx_build_zeroed *z;

	if (NX_ARRAY_PUSH_EXACT(r->zeroed, r->nzeroed))
		return nx_error_oom(b->err, NULL);
	z = r->zeroed + r->nzeroed;
	z->bytes = tensor_bytes(t);
	z->change = json_number_value(json_object_get(j, "change"));
	z->zero_change = json_number_value(json_object_get(j, "zero_change"));
	if (!(z->name = strdup(t->name)))
		return nx_error_oom(b->err, NULL);
	r->nzeroed++;
	return 0;
}

/* Relative L2 change of every number of every case from a to b. */
static double outputs_change(const char *a, size_t alen, const char *c, size_t clen)
{
	json_t *ja = json_loadb(a, alen, 0, NULL), *jc = json_loadb(c, clen, 0, NULL);
	double *va = NULL, *vc = NULL, d = 0, n = 0;
	size_t na = 0, nc = 0, capa = 0, capc = 0, i;
	bool ok;

	ok = ja && jc && !nx_build__flatten(json_object_get(ja, "cases"), &va, &na, &capa) &&
	     !nx_build__flatten(json_object_get(jc, "cases"), &vc, &nc, &capc) && na == nc;
	for (i = 0; ok && i < na; i++) {
		d += (va[i] - vc[i]) * (va[i] - vc[i]);
		n += va[i] * va[i];
	}
	free(va);
	free(vc);
	json_decref(ja);
	json_decref(jc);
	return ok ? sqrt(d) / (sqrt(n) + 1e-30) : INFINITY;
}

/* The tensors to zero, from the liveness report in out[0..len). */
static int pick(struct build *b, const char *out, size_t len,
		const struct nx_onnx_tensor ***picked, json_t ***lines, size_t *n)
{
	const nx_onnx_summary *sum = nx_onnx_summary_get(b->model);
	const char *p, *end = out + len, *nl;

	*n = 0;
	for (p = out; p < end; p = nl + 1) {
		const struct nx_onnx_tensor *t;
		json_t *j;

		if (!(nl = memchr(p, '\n', (size_t)(end - p))))
			nl = end;
		if (!(j = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, NULL)))
			continue;
		if (!zeroable(j, sum, &t)) {
			json_decref(j);
			continue;
		}
		if (NX_ARRAY_PUSH_EXACT(*picked, *n) || NX_ARRAY_PUSH_EXACT(*lines, *n)) {
			json_decref(j);
			return nx_error_oom(b->err, NULL);
		}
		(*picked)[*n] = t;
		(*lines)[(*n)++] = j;
	}
	return 0;
}

int nx_build__zero_dead(struct build *b, const char *golden, size_t glen)
{
	char budget[32];
	const char *args[] = { "liveness", "--zero-check", "--budget-ms", budget, "--bundle",
			       NX_SANDBOX_BUNDLE, NULL };
	struct nx_sandbox_result r = {0}, again = {0};
	struct nx_sandbox_opts so;
	const struct nx_onnx_tensor **picked = NULL;
	json_t **lines = NULL;
	size_t n = 0, i;
	int model_fd = -1, data_fd = -1, rc;
	bool touched_data = false;
	double moved;

	if (!b->model)
		return 0;
	snprintf(budget, sizeof(budget), "%llu", (unsigned long long)nx_functional_liveness_ms());
	if ((rc = nx_build__sandbox_opts(b, &so, DEAD_WALL_MS)))
		return rc;
	if ((rc = nx_sandbox_run_cli(&r, &so, nx_stage_path(b->stage), args, b->err)))
		goto out;
	/* exit 0: nothing is dead; a run that did not finish the
	 * self-verification repeats and reports (liveness-failed) */
	if (!r.exited || r.status == 0 || r.timed_out || r.output_capped)
		goto out;
	if ((rc = pick(b, r.out ? r.out : "", r.out_len, &picked, &lines, &n)) || !n)
		goto out;
	/* the data file's digest is final only now */
	if ((rc = nx_build__export_join(b)))
		goto out;
	model_fd = openat(nx_stage_dirfd(b->stage), BUILD_STUDENT_DST,
			  O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (model_fd < 0) {
		rc = nx_error_errno(b->err, NX_EIO, errno, BUILD_STUDENT_DST,
				    "cannot open the staged %s", BUILD_STUDENT_DST);
		goto out;
	}
	data_fd = openat(nx_stage_dirfd(b->stage), BUILD_STUDENT_DATA,
			 O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	for (i = 0; !rc && i < n; i++)
		if (!(rc = zero_tensor(b, model_fd, data_fd, picked[i], &touched_data)))
			rc = record(b, picked[i], lines[i]);
	if (!rc)
		rc = rehash(b, model_fd, BUILD_STUDENT_DST);
	if (!rc && touched_data)
		rc = rehash(b, data_fd, BUILD_STUDENT_DATA);
	/* the golden outputs of the model as published, and proof that all
	 * the zeros together changed nothing the selftest sees */
	if (!rc)
		rc = nx_build__selftest_run(b, &again);
	if (!rc && !((moved = outputs_change(golden, glen, again.out, again.out_len)) <
		     DEAD_REL_MAX))
		rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
				  "storing the %zu dead initializer(s) as zeros (first '%s') "
				  "changed the selftest outputs by %.3g (relative): they are not "
				  "dead together; retrain the student without them", n,
				  picked[0]->name, moved);
	if (!rc)
		rc = nx_build__replace(b, NX_BUNDLE_SELFTEST, again.out, again.out_len);
out:
	for (i = 0; i < n; i++)
		json_decref(lines[i]);
	free(lines);
	free(picked);
	if (model_fd >= 0)
		close(model_fd);
	if (data_fd >= 0)
		close(data_fd);
	nx_sandbox_result_release(&again);
	nx_sandbox_result_release(&r);
	return rc;
}
