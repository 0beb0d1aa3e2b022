/*
 * build_export.c - the export step: only the student's weights leave the
 * workspace.  nx_export_run (nexus/export.h) rewrites the student ONNX into
 * the stage - student.outputs extracted, metadata and doc strings stripped,
 * training_info and dead initializers dropped, external data gathered into
 * model/student_model.onnx.data - hashing while it writes.  Then every
 * student tensor is fingerprinted against the workspace's teacher files
 * (nexus/fingerprint.h): a copied teacher tensor fails the build unless
 * allow_shared_tensors names it.
 */
#include "build_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/export.h"
#include "nexus/fingerprint.h"


static int ext_open(void *ctx, int *out_fd, nx_error *err)
{
	struct build *b = ctx;

	return nx_stage_create_file(out_fd, b->stage, BUILD_STUDENT_DATA, false, err);
}

static bool shared_allowed(const struct build *b, const char *tensor)
{
	size_t i;

	for (i = 0; i < b->ws->nallow_shared; i++)
		if (nx_quant_same_tensor(b->ws->allow_shared[i].name, tensor))
			return true;
	return false;
}

/* The student exported to path, against the teachers in set; `when`
 * qualifies its tensors in the error ("" or " before quantization"). */
static int fingerprint_one(struct build *b, const nx_fp_set *set, const char *path,
			   const char *when)
{
	struct nx_fp_match *m = NULL;
	size_t n = 0, i;
	uint64_t pooled = 0;   /* the pooled small copies not allowed (bytes) */
	uint64_t sum = 0;      /* the one sum's parts not allowed (nexus/fingerprint.h) */
	char sum_said[96];
	int rc;

	rc = nx_fingerprint_student(&m, &n, set, nx_stage_dirfd(b->stage), path,
				    NX_FP_MIN_BYTES, b->err);
	for (i = 0; !rc && i < n; i++)
		if ((m[i].pooled || m[i].small || m[i].implied || m[i].units) &&
		    !shared_allowed(b, m[i].student_tensor)) {
			sum += m[i].sum_bytes;
			pooled += m[i].pooled ? m[i].bytes : 0;
		}
	snprintf(sum_said, sizeof(sum_said), " (%llu bytes of teacher weights in one sum, over %u)",
		 (unsigned long long)sum, NX_FP_SMALL_TOTAL_MAX);
	for (i = 0; !rc && i < n; i++)
		if (shared_allowed(b, m[i].student_tensor) ||
		    ((m[i].pooled || m[i].small || m[i].implied || m[i].units) &&
		     sum <= NX_FP_SMALL_TOTAL_MAX))
			continue;
		else if (m[i].units)
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "student tensor '%s'%s holds %u blocks of '%s' of the "
					  "teacher %s re-encoded (teacher-tensor-copied: its rows or "
					  "columns permuted, sign-flipped, scaled or quantized; %llu "
					  "bytes of teacher weights in one sum, over %u): the student "
					  "carries teacher weights; retrain it",
					  m[i].student_tensor, when, m[i].unit_blocks, m[i].teacher_tensor,
					  m[i].teacher_file, (unsigned long long)sum, NX_FP_SMALL_TOTAL_MAX);
		else if (m[i].approx)
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "student tensor '%s'%s is '%s' of the teacher %s "
					  "approximately (teacher-tensor-copied: correlation r=%.4f; "
					  "rounded, noised, quantized or scaled): the student carries "
					  "teacher weights; retrain it", m[i].student_tensor, when,
					  m[i].teacher_tensor, m[i].teacher_file, m[i].corr);
		else if (m[i].pooled)
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "the student%s holds about %llu bytes of the small teacher "
					  "tensors of the teacher %s in another form (teacher-values-"
					  "copied: %u of %u pooled elements in '%s', some from "
					  "'%s'; %llu bytes of teacher weights in one sum, over %u): "
					  "the student carries teacher weights; retrain it",
					  when, (unsigned long long)pooled, m[i].teacher_file,
					  m[i].value_hits, m[i].value_samples, m[i].student_tensor,
					  m[i].teacher_tensor, (unsigned long long)sum,
					  NX_FP_SMALL_TOTAL_MAX);
		else if (m[i].implied)
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "student tensor '%s'%s holds about %llu bytes of '%s' of the "
					  "teacher %s in place (teacher-values-copied: %llu bytes of "
					  "teacher weights in one sum, over %u): the student "
					  "carries teacher weights; retrain it", m[i].student_tensor, when,
					  (unsigned long long)m[i].bytes, m[i].teacher_tensor,
					  m[i].teacher_file, (unsigned long long)sum,
					  NX_FP_SMALL_TOTAL_MAX);
		else if (m[i].values)
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "student tensor '%s'%s holds %u of the %u values sampled "
					  "from '%s' of the teacher %s (teacher-values-copied: "
					  "reordered, interleaved, widened, cast or scaled): the "
					  "student carries teacher weights; retrain it",
					  m[i].student_tensor, when, m[i].value_hits,
					  m[i].value_samples, m[i].teacher_tensor, m[i].teacher_file);
		else
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "student tensor '%s'%s (%llu bytes) is identical to '%s' "
					  "of the teacher %s%s%s: the student carries teacher "
					  "weights; retrain it, or list it in allow_shared_tensors "
					  "with a reason", m[i].student_tensor, when,
					  (unsigned long long)m[i].bytes, m[i].teacher_tensor,
					  m[i].teacher_file, m[i].transposed ? " once transposed" : "",
					  m[i].small ? sum_said : "");
	nx_fp_matches_free(m, n);
	return rc;
}

