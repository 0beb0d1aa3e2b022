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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/export.h"
#include "nexus/fingerprint.h"

#define CHECK NX_CHECK_WEIGHTS

/*
 * Is match x allowed, its student tensor named by allow_shared_tensors
 * (--accept-shared)?  An allowed NAME covers the tensor of that name or the
 * one the quantizer writes for it (NAME/int8, /int4, /fp16), but ONE of
 * them: the quantizer replaces NAME, so a student holding several is not
 * what it wrote, and red team 10 carried four teacher layers under one
 * accepted name so.  used[i] is the student tensor allowed name i went to
 * first (the one sum's parts are judged first, then the rest, each in the
 * student's order: deterministic), or VOIDED when the name covers nothing
 * (see accepted_once).  A name given twice is one name: the first entry
 * decides.
 *
 * And it covers that tensor as a copy of a teacher tensor, not as a
 * container: red team 11 stacked four teacher layers, rounded, in one
 * accepted [1024, 64] tensor, and each was "allowed" (and the review of
 * the fix, 24 small teacher vectors, found whole inside it).  So only a whole copy
 * (equal, transposed, in the quantizer's forms, approximate, or kept in
 * place in part: all of the student tensor's own element count, position
 * by position) is covered, with the pieces (chunks,
 * blocks, pooled windows, sampled values) of a teacher tensor the same
 * student tensor is a whole copy of; any other piece is judged as if the
 * name were not accepted.  Two teacher tensors the student tensor is a
 * whole copy of are equal to each other: the leak is still one tensor.
 */
static const char VOIDED[] = "";

static bool whole_copy(const struct nx_fp_match *x)
{
	/* implied: kept in place, position by position, in a tensor of the
	 * teacher tensor's element count (the values flag rides along) */
	return !x->partial && !x->pooled && !x->units && !x->inside &&
	       (!x->values || x->implied);
}

static bool same_teacher(const struct nx_fp_match *a, const struct nx_fp_match *b)
{
	return !strcmp(a->teacher_tensor, b->teacher_tensor) &&
	       !strcmp(a->teacher_file, b->teacher_file);
}

static bool covered(const struct nx_fp_match *m, size_t n, const struct nx_fp_match *x)
{
	size_t j;

	if (whole_copy(x))
		return true;
	for (j = 0; j < n; j++)
		if (whole_copy(&m[j]) && !strcmp(m[j].student_tensor, x->student_tensor) &&
		    same_teacher(&m[j], x))
			return true;
	return false;
}

