/*
 * verify_teacher.c - teacher fingerprinting (part of `weights`): every
 * student tensor of at least NX_FP_MIN_BYTES is hashed and compared with the
 * tensors of each teacher file (ONNX, PyTorch zip, safetensors: see
 * nexus/fingerprint.h).  A byte-identical tensor means the student carries a
 * piece of the teacher, unless the workspace allowed that tensor by name.
 * A teacher that cannot be read is a FAIL: "could not look" is no "clean".
 */
#include "verify_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/export.h"
#include "nexus/fingerprint.h"

#define CHECK NX_CHECK_WEIGHTS

/*
 * Is student tensor `tensor` allowed to equal a teacher tensor?  An allowed
 * NAME covers the tensor of that name or the one the quantizer writes for
 * it (NAME/int8, /int4, /fp16), but ONE of them: the quantizer replaces
 * NAME, so a student holding several is not what it wrote, and red team 10
 * carried four teacher layers under one accepted name so.  used[i] is the
 * student tensor allowed name i went to first (small copies are judged
 * first, then the rest, each in the student's order: deterministic), or
 * VOIDED when the name covers nothing (see accepted_once).  A name given
 * twice is one name: the first entry decides.
 */
static const char VOIDED[] = "";

static bool allowed(const struct vfy_ctx *c, const char **used, const char *tensor)
{
	size_t i, j;

	for (i = 0; i < c->pol.nallow_shared; i++) {
		if (!nx_quant_same_tensor(c->pol.allow_shared[i], tensor))
			continue;
		for (j = 0; j < i && strcmp(c->pol.allow_shared[j], c->pol.allow_shared[i]); j++)
			;
		if (j < i || used[i] == VOIDED)
			continue;
		if (!used[i])
			used[i] = tensor;
		if (!strcmp(used[i], tensor))
			return true;
	}
	return false;
}

/*
 * The matches name student tensors, and names are unique only within one
 * graph: a subgraph (an If's branches) may hold its own initializer of an
 * accepted name (review of red team 10's fix).  A name that more than one
 * tensor of the model bears, counting the quantizer's names for it, covers
 * none of them.
 */
static void accepted_once(const struct vfy_ctx *c, const char **used)
{
	const nx_onnx_summary *s = c->onnx ? nx_onnx_summary_get(c->onnx) : NULL;
	size_t i, k, count;

	for (i = 0; i < c->pol.nallow_shared; i++) {
		for (k = count = 0; s && k < s->ntensors; k++)
			count += nx_quant_same_tensor(c->pol.allow_shared[i], s->tensors[k].name);
		if (!s || count > 1)
			used[i] = VOIDED;
	}
}

/*
 * Whole copies of teacher tensors under NX_FP_MIN_BYTES count together
 * (nexus/fingerprint.h): one finding naming the first of them, when the
 * ones allowed_shared_tensors does not name still add up to more than
 * NX_FP_SMALL_TOTAL_MAX bytes.
 */
static int small_copies(struct vfy_ctx *c, const char **used, const struct nx_fp_match *m,
			size_t n)
{
	const struct nx_fp_match *first = NULL;
	uint64_t total = 0;
	size_t i, count = 0;
	int rc = 0;

	for (i = 0; !rc && i < n; i++) {
		if (!m[i].small)
			continue;
		if (allowed(c, used, m[i].student_tensor)) {
			rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_TEACHER_TENSOR_ALLOWED, NX_MODEL_PATH, 0,
					   "student tensor '%s' equals '%s' of teacher %s (allowed by "
					   "allow_shared_tensors)", m[i].student_tensor,
					   m[i].teacher_tensor, m[i].teacher_file);
			continue;
		}
		total += m[i].bytes;
		count++;
		if (!first)
			first = &m[i];
	}
	if (rc || total <= NX_FP_SMALL_TOTAL_MAX)
		return rc;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
			     "%zu student tensors are whole copies of small teacher tensors (each "
			     "under %d bytes), %llu bytes of teacher weights in all, over the %u "
			     "allowed: e.g. '%s' (%llu bytes) equals '%s' of teacher %s%s%s",
			     count, NX_FP_MIN_BYTES, (unsigned long long)total, NX_FP_SMALL_TOTAL_MAX,
			     first->student_tensor, (unsigned long long)first->bytes,
			     first->teacher_tensor, first->teacher_file,
			     first->transposed ? " once transposed" : "",
			     first->approx ? " approximately (correlation)" : "");
}

