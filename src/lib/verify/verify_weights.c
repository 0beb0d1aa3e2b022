/*
 * verify_weights.c - check `weights` (TRV-3): the student ONNX model is
 * walked without loading its weights.  Every string in it (metadata,
 * producer, doc strings, graph/node/tensor/value names, attribute strings,
 * functions, subgraphs) is searched for the forbidden terms; training_info,
 * training operators, unknown protobuf fields, unreferenced initializers
 * and external data that leaves the bundle all FAIL.
 */
#include "verify_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK NX_CHECK_WEIGHTS
#define EXCERPT_MAX 80
/* Longest ONNX string field (name, doc string, metadata value, string
 * attribute or string tensor element) that is text rather than data. */
#define NX_VERIFY_ONNX_STRING_MAX 4096u
/* Longest run of zero padding an external data file may hold between or
 * after the tensors it stores (exporters align each tensor, nexus to 4 KiB,
 * others to 64 KiB): a cap per gap, so a model of many tensors is fine. */
#define NX_VERIFY_EXTERNAL_GAP_MAX (64u << 10)
#define TRAINING_DOMAIN "ai.onnx.preview.training"
/* Bytes of free text (doc strings, metadata, string attributes and string
 * tensors, ...) in a whole model.  Unlike names, which the size check lets
 * grow with the node count, free text has no reason to: 1000 nodes do not
 * need 1 MB of doc strings, and that is where a base64 tensor fits. */
#define NX_VERIFY_ONNX_TEXT_MAX (64u << 10)

/* Operators that only a training graph has (ONNX preview.training and
 * ONNX Runtime training kernels). */
static const char *const training_ops[] = {
	"Gradient", "Momentum", "Adagrad", "Adam", "AdamW", "SGDOptimizer", "AdamOptimizer",
	"LambOptimizer", "InPlaceAccumulator", "ZeroGradient", "GradientAccumulator",
	"SoftmaxCrossEntropyLossGrad", "SoftmaxCrossEntropyLossInternalGrad", "YieldOp",
};

static void excerpt(char out[EXCERPT_MAX + 4], const char *s, size_t len)
{
	size_t i, n = len < EXCERPT_MAX ? len : EXCERPT_MAX;

	for (i = 0; i < n; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	memcpy(out + n, len > n ? "..." : "", len > n ? 4 : 1);
}

static bool is_training_op(const char *s)
{
	size_t i, len = strlen(s);

	for (i = 0; i < sizeof(training_ops) / sizeof(training_ops[0]); i++)
		if (!strcmp(s, training_ops[i]))
			return true;
	return len > 4 && !strcmp(s + len - 4, "Grad");
}

/* The walk of the model's strings. */
struct strings {
	struct vfy_ctx *c;
	uint64_t text;      /* bytes of free text so far */
};

/* Names, op types and domains are the graph's structure; the rest is text. */
static bool free_text(enum nx_onnx_str_kind kind)
{
	switch (kind) {
	case NX_ONNX_DOC: case NX_ONNX_META_KEY: case NX_ONNX_META_VALUE:
	case NX_ONNX_ATTR_STRING: case NX_ONNX_TENSOR_STRING: case NX_ONNX_PRODUCER:
	case NX_ONNX_TRAINING: case NX_ONNX_OTHER:
		return true;
	default:
		return false;
	}
}

static int on_string(void *arg, enum nx_onnx_str_kind kind, const char *s, size_t len,
		     uint64_t offset, const char *scope)
{
	struct strings *st = arg;
	struct vfy_ctx *c = st->c;
	const char *term = nx_vfy__term_in(c, s, len);
	char ex[EXCERPT_MAX + 4];
	int rc = 0;

	if (free_text(kind) && st->text <= NX_VERIFY_ONNX_TEXT_MAX &&
	    (st->text += len) > NX_VERIFY_ONNX_TEXT_MAX &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_STRING_BLOB, NX_MODEL_PATH, 0,
				"the model's doc strings, metadata, string attributes and string "
				"tensors hold over %u bytes by byte %llu (%s): free text is not a "
				"place for data", NX_VERIFY_ONNX_TEXT_MAX, (unsigned long long)offset,
				scope ? scope : "model")))
		return rc;

	excerpt(ex, s, len);
	/* names, doc strings, metadata and string attributes are short text;
	 * a long one is where a second model or encoded weights hide, under
	 * the size check's allowance for the graph's structure */
	if (len > NX_VERIFY_ONNX_STRING_MAX &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_STRING_BLOB, NX_MODEL_PATH, 0,
				"%s at byte %llu (%s) is %zu bytes, over %u: a string field is "
				"not a place for data (\"%s\")", nx_onnx_str_kind_name(kind),
				(unsigned long long)offset, scope ? scope : "model", len,
				NX_VERIFY_ONNX_STRING_MAX, ex)))
		return rc;
	if (term)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_TEACHER_REFERENCE, NX_MODEL_PATH, 0,
				   "%s at byte %llu (%s) mentions '%s': \"%s\"",
				   nx_onnx_str_kind_name(kind), (unsigned long long)offset,
				   scope ? scope : "model", term, ex);
	if (!rc && ((kind == NX_ONNX_OP_TYPE && is_training_op(s)) ||
		    ((kind == NX_ONNX_NODE_DOMAIN || kind == NX_ONNX_DOMAIN) &&
		     !strcmp(s, TRAINING_DOMAIN))))
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_TRAINING_OP, NX_MODEL_PATH, 0,
				   "%s '%s' at byte %llu (%s) belongs to a training graph",
				   nx_onnx_str_kind_name(kind), ex, (unsigned long long)offset,
				   scope ? scope : "model");
	return rc;
}