/*
 * Every teacher file exists (the load step made sure of it).  With
 * export.quantize, the float export (what the quantizer read) is
 * fingerprinted too: the int8/int4 forms of a teacher tensor are known
 * only as whole tensors of a quantized tensor's shape, so a teacher layer
 * made a part of a bigger student weight (rows, columns, transposed) came
 * out of our own quantizer unrecognised and was signed (red team 7).  In
 * float32 every form the fingerprints know (bytes, chunks, casts, values
 * in any order) applies to it before it is rounded.
 */
static int fingerprint(struct build *b)
{
	nx_fp_set *set = NULL;
	size_t i;
	int rc;

	if (!b->ws->nteacher)
		return 0;
	if ((rc = nx_fp_set_new(&set, b->err)) != 0)
		return rc;
	if ((rc = nx_fp_set_quant_shapes(set, nx_stage_dirfd(b->stage), BUILD_STUDENT_DST,
					 b->err)) != 0)
		goto out;
	for (i = 0; i < b->ws->nteacher; i++) {
		if ((rc = nx_fingerprint_file(set, b->wsfd, b->ws->teacher[i], NX_FP_MIN_BYTES,
					      b->err)) != 0)
			goto out;
	}
	rc = fingerprint_one(b, set, BUILD_STUDENT_DST, "");
	if (!rc && b->float_staged)
		rc = fingerprint_one(b, set, BUILD_FLOAT_MODEL, " before quantization");
out:
	nx_fp_set_free(set);
	return rc;
}

/*
 * The seal step fsyncs every staged file before publishing; for a multi-GB
 * model that flush is seconds of disk writes (and sync_file_range blocks
 * while it queues them).  A thread flushes the exported files now, so the
 * disk writes while assemble runs the model in ONNX Runtime (CPU work) and
 * the seal's fsync finds little left to do.  Advisory: a failure here
 * changes nothing, the seal's fsync still decides.
 */
static void *writeback(void *arg)
{
	int fd = (int)(intptr_t)arg;

	(void)fdatasync(fd);
	close(fd);
	return NULL;
}