/*
 * The small teacher tensors pooled (nexus/fingerprint.h: pooled): the
 * student tensors' shares, those allow_shared_tensors names left out, one
 * FAIL naming the largest when the rest imply more than
 * NX_FP_SMALL_TOTAL_MAX bytes.
 */
static int pooled_copies(struct vfy_ctx *c, const char **used, const struct nx_fp_match *m,
			 size_t n)
{
	const struct nx_fp_match *top = NULL;
	uint64_t total = 0;
	size_t i, count = 0;
	int rc = 0;

	for (i = 0; !rc && i < n; i++) {
		if (!m[i].pooled)
			continue;
		if (allowed(c, used, m[i].student_tensor)) {
			rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_TEACHER_TENSOR_ALLOWED, NX_MODEL_PATH, 0,
					   "student tensor '%s' holds %llu bytes of small teacher "
					   "tensors of teacher %s in another form (allowed by "
					   "allow_shared_tensors)", m[i].student_tensor,
					   (unsigned long long)m[i].bytes, m[i].teacher_file);
			continue;
		}
		total += m[i].bytes;
		count++;
		if (!top || m[i].bytes > top->bytes)
			top = &m[i];
	}
	if (rc || total <= NX_FP_SMALL_TOTAL_MAX)
		return rc;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_VALUES_COPIED, NX_MODEL_PATH, 0,
			     "the student holds %llu of the %u elements of the small teacher "
			     "tensors pooled of teacher %s (about %llu bytes, over the %u-byte "
			     "bound for small copies), in another form or order (reversed, negated, "
			     "scaled, shifted, rounded, cut up or interleaved): %zu student tensors, "
			     "the most in '%s' (%u elements), some from '%s'",
			     (unsigned long long)(total / 4), top->value_samples, top->teacher_file,
			     (unsigned long long)total, NX_FP_SMALL_TOTAL_MAX, count,
			     top->student_tensor, top->value_hits, top->teacher_tensor);
}