/* External data must name a file of the bundle, beside the model. */
static int check_external(struct vfy_ctx *c, const struct nx_onnx_tensor *t)
{
	char path[NX_MANIFEST_PATH_MAX + 8];
	const char *loc = t->ext_location;
	long i;

	if (!loc || nx_onnx_location_problem(loc) ||
	    (size_t)snprintf(path, sizeof(path), "model/%s", loc) >= sizeof(path) ||
	    nx_manifest_path_check(path, NULL))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_EXTERNAL_OUTSIDE, NX_MODEL_PATH, 0,
				     "tensor '%s' keeps its data at '%s', outside the bundle's model/ "
				     "directory", t->name, loc ? loc : "(no location)");
	i = nx_vfy__find(c, path);
	if (i < 0 || (c->m && !nx_manifest_find(c->m, path)))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_EXTERNAL_OUTSIDE, NX_MODEL_PATH, 0,
				     "tensor '%s' keeps its data in %s, which is not a file of the "
				     "bundle's manifest", t->name, path);
	if (t->ext_offset < 0 || t->ext_length < 0 ||
	    (uint64_t)t->ext_offset + (uint64_t)t->ext_length > c->entries[i].size)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_EXTERNAL_RANGE, path, 0,
				     "tensor '%s' reads bytes [%lld, +%lld) past the end of %s (%llu bytes)",
				     t->name, (long long)t->ext_offset, (long long)t->ext_length, path,
				     (unsigned long long)c->entries[i].size);
	return 0;
}

struct span {
	uint64_t a, b;
};

static int span_cmp(const void *x, const void *y)
{
	const struct span *p = x, *q = y;

	return p->a < q->a ? -1 : p->a > q->a;
}

/* Bytes of [a, b) of fd are all zero (alignment padding)?  -1 on a read error. */
static int all_zero(int fd, uint64_t a, uint64_t b)
{
	unsigned char buf[8192];

	while (a < b) {
		size_t n = b - a < sizeof(buf) ? (size_t)(b - a) : sizeof(buf), i;
		ssize_t got = pread(fd, buf, n, (off_t)a);

		if (got <= 0)
			return -1;
		for (i = 0; i < (size_t)got; i++)
			if (buf[i])
				return 0;
		a += (uint64_t)got;
	}
	return 1;
}

/*
 * An external data file is not sniffed by allowlist (it is the model's),
 * so every byte of it must be read by some tensor or be zero padding
 * (exporters align large tensors): anything else is data carried beside
 * the weights, under the size check's allowance.  Checked once per file,
 * for the tensors ext[0..next) that name it, after check_external passed
 * for all.
 */
static int check_external_coverage(struct vfy_ctx *c, const nx_onnx_summary *s,
				   const size_t *ext, size_t next)
{
	const char *loc = s->tensors[ext[0]].ext_location;
	char path[NX_MANIFEST_PATH_MAX + 8];
	struct span *sp = NULL;
	uint64_t cur = 0, size, unread = 0, bad_at = 0;
	size_t i, n = 0;
	bool bad = false;
	long k;
	int fd = -1, z, rc = 0;

	/* a location check_external refused has nothing to cover */
	if (nx_onnx_location_problem(loc) ||
	    (size_t)snprintf(path, sizeof(path), "model/%s", loc) >= sizeof(path) ||
	    nx_manifest_path_check(path, NULL) || (k = nx_vfy__find(c, path)) < 0 ||
	    !S_ISREG(c->entries[k].mode))
		return 0;
	size = c->entries[k].size;
	if (!(sp = calloc(next, sizeof(*sp))))
		return NX_ENOMEM;
	for (i = 0; i < next; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[ext[i]];

		sp[n].a = t->ext_offset > 0 ? (uint64_t)t->ext_offset : 0;
		sp[n].b = t->ext_length >= 0 ? sp[n].a + (uint64_t)t->ext_length : size;
		n++;
	}
	qsort(sp, n, sizeof(*sp), span_cmp);
	if (nx_vfy__open_regular(&fd, NULL, c->dirfd, path, NULL)) {
		fd = -1;
		bad = true;
	}
	for (i = 0; i <= n && !bad; i++) {
		uint64_t gap_end = i < n ? sp[i].a : size;

		if (gap_end > cur) {
			unread += gap_end - cur;
			z = gap_end - cur > NX_VERIFY_EXTERNAL_GAP_MAX ? 0 : all_zero(fd, cur, gap_end);
			if (z != 1) {
				bad = true;
				bad_at = cur;
			}
		}
		if (i < n && sp[i].b > cur)
			cur = sp[i].b;
	}
	if (bad)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_EXTERNAL_UNREAD, path, 0,
				   "%s holds bytes no tensor reads, from byte %llu (%llu unread bytes "
				   "in all; padding must be zero, at most %u bytes between two "
				   "tensors): data beside the weights", path,
				   (unsigned long long)bad_at, (unsigned long long)unread,
				   NX_VERIFY_EXTERNAL_GAP_MAX);
	if (fd >= 0)
		close(fd);
	free(sp);
	return rc;
}