static void start_writeback(struct build *b, const char *relpath)
{
	int fd;

	if (b->nwb >= BUILD_WRITEBACK_MAX || b->opts->no_fsync)
		return;
	fd = openat(nx_stage_dirfd(b->stage), relpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	if (pthread_create(&b->wb[b->nwb], NULL, writeback, (void *)(intptr_t)fd) != 0) {
		close(fd);
		return;
	}
	b->nwb++;
}

int nx_build__export_join(struct build *b)
{
	unsigned char sum[NX_SHA256_LEN];
	nx_hash_follow *h = b->data_hash;
	int rc;

	if (!h)
		return 0;
	b->data_hash = NULL;
	rc = nx_hash_follow_finish(h, b->data_size, sum, b->err);
	return rc ? rc : nx_manifest_add_file(b->m, BUILD_STUDENT_DATA, sum, b->data_size, b->err);
}

void nx_build__writeback_join(struct build *b)
{
	while (b->nwb > 0)
		pthread_join(b->wb[--b->nwb], NULL);
}

/* Parameters and quantization of the exported student, not of the
 * combined graph it came from. */
static int summarise(struct build *b)
{
	const nx_onnx_summary *sum;
	char human[32];
	int fd, rc, n;

	fd = openat(nx_stage_dirfd(b->stage), BUILD_STUDENT_DST,
		    O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return nx_error_errno(b->err, NX_EIO, errno, BUILD_STUDENT_DST,
				      "cannot reopen the exported %s", BUILD_STUDENT_DST);
	rc = nx_onnx_open(&b->model, fd, BUILD_STUDENT_DST, b->err);
	close(fd);
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
		return nx_error_oom(b->err, NULL);
	return 0;
}

int nx_build__export(struct build *b)
{
	const nx_workspace *ws = b->ws;
	struct nx_export_opts o;
	struct nx_export_result r;
	int fd = -1, rc;

	memset(&r, 0, sizeof(r));
	nx_build__export_opts(b, &o, NX_EXPORT_DIGEST_DEFER, ext_open);
	o.quantize = (enum nx_export_quantize)ws->export_quantize;
	o.quantize_exclude = (const char *const *)ws->quantize_exclude;
	o.nquantize_exclude = ws->nquantize_exclude;
	o.quantize_min_elements = ws->quantize_min_elements;
	o.quantize_block = ws->quantize_block;
	/* A failed write (a full disk) names the bundle file. */
	b->model_name = nx_build__bundle_file(b, BUILD_STUDENT_DST);
	b->data_name = nx_build__bundle_file(b, BUILD_STUDENT_DATA);
	if (!b->model_name || !b->data_name)
		return nx_error_oom(b->err, NULL);
	o.dst_name = b->model_name;
	o.ext_name = b->data_name;
	if ((rc = nx_stage_create_file(&fd, b->stage, BUILD_STUDENT_DST, false, b->err)) != 0)
		return rc;
	/* Not ONNX, truncated, a missing output, a teacher part still needed:
	 * nx_export_run says what and where (err->offset). */
	rc = nx_export_run(&r, b->student_fd, ws->student.model, fd, &o, b->err);
	close(fd);
	if (rc)
		goto out;
	start_writeback(b, BUILD_STUDENT_DST);
	if (r.has_external)
		start_writeback(b, BUILD_STUDENT_DATA);
	if ((rc = nx_manifest_add_file(b->m, BUILD_STUDENT_DST, r.sha256, r.size, b->err)) != 0)
		goto out;
	/* The weights file's digest is still being computed, while the next
	 * steps run; nx_build__export_join adds it to the manifest. */
	b->data_hash = r.ext_pending;
	b->data_size = r.ext_size;
	r.ext_pending = NULL;
	if ((rc = summarise(b)) != 0)
		goto out;
	/* the float student too, for the accuracy gate (build_quant.c) and
	 * the fingerprints */
	if (ws->export_quantize != NX_EXPORT_QUANT_NONE && (rc = nx_build__quant_export_float(b)) != 0)
		goto out;
	if ((rc = fingerprint(b)) != 0)
		goto out;
	/* The removal report moves into the result, for `nexus build --json`. */
	if (!(b->res->exported = malloc(sizeof(r)))) {
		rc = nx_error_oom(b->err, NULL);
		goto out;
	}
	*b->res->exported = r;
	return 0;
out:
	nx_export_result_release(&r);
	return rc;
}