int nx_vfy__teacher(struct vfy_ctx *c, nx_error *err)
{
	struct nx_fp_match *m = NULL;
	const char **used = NULL;
	nx_fp_set *set = NULL;
	size_t i, n = 0, nread = 0;
	nx_error e;
	int rc;

	/* A teacher that is a checkpoint of a format nobody can read is reported,
	 * never skipped; see the file comment. */

	rc = nx_fp_set_new(&set, err);
	if (rc)
		return rc;
	/* the int8 forms of teacher tensors the student's int8 tensors may be */
	nx_error_clear(&e);
	if (nx_fp_set_quant_shapes(set, c->dirfd, NX_MODEL_PATH, &e) != 0) {
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_CHECK_FAILED, NX_MODEL_PATH, 0,
				   "the student's tensors could not be fingerprinted: %s", e.message);
		goto out;
	}
	for (i = 0; i < c->opts->nteachers; i++) {
		const char *t = c->opts->teachers[i];

		nx_error_clear(&e);
		if (nx_fingerprint_file(set, AT_FDCWD, t, NX_FP_MIN_BYTES, &e) != 0) {
			/* Missing or unreadable: an environment error, like a missing
			 * bundle; unreadable *content* is a finding. */
			if (e.code == NX_ENOMEM || e.code == NX_EIO) {
				rc = nx_error_set(err, e.code, t, 0, -1, "%s", e.message);
				goto out;
			}
			/* e.message names the teacher already, most of the time */
			rc = strstr(e.message, t)
				? nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_UNREADABLE, NULL, 0,
						"no fingerprint taken: %s", e.message)
				: nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_UNREADABLE, NULL, 0,
						"teacher %s could not be fingerprinted: %s", t, e.message);
			if (rc)
				goto out;
			continue;
		}
		nread++;
	}
	if (!nread)
		goto out;
	nx_error_clear(&e);
	if (nx_fingerprint_student(&m, &n, set, c->dirfd, NX_MODEL_PATH, NX_FP_MIN_BYTES, &e) != 0) {
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_CHECK_FAILED, NX_MODEL_PATH, 0,
				   "the student's tensors could not be fingerprinted: %s", e.message);
		goto out;
	}
	if (c->pol.nallow_shared && !(used = calloc(c->pol.nallow_shared, sizeof(*used)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	if (used)
		accepted_once(c, used);
	rc = small_copies(c, used, m, n);
	if (!rc)
		rc = pooled_copies(c, used, m, n);
	for (i = 0; !rc && i < n; i++) {
		if (m[i].small || m[i].pooled)
			continue;
		if (allowed(c, used, m[i].student_tensor))
			rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_TEACHER_TENSOR_ALLOWED, NX_MODEL_PATH, 0,
					   "student tensor '%s' equals '%s' of teacher %s (allowed by "
					   "allow_shared_tensors)", m[i].student_tensor,
					   m[i].teacher_tensor, m[i].teacher_file);
		else if (m[i].units)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
					   "student tensor '%s' holds re-encoded vectors of '%s' of "
					   "teacher %s: %u blocks of 64 elements (its rows or columns: "
					   "hidden units' weights), r >= 0.99 up to an affine map per "
					   "vector (permuted, sign-flipped, scaled, quantized), %llu bytes; "
					   "%llu bytes of teacher vectors in the student in all, over the "
					   "%u allowed", m[i].student_tensor, m[i].teacher_tensor,
					   m[i].teacher_file, m[i].unit_blocks,
					   (unsigned long long)m[i].bytes,
					   (unsigned long long)m[i].small_total, NX_FP_SMALL_TOTAL_MAX);
		else if (m[i].approx)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
					   "student tensor '%s' is '%s' of teacher %s%s approximately: "
					   "correlation r=%.4f over %u sampled elements (a copy rounded, "
					   "noised, quantized or mapped by a x + b)", m[i].student_tensor,
					   m[i].teacher_tensor, m[i].teacher_file,
					   m[i].transposed ? " transposed" : "", m[i].corr, m[i].corr_used);
		else if (m[i].implied)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_VALUES_COPIED, NX_MODEL_PATH, 0,
					   "student tensor '%s' holds the value of '%s' of teacher %s%s "
					   "exactly at %u of %u sampled positions: about %llu bytes of it "
					   "kept in place among other values, %llu bytes of teacher "
					   "tensors so implied in all (over %u)", m[i].student_tensor,
					   m[i].teacher_tensor, m[i].teacher_file,
					   m[i].transposed ? " transposed" : "", m[i].value_hits,
					   m[i].value_samples,
					   (unsigned long long)m[i].bytes,
					   (unsigned long long)m[i].implied_total, NX_FP_IMPLIED_TOTAL_MAX);
		else if (m[i].values)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_VALUES_COPIED, NX_MODEL_PATH, 0,
					   "student tensor '%s' holds %u of the %u values sampled from "
					   "'%s' of teacher %s%s, in another order or form (reversed, "
					   "permuted, interleaved, widened or cast): the tensor re-encoded",
					   m[i].student_tensor, m[i].value_hits, m[i].value_samples,
					   m[i].teacher_tensor, m[i].teacher_file,
					   m[i].value_shift ? " scaled by a power of two" : "");
		else if (m[i].partial)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
					   "student tensor '%s' holds %llu bytes of '%s' of teacher %s "
					   "(pieces of it: the tensor cut up, or inside a larger one)",
					   m[i].student_tensor, (unsigned long long)m[i].bytes,
					   m[i].teacher_tensor, m[i].teacher_file);
		else
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
					   "student tensor '%s' (%llu bytes) is byte-identical to '%s' of "
					   "teacher %s%s", m[i].student_tensor,
					   (unsigned long long)m[i].bytes, m[i].teacher_tensor,
					   m[i].teacher_file, m[i].transposed ? " once transposed (the "
					   "order torch.onnx.export writes a Linear weight in)" : "");
	}
out:
	free(used);
	nx_fp_matches_free(m, n);
	nx_fp_set_free(set);
	return rc;
}