static bool allowed(const struct vfy_ctx *c, const char **used, const struct nx_fp_match *m,
		    size_t n, const struct nx_fp_match *x)
{
	const char *tensor = x->student_tensor;
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
			return covered(m, n, x);
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

/* The one sum's kinds (nexus/fingerprint.h: sum_bytes), in report order. */
enum { SUM_SMALL, SUM_POOLED, SUM_KEPT, SUM_UNITS, SUM_KINDS };

static int sum_kind(const struct nx_fp_match *m)
{
	return m->pooled ? SUM_POOLED : m->implied ? SUM_KEPT : m->units ? SUM_UNITS
	       : m->small ? SUM_SMALL : -1;
}

/*
 * Whole copies of small teacher tensors, the small ones pooled, parts kept
 * in place and re-encoded vectors count in one sum (nexus/fingerprint.h:
 * sum_bytes; docs/TRV.md "Why 16 KiB"): when the ones allow_shared_tensors
 * does not name add up to more than NX_FP_SMALL_TOTAL_MAX bytes at the
 * teacher's float32 size, one FAIL for each kind found, each with its own
 * code and example, each naming the sum and every kind's share of it.
 */
static int sum_copies(struct vfy_ctx *c, const char **used, const struct nx_fp_match *m,
		      size_t n)
{
	const struct nx_fp_match *top[SUM_KINDS] = { NULL };
	uint64_t part[SUM_KINDS] = { 0 }, found[SUM_KINDS] = { 0 }, total = 0, windows = 0;
	size_t i, count[SUM_KINDS] = { 0 };
	char parts[384];
	int rc = 0, k;

	for (i = 0; !rc && i < n; i++) {
		if ((k = sum_kind(&m[i])) < 0)
			continue;
		if (allowed(c, used, m, n, &m[i])) {
			rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_TEACHER_TENSOR_ALLOWED, NX_MODEL_PATH, 0,
					   "student tensor '%s' holds %llu bytes of '%s' of teacher %s "
					   "(allowed by allow_shared_tensors)", m[i].student_tensor,
					   (unsigned long long)m[i].bytes, m[i].teacher_tensor,
					   m[i].teacher_file);
			continue;
		}
		part[k] += m[i].sum_bytes;
		found[k] += m[i].bytes;
		total += m[i].sum_bytes;
		count[k]++;
		if (k == SUM_POOLED)
			windows += m[i].value_hits;
		if (!top[k] || m[i].bytes > top[k]->bytes)
			top[k] = &m[i];
	}
	if (rc || total <= NX_FP_SMALL_TOTAL_MAX)
		return rc;
	snprintf(parts, sizeof(parts),
		 "%llu bytes of teacher weights in all, each element counted at the teacher's "
		 "float32 size (whole small copies %llu, pooled %llu, kept in place %llu, "
		 "re-encoded vectors %llu; each teacher tensor once per student tensor, the "
		 "kinds added up to the student tensor's own size), over the %u-byte bound", (unsigned long long)total, (unsigned long long)part[SUM_SMALL],
		 (unsigned long long)part[SUM_POOLED], (unsigned long long)part[SUM_KEPT],
		 (unsigned long long)part[SUM_UNITS], NX_FP_SMALL_TOTAL_MAX);
	if (top[SUM_SMALL])
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
				   "%zu student tensors are whole copies of small teacher tensors "
				   "(each under %d bytes), %llu bytes of teacher weights: e.g. '%s' "
				   "(%llu bytes) equals '%s' of teacher %s%s%s; %s",
				   count[SUM_SMALL], NX_FP_MIN_BYTES,
				   (unsigned long long)part[SUM_SMALL], top[SUM_SMALL]->student_tensor,
				   (unsigned long long)top[SUM_SMALL]->bytes,
				   top[SUM_SMALL]->teacher_tensor, top[SUM_SMALL]->teacher_file,
				   top[SUM_SMALL]->transposed ? " once transposed" : "",
				   top[SUM_SMALL]->approx ? " approximately (correlation)" : "", parts);
	if (!rc && top[SUM_POOLED])
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_VALUES_COPIED, NX_MODEL_PATH, 0,
				   "the student holds %llu of the %u elements of the small teacher "
				   "tensors pooled of teacher %s (about %llu bytes), in another form "
				   "or order (reversed, negated, scaled, shifted, rounded, cut up or "
				   "interleaved): %zu student tensors, the most in '%s' (%u "
				   "elements), some from '%s'; %s",
				   (unsigned long long)windows, top[SUM_POOLED]->value_samples,
				   top[SUM_POOLED]->teacher_file, (unsigned long long)found[SUM_POOLED],
				   count[SUM_POOLED], top[SUM_POOLED]->student_tensor,
				   top[SUM_POOLED]->value_hits, top[SUM_POOLED]->teacher_tensor, parts);
	if (!rc && top[SUM_KEPT])
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_VALUES_COPIED, NX_MODEL_PATH, 0,
				   "%zu student tensors hold teacher tensors kept in part, in place: "
				   "e.g. '%s' holds the value of '%s' of teacher %s%s exactly at %u of "
				   "%u sampled positions, about %llu bytes of it kept in place among "
				   "other values; %llu bytes of teacher tensors so implied in all; %s",
				   count[SUM_KEPT], top[SUM_KEPT]->student_tensor,
				   top[SUM_KEPT]->teacher_tensor, top[SUM_KEPT]->teacher_file,
				   top[SUM_KEPT]->transposed ? " transposed" : "",
				   top[SUM_KEPT]->value_hits, top[SUM_KEPT]->value_samples,
				   (unsigned long long)top[SUM_KEPT]->bytes,
				   (unsigned long long)found[SUM_KEPT], parts);
	if (!rc && top[SUM_UNITS])
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
				   "%zu student tensors hold re-encoded vectors of teacher tensors: "
				   "e.g. '%s' holds %u blocks of 64 elements of '%s' of teacher %s "
				   "(its rows or columns: hidden units' weights), r >= 0.99 up to an "
				   "affine map per vector (permuted, sign-flipped, scaled, "
				   "quantized), %llu bytes; %llu bytes of teacher vectors in all; %s",
				   count[SUM_UNITS], top[SUM_UNITS]->student_tensor,
				   top[SUM_UNITS]->unit_blocks, top[SUM_UNITS]->teacher_tensor,
				   top[SUM_UNITS]->teacher_file, (unsigned long long)top[SUM_UNITS]->bytes,
				   (unsigned long long)found[SUM_UNITS], parts);
	return rc;
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
	/* past the pool's cap the rest of the small teacher tensors is not
	 * looked for: said, and not a pass under --strict */
	if (nx_fp_set_unpooled(set) &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_TEACHER_POOL_CAPPED, NULL, 0,
				"%zu windows of the small teacher tensors past the pool's %u "
				"distinct keys were not looked for in any other form (their whole "
				"copies still are)", nx_fp_set_unpooled(set), NX_FP_POOL_MAX)) != 0)
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
	rc = sum_copies(c, used, m, n);
	for (i = 0; !rc && i < n; i++) {
		if (sum_kind(&m[i]) >= 0)
			continue;
		if (allowed(c, used, m, n, &m[i]))
			rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_TEACHER_TENSOR_ALLOWED, NX_MODEL_PATH, 0,
					   "student tensor '%s' equals '%s' of teacher %s (allowed by "
					   "allow_shared_tensors)", m[i].student_tensor,
					   m[i].teacher_tensor, m[i].teacher_file);
		else if (m[i].approx)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TEACHER_TENSOR_COPIED, NX_MODEL_PATH, 0,
					   "student tensor '%s' is '%s' of teacher %s%s approximately: "
					   "correlation r=%.4f over %u sampled elements (a copy rounded, "
					   "noised, quantized or mapped by a x + b)", m[i].student_tensor,
					   m[i].teacher_tensor, m[i].teacher_file,
					   m[i].transposed ? " transposed" : "", m[i].corr, m[i].corr_used);
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