static int check_summary(struct vfy_ctx *c, const nx_onnx_summary *s)
{
	size_t *ext = NULL, n = 0, i, j;
	int rc = 0;

	if (s->has_training_info)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_TRAINING_INFO, NX_MODEL_PATH, 0,
				   "the model carries training_info (training algorithm and state); "
				   "export an inference-only graph");
	if (!rc && s->unknown_fields)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_UNKNOWN_FIELDS, NX_MODEL_PATH, 0,
				   "%llu protobuf field(s) unknown to ONNX, the first at byte %lld: "
				   "unknown fields and trailing bytes can hide data",
				   (unsigned long long)s->unknown_fields, (long long)s->first_unknown_offset);
	for (i = 0; !rc && i < s->nopsets; i++)
		if (s->opsets[i].domain && !strcmp(s->opsets[i].domain, TRAINING_DOMAIN))
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_TRAINING_OP, NX_MODEL_PATH, 0,
					   "the model imports the opset %s", TRAINING_DOMAIN);
	for (i = 0; !rc && i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (!t->attribute && t->duplicate)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_UNREFERENCED_INITIALIZER,
					   NX_MODEL_PATH, 0,
					   "initializer '%s' (%s) shares its name with another initializer "
					   "or a node output: ONNX Runtime reads one of them, the other is "
					   "a tensor no node uses", t->name, t->scope ? t->scope : "graph");
		else if (!t->attribute && !t->referenced)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_UNREFERENCED_INITIALIZER,
					   NX_MODEL_PATH, 0,
					   "initializer '%s' (%s) is used by no node: extra tensors are "
					   "where copied weights hide", t->name, t->scope ? t->scope : "graph");
		if (!rc && t->location == NX_TENSOR_EXTERNAL)
			rc = check_external(c, t);
	}
	if (!rc && !(rc = nx_vfy__external_by_file(&ext, &n, s))) {
		for (i = 0; !rc && i < n; i = j) {
			for (j = i + 1; j < n && !strcmp(s->tensors[ext[j]].ext_location,
							 s->tensors[ext[i]].ext_location); j++)
				;
			rc = check_external_coverage(c, s, ext + i, j - i);
		}
	}
	free(ext);
	return rc;
}

int nx_vfy__weights(struct vfy_ctx *c, bool *skipped, nx_error *err)
{
	long i = nx_vfy__find(c, NX_MODEL_PATH);
	struct strings st = {.c = c};
	struct nx_onnx_canon canon;
	nx_error e;
	int fd = -1, rc;

	if (i < 0 || !S_ISREG(c->entries[i].mode)) {
		*skipped = true;   /* allowlist / integrity say why */
		return 0;
	}
	nx_error_clear(&e);
	memset(&canon, 0, sizeof(canon));
	rc = nx_vfy__open_regular(&fd, NULL, c->dirfd, NX_MODEL_PATH, &e);
	if (!rc) {
		rc = nx_onnx_visit_strings(fd, NX_MODEL_PATH, on_string, &st, &e);
		if (!rc && c->onnx)
			rc = nx_onnx_canon_check(&canon, fd, NX_MODEL_PATH, &e);
		close(fd);
	}
	if (rc == NX_ENOMEM)
		return rc;
	if (rc && e.code == NX_OK)
		return rc;   /* from the callback */
	if (rc || !c->onnx)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_INVALID, NX_MODEL_PATH, 0,
				     "%s is not a valid ONNX model: %s", NX_MODEL_PATH,
				     rc ? e.message : "it could not be opened");
	c->list_bytes = canon.list_bytes;
	if (!canon.canonical &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ONNX_NOT_CANONICAL, NX_MODEL_PATH, 0,
				"%s is not in nexus's canonical ONNX form at byte %lld: %s; bytes "
				"ONNX Runtime does not read could carry data (rebuild it with "
				"nexus build, which writes the canonical form)", NX_MODEL_PATH,
				(long long)canon.offset, canon.what)) != 0)
		return rc;
	rc = check_summary(c, nx_onnx_summary_get(c->onnx));
	if (!rc)
		rc = nx_vfy__constant_subgraphs(c);
	if (!rc && c->opts->nteachers)
		rc = nx_vfy__teacher(c, err);
	if (!rc)
		rc = nx_vfy__policy_teacher(c);
	return rc;
}
