/*
 * fingerprint_fold.c - the student graph's linear algebra folded before
 * fingerprinting (docs/TRV.md "Folded linear maps").
 *
 * Every other check reads stored tensors.  A teacher layer W kept as
 * W = A + B (A noise), computed as MatMul(x, A) + MatMul(x, B), or as
 * W' = W + U V with MatMul(MatMul(x, U), V) subtracted at run time, holds
 * no tensor that is W or correlates with it: only the graph sums them
 * (red team 10).  So the main graph's sums are read as a linear map of
 * each input: an Add/Sub/Sum tree (through Neg, views - Identity, Cast,
 * Reshape, Squeeze, Unsqueeze, Flatten, Expand - a Clip no value reaches
 * (bounds absent or past +-1e30), a Transpose of the last two axes (the
 * terms under it flipped: (x W)^T = W^T x^T), Mul/Div by a scale: a
 * scalar or a vector initializer along either matrix axis, and Gemm's C,
 * summed with its product) whose leaves are
 *   - MatMul(x, W), MatMul(W, x) (W the left operand), Gemm(x, W) or
 *     Gemm(W, x) with transA/transB and alpha (x^T kept as x swapped), a
 *     1 x 1 Conv (group, strides, dilations 1, no pads) as W on x's
 *     channel axis, an Einsum of a MatMul's form: a full term;
 *     MatMul(Concat([x, x, ...]), W): a full term per block of W;
 *   - MatMul(MatMul(x, U), V) (or V U x on the left, a scalar Mul between
 *     them) with the inner dimension k <= FOLD_RANK_MAX: a low-rank term;
 * where a weight is an initializer of the main graph or a Constant's
 * value (any rank whose dims but two are 1; float, float8 included, or
 * integer codes Cast or dequantized, read by fingerprint_num.c's decoder; typed fields decoded to a temporary file) reached
 * through views, a Transpose of its two dims, scales and DequantizeLinear
 * of int8/uint8 (scale and zero point per tensor or per
 * axis).  Terms of one input x, one side and one shape, at least two of
 * them and one full, are a fold: their effective matrix sum(c_i M_i) is
 * written, a block of rows at a time, to an unlinked temporary file and
 * handed to the same consumers a stored student tensor goes through
 * (fingerprint.c's fold_tensor), under the name of its terms ("A - B (folded)").
 *
 * Cost: the terms are read once per fold, rows at a time (a term stored
 * the other way round a strided block at a time; a low-rank term's factors,
 * k rows or columns, whole), so memory is a block (1 MiB, or one row of
 * at most FOLD_COLS_MAX columns) and the factors (FOLD_FACTOR_MAX; a fold
 * past either fails closed, never skipped);
 * the bytes read for folds are charged against the model's own weight
 * bytes, and a model past that (or whose sums take more than
 * FOLD_VISITS_PER_NODE steps a node to expand) fails the teacher check
 * (NX_ELIMIT): an honest model has few folds or none, and a budget an
 * insider could run out with decoys must not let the rest through.
 * Not folded: subgraphs (If/Loop/Scan), a sum reached through any other
 * op (a Clip with bounds in reach, a Slice of a wider MatMul), products of full matrices
 * (k > FOLD_RANK_MAX), a rotation of the hidden units (docs/TRV.md
 * "Known limits").
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/pb.h"

#define FOLD_RANK_MAX 64                 /* inner dimension of a low-rank term */
#define FOLD_BLOCK (1u << 20)            /* bytes of a block of output rows */
#define FOLD_FACTOR_MAX (4u << 20)       /* elements of the low-rank factors of one
					  * fold, held (16 MiB, 32 while one is
					  * transposed) */
#define FOLD_COLS_MAX (1u << 22)         /* columns of a folded matrix: its row
					  * block holds one row at least, twice
					  * (32 MiB) */
#define FOLD_NODES_MAX 4000000u          /* main-graph nodes read */
#define FOLD_VISITS_PER_NODE 8           /* expansion steps a node, in all */
#define FOLD_NAME_MAX 240                /* bytes of a fold's name */
#define FOLD_DEPTH_MAX 4096              /* sums nested in one another */
#define FOLD_SCALES_MAX (4u << 20)       /* elements of scale vectors held at once
					  * (16 MiB) */
#define FOLD_DIMS 8                      /* dims of a weight as the graph views it */
#define FOLD_EQ_MAX 64                   /* bytes of an Einsum equation, spaces
					  * stripped */
#define FOLD_EQ_READ 4096                /* bytes of one read (spaces and all):
					  * longer fails a term closed */

struct fnode {
	char *op;
	char **in, **out;
	size_t nin, nout;
	int64_t trans_a, trans_b, axis;
	double alpha, beta;
	double lo, hi;         /* Clip's bounds as attributes (opset < 11) */
	bool strided;          /* Conv: a group, stride, dilation or pad not 1 (0) */
	int64_t perm[FOLD_DIMS];
	size_t nperm;
	int64_t to;            /* Cast's target type */
	uint64_t tmsg;         /* Constant: file offset of its value tensor (0: none) */
	char *eq;              /* Einsum's equation, spaces stripped */
	bool eq_long;          /* its equation past FOLD_EQ_READ or FOLD_EQ_MAX */
};

/* name -> index (of a node output, or of a tensor), sorted for bsearch */
struct fkey {
	const char *name;
	size_t i;
};

/* A weight as a term uses it: stored tensor t viewed [rows, cols] (its
 * dims, or a Reshape's), transposed when trans; dequantized when q. */
struct wref {
	const struct nx_onnx_tensor *t;
	uint64_t rows, cols;
	bool trans;
	bool q;
	double c;              /* a scalar the graph multiplies the weight by */
	float *vr, *vc;        /* scales of the base's rows and columns (NULL: 1) */
	uint64_t brows;        /* the base's rows (vr's length) */
	uint64_t stride, boff; /* rows, cols may be a block of the base: its columns
				* (vc's length), and the block's first element */
	float *scale, *zp;     /* q: per tensor (nscale 1) or per axis */
	uint64_t nscale;
	int64_t axis;          /* q: of the stored tensor's 2 dims */
	uint64_t scols;        /* the stored tensor's columns (a per-axis scale's
				* index; rows, cols may be a Reshape's) */
	int fd;                /* where t's bytes are (-1: not opened yet) */
	char *path;
	uint64_t off;
};

struct term {
	struct wref f[2];      /* the factors, in the order x meets them */
	size_t nf;
	double coef;
	bool left;             /* W x, not x W */
	bool xt;               /* x is the value x with its last two axes swapped */
	bool conv;             /* a 1 x 1 Conv: W on x's channel axis (axis 1) */
	const char *x;
	uint64_t m, n;         /* the term's matrix (x W: W is [m, n]; W x: [m, n]) */
};

struct fold {
	struct tensors *w;
	nx_fp__fold_fn one;     /* the consumers of a folded matrix */
	int dirfd, fd;
	const char *path;
	const nx_onnx_summary *s;
	nx_error *err;
	struct nx_pb_file f;
	struct fnode *n;
	size_t nn, capn;
	struct fkey *prod, *tens, *inner;
	size_t nprod, ntens, ninner;
	uint64_t visits, visit_max;     /* expansion steps, and their bound */
	uint64_t scales;                /* elements of scale vectors held */
	bool over;                      /* a bound hit where false was returned */
	const char *unread;             /* a scale the fold could not read (over) */
	bool kernel;                    /* weight() reads a Conv's kernel */
	struct fconst {
		uint64_t off;
		size_t i;
	} *consts;                      /* attribute tensors, by msg_offset */
	size_t nconsts;
	uint64_t charged, charge_max;   /* bytes read for folds, and their bound */
	struct term *terms;
	size_t nterms, capterms;
	char **names;          /* the folds' names, alive until the end (matches
				* compare them by address) */
	size_t nnames;
};

#define LOOP(r, fl, rc, err) while (((rc) = nx_pb_next((r), (fl), (err))) > 0 && ((rc) = 0) == 0)

static int cmp_key(const void *a, const void *b)
{
	return strcmp(((const struct fkey *)a)->name, ((const struct fkey *)b)->name);
}

static int cmp_const(const void *a, const void *b)
{
	uint64_t x = ((const struct fconst *)a)->off, y = ((const struct fconst *)b)->off;

	return x < y ? -1 : x > y;
}

static const struct fkey *find(const struct fkey *v, size_t n, const char *name)
{
	struct fkey k = { name, 0 };

	return n ? bsearch(&k, v, n, sizeof(*v), cmp_key) : NULL;
}

static int push_str(char ***v, size_t *n, char *s)
{
	if (NX_ARRAY_PUSH_EXACT(*v, *n)) {
		free(s);
		return NX_ENOMEM;
	}
	(*v)[(*n)++] = s;
	return 0;
}

/* One AttributeProto: the numbers a fold needs. */
static int read_attr(struct fold *fd, struct fnode *n, const struct nx_pb_reader *parent,
		     const struct nx_pb_field *fld)
{
	struct nx_pb_reader r, p;
	struct nx_pb_field f;
	char *name = NULL, *str = NULL;
	int64_t i = 0;
	float fl = 0;
	uint64_t toff = 0;
	int64_t ints[FOLD_DIMS];
	size_t nints = 0;
	uint64_t v;
	bool str_long = false;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, fd->err)) != 0)
		return rc;
	LOOP(&r, &f, rc, fd->err) {
		if (f.num == 1 && f.wire == NX_PB_LEN && !name) {
			if ((rc = nx_pb_read_string(&fd->f, &f, 64, &name, NULL, fd->err)) != 0)
				return rc == NX_ELIMIT ? 0 : rc;
		} else if (f.num == 2 && f.wire == NX_PB_I32) {
			uint32_t u = (uint32_t)f.value;

			memcpy(&fl, &u, 4);
		} else if (f.num == 3 && f.wire == NX_PB_VARINT) {
			i = (int64_t)f.value;
		} else if (f.num == 4 && f.wire == NX_PB_LEN && !str) {
			/* the runtime ignores spaces in an Einsum equation: they
			 * are read (to a bound) and stripped, not taken for a
			 * longer equation that is no term */
			if ((rc = nx_pb_read_string(&fd->f, &f, FOLD_EQ_READ, &str, NULL, fd->err)) != 0) {
				if (rc != NX_ELIMIT)
					break;
				rc = 0;
				str_long = true;
			}
		} else if (f.num == 5 && f.wire == NX_PB_LEN) {
			toff = f.offset;
		} else if (f.num == 8 && f.wire == NX_PB_VARINT) {
			if (nints < FOLD_DIMS)
				ints[nints] = (int64_t)f.value;
			nints++;
		} else if (f.num == 8 && f.wire == NX_PB_LEN) {
			if ((rc = nx_pb_sub(&p, &r, &f, fd->err)) != 0)
				break;
			while (p.pos < p.end && !(rc = nx_pb_read_varint(&p, &v, fd->err))) {
				if (nints < FOLD_DIMS)
					ints[nints] = (int64_t)v;
				nints++;
			}
			if (rc)
				break;
		}
	}
	if (!rc && name) {
		if (!strcmp(name, "transA"))
			n->trans_a = i;
		else if (!strcmp(name, "transB"))
			n->trans_b = i;
		else if (!strcmp(name, "axis"))
			n->axis = i;
		else if (!strcmp(name, "alpha"))
			n->alpha = fl;
		else if (!strcmp(name, "beta"))
			n->beta = fl;
		else if (!strcmp(name, "min"))
			n->lo = fl;
		else if (!strcmp(name, "max"))
			n->hi = fl;
		else if (!strcmp(name, "group"))
			n->strided |= i != 1;
		else if (!strcmp(name, "strides") || !strcmp(name, "dilations") ||
			 !strcmp(name, "pads")) {
			/* a 1 x 1 Conv is a MatMul only with every stride and
			 * dilation 1 and no pad (more values than read: not) */
			int64_t want = strcmp(name, "pads") ? 1 : 0;

			n->strided |= nints > FOLD_DIMS;
			for (size_t j = 0; j < nints && j < FOLD_DIMS; j++)
				n->strided |= ints[j] != want;
		}
		else if (!strcmp(name, "to"))
			n->to = i;
		else if (!strcmp(name, "value"))
			n->tmsg = toff;
		else if (!strcmp(name, "equation") && !n->eq && !n->eq_long) {
			size_t k = 0;

			for (size_t j = 0; str && str[j]; j++)
				if (str[j] != ' ')
					str[k++] = str[j];
			if (str_long || !str || k > FOLD_EQ_MAX) {
				n->eq_long = true;
			} else {
				str[k] = '\0';
				n->eq = str;
				str = NULL;
			}
		} else if (!strcmp(name, "perm")) {
			/* more than FOLD_DIMS: no view of a weight */
			n->nperm = nints;
			memcpy(n->perm, ints, (nints < FOLD_DIMS ? nints : FOLD_DIMS) * sizeof(*ints));
		}
	}
	free(str);
	free(name);
	return rc;
}

static int read_node(struct fold *fd, const struct nx_pb_reader *g, const struct nx_pb_field *nf)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct fnode *n;
	char *s = NULL;
	int rc;

	if (fd->nn >= FOLD_NODES_MAX)
		return nx_error_set(fd->err, NX_ELIMIT, fd->path, 0, (long long)nf->tag_offset,
				    "more than %u nodes in the main graph", FOLD_NODES_MAX);
	if (NX_ARRAY_PUSH(fd->n, fd->capn, fd->nn))
		return nx_error_oom(fd->err, NULL);
	n = &fd->n[fd->nn++];
	memset(n, 0, sizeof(*n));
	n->alpha = 1;
	n->beta = 1;
	n->lo = -HUGE_VAL;
	n->hi = HUGE_VAL;
	n->axis = 1;
	n->to = 1;
	if ((rc = nx_pb_sub(&r, g, nf, fd->err)) != 0)
		return rc;
	LOOP(&r, &f, rc, fd->err) {
		if (f.wire != NX_PB_LEN)
			continue;
		if (f.num == 1 || f.num == 2 || (f.num == 4 && !n->op)) {
			if ((rc = nx_pb_read_string(&fd->f, &f, 0, &s, NULL, fd->err)) != 0)
				return rc;
			if (f.num == 1)
				rc = push_str(&n->in, &n->nin, s);
			else if (f.num == 2)
				rc = push_str(&n->out, &n->nout, s);
			else
				n->op = s;
			s = NULL;
			if (rc)
				return nx_error_oom(fd->err, NULL);
		} else if (f.num == 5 && (rc = read_attr(fd, n, &r, &f)) != 0) {
			return rc;
		}
	}
	return rc;
}

/* The main graph's nodes (field 7 of the model, field 1 of the graph). */
static int read_graph(struct fold *fd)
{
	struct nx_pb_reader top, g;
	struct nx_pb_field f, graph;
	bool have = false;
	int rc;

	if ((rc = nx_pb_file_init(&fd->f, fd->fd, fd->path, fd->err)) != 0 ||
	    (rc = nx_pb_reader_init(&top, &fd->f, 0, fd->f.size, fd->err)) != 0)
		return rc;
	LOOP(&top, &f, rc, fd->err)
		if (f.num == 7 && f.wire == NX_PB_LEN) {
			graph = f;
			have = true;
		}
	if (rc || !have)
		return rc;
	if ((rc = nx_pb_reader_init(&top, &fd->f, 0, fd->f.size, fd->err)) != 0 ||
	    (rc = nx_pb_sub(&g, &top, &graph, fd->err)) != 0)
		return rc;
	LOOP(&g, &f, rc, fd->err)
		if (f.num == 1 && f.wire == NX_PB_LEN && (rc = read_node(fd, &g, &f)) != 0)
			break;
	return rc;
}

static bool is(const struct fnode *n, const char *op)
{
	return n->op && !strcmp(n->op, op);
}

static const struct fnode *producer(const struct fold *fd, const char *name)
{
	const struct fkey *k = find(fd->prod, fd->nprod, name);

	return k ? &fd->n[k->i] : NULL;
}

/* name's initializer, or the value of the Constant node that makes it
 * (the attribute tensor whose message is at the node's offset) */
static const struct nx_onnx_tensor *tensor(const struct fold *fd, const char *name)
{
	const struct fkey *k = find(fd->tens, fd->ntens, name);
	const struct fnode *p;
	size_t lo = 0, hi = fd->nconsts, mid;

	if (k)
		return &fd->s->tensors[k->i];
	if (!(p = producer(fd, name)) || !is(p, "Constant") || !p->tmsg || p->nin)
		return NULL;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (fd->consts[mid].off < p->tmsg)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < fd->nconsts && fd->consts[lo].off == p->tmsg
	       ? &fd->s->tensors[fd->consts[lo].i] : NULL;
}

struct sink {
	unsigned char *p;
	size_t cap, len;
};

static int sink_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct sink *k = ctx;

	if (len > k->cap - k->len)
		return NX_ELIMIT;
	memcpy(k->p + k->len, buf, len);
	k->len += len;
	return 0;
}

static int wref_open(struct fold *fd, struct wref *r);

/* A small tensor's stored bytes (at most cap), inline or in external data
 * (a scale stored outside the model is as much a scale): *n its elements,
 * false when it cannot be read or is too large. */
static bool small_values(struct fold *fd, const struct nx_onnx_tensor *t, void *out, size_t cap,
			 uint64_t *n)
{
	struct sink k = { out, cap, 0 };
	struct wref r;
	uint64_t len;
	nx_error e;
	bool ok;

	if (!t || t->sparse)
		return false;
	if (t->location != NX_TENSOR_INLINE) {
		len = t->nelem * nx_onnx_dtype_size(t->data_type);
		if (!len || len > cap)
			return false;
		memset(&r, 0, sizeof(r));
		r.fd = -1;
		r.t = t;
		ok = !wref_open(fd, &r) &&
		     nx_pread_full(r.fd, out, len, (off_t)r.off) == (ssize_t)len;
		if (r.fd >= 0)
			close(r.fd);
		free(r.path);
		*n = t->nelem;
		return ok;
	}
	nx_error_clear(&e);
	if (nx_onnx_tensor_read(fd->fd, fd->path, t, sink_feed, &k, &e) != 0)
		return false;
	*n = t->nelem;
	return k.len == t->nelem * nx_onnx_dtype_size(t->data_type);
}

/* A scalar float32 initializer's value. */
static bool scalar(struct fold *fd, const char *name, double *v)
{
	const struct nx_onnx_tensor *t = tensor(fd, name);
	float f;
	uint64_t n;

	if (!t || t->data_type != 1 || t->nelem != 1 || !small_values(fd, t, &f, sizeof(f), &n))
		return false;
	*v = f;
	return true;
}

/* A per-tensor or per-axis float vector (a Mul/Div scale, DequantizeLinear's
 * scale, or its zero point widened), in a new array.  An initializer that
 * is there but cannot be read (its type, size or bytes) is no "not a
 * scale": the walk fails closed (fd->over), else a scale kept where the
 * fold does not look would hide the sum it scales. */
static bool qvec(struct fold *fd, const char *name, float **out, uint64_t *n)
{
	const struct nx_onnx_tensor *t = tensor(fd, name);
	size_t width = t ? nx_fp__num_width(t->data_type) : 0;
	unsigned char *raw = NULL;
	uint64_t i;

	*out = NULL;
	if (!t)
		return false;
	if (!width || t->data_type == 9 || t->nelem > FOLD_SCALES_MAX || !t->nelem ||
	    nx_onnx_dtype_size(t->data_type) != width || !(raw = malloc(t->nelem * width)) ||
	    !small_values(fd, t, raw, t->nelem * width, n) || !(*out = malloc(*n * sizeof(float)))) {
		free(raw);
		fd->over = true;
		fd->unread = t->name;
		return false;
	}
	for (i = 0; i < *n; i++)
		(*out)[i] = (float)nx_fp__num_get(raw + i * width, t->data_type);
	free(raw);
	return true;
}

static void scale_free(struct fold *fd, float **v, uint64_t n)
{
	if (*v)
		fd->scales -= n;
	free(*v);
	*v = NULL;
}

/* qvec charged to FOLD_SCALES_MAX before it is read (a term's own copy of
 * a DequantizeLinear's scale or zero point: many terms of one weight
 * would each hold one), freed by scale_free. */
static bool qvec_charged(struct fold *fd, const char *name, float **out, uint64_t *n)
{
	const struct nx_onnx_tensor *t = tensor(fd, name);

	if (t && t->nelem > FOLD_SCALES_MAX - fd->scales) {
		*out = NULL;
		fd->over = true;
		return false;
	}
	if (!qvec(fd, name, out, n))
		return false;
	fd->scales += *n;
	return true;
}

static void wref_release(struct fold *fd, struct wref *r)
{
	scale_free(fd, &r->vr, r->brows);
	scale_free(fd, &r->vc, r->stride);
	scale_free(fd, &r->scale, r->nscale);
	scale_free(fd, &r->zp, r->nscale);
	free(r->path);
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

/* A tensor a Mul/Div scales by, as broadcast against a matrix: 0 a scalar,
 * 1 a vector along the last axis (a column scale), 2 along the one before
 * ([m, 1]: a row scale), -1 none of those.  *n its elements. */
static bool float_type(int64_t dt)
{
	return dt == 1 || dt == 10 || dt == 11 || dt == 16;
}

static int scale_kind(const struct fold *fd, const char *name, uint64_t *n)
{
	const struct nx_onnx_tensor *t = tensor(fd, name);
	size_t i, big = SIZE_MAX;

	/* by its shape only: inline or external, any float type, is read
	 * whole (qvec), and one that cannot be read fails the walk closed */
	if (!t || !float_type(t->data_type) || !t->nelem || t->nelem > FOLD_SCALES_MAX ||
	    t->ndims > FOLD_DIMS)
		return -1;
	for (i = 0; i < t->ndims; i++)
		if (t->dims[i] != 1) {
			if (big != SIZE_MAX)
				return -1;
			big = i;
		}
	*n = t->nelem;
	if (big == SIZE_MAX)
		return 0;
	return big + 1 == t->ndims ? 1 : big + 2 == t->ndims ? 2 : -1;
}

/* Multiplies r's base rows (rows true) or columns by v (or divides). */
static bool wscale(struct fold *fd, struct wref *r, bool rows, const float *v, uint64_t n, bool div)
{
	float **d = rows ? &r->vr : &r->vc;
	uint64_t i;

	if (n != (rows ? r->brows : r->stride))
		return false;
	if (!*d) {
		if (n > FOLD_SCALES_MAX - fd->scales) {
			fd->over = true;
			return false;
		}
		if (!(*d = malloc(n * sizeof(float))))
			return false;
		fd->scales += n;
		for (i = 0; i < n; i++)
			(*d)[i] = 1;
	}
	for (i = 0; i < n; i++) {
		if (div && !v[i])
			return false;
		(*d)[i] = div ? (*d)[i] / v[i] : (*d)[i] * v[i];
	}
	return true;
}

/* A view's dims other than 1, in order: their count (3: more than 2). */
static size_t nonone(const int64_t *d, size_t n, int64_t out[2])
{
	size_t k = 0;

	out[0] = out[1] = 1;
	for (size_t i = 0; i < n; i++)
		if (d[i] != 1) {
			if (k == 2)
				return 3;
			out[k++] = d[i];
		}
	return k;
}

/* An int64 shape tensor (Reshape's, Expand's, axes): false if none. */
static bool shape_of(struct fold *fd, const char *name, int64_t *v, uint64_t *n)
{
	const struct nx_onnx_tensor *t = tensor(fd, name);

	return t && t->data_type == 7 && t->nelem <= FOLD_DIMS &&
	       small_values(fd, t, v, FOLD_DIMS * sizeof(*v), n);
}

/* The dims p gives a view d[n] (Reshape, Squeeze, Unsqueeze, Flatten,
 * Expand), in place; false if they cannot be known or keep no layout. */
static bool reshape_view(struct fold *fd, const struct fnode *p, int64_t *d, size_t *n)
{
	int64_t v[FOLD_DIMS], o[FOLD_DIMS];
	uint64_t nv = 0, i, j, total = 1, known = 1;
	size_t no = 0;
	int64_t ax;

	for (i = 0; i < *n; i++)
		total *= (uint64_t)d[i];
	if (is(p, "Flatten")) {
		ax = p->axis < 0 ? p->axis + (int64_t)*n : p->axis;
		if (ax < 0 || ax > (int64_t)*n)
			return false;
		o[0] = o[1] = 1;
		for (i = 0; i < *n; i++)
			o[(int64_t)i < ax ? 0 : 1] *= d[i];
		no = 2;
	} else if (p->nin < 2 || !shape_of(fd, p->in[1], v, &nv)) {
		/* Squeeze with no axes: every dim of 1 */
		if (!is(p, "Squeeze") || p->nin >= 2)
			return false;
		for (i = 0; i < *n; i++)
			if (d[i] != 1)
				o[no++] = d[i];
	} else if (is(p, "Reshape")) {
		for (i = 0; i < nv; i++) {
			o[i] = v[i] == 0 && i < *n ? d[i] : v[i];
			if (o[i] < -1 || (o[i] == -1 && nv > 1 && known == 0))
				return false;
			if (o[i] > 0)
				known *= (uint64_t)o[i];
		}
		no = nv;
		for (i = 0; i < nv; i++)
			if (o[i] == -1) {
				if (!known || total % known)
					return false;
				o[i] = (int64_t)(total / known);
			}
	} else if (is(p, "Squeeze") || is(p, "Unsqueeze")) {
		bool un = is(p, "Unsqueeze");
		size_t out = un ? *n + nv : *n;
		unsigned mark = 0;

		if (out > FOLD_DIMS)
			return false;
		for (i = 0; i < nv; i++) {
			ax = v[i] < 0 ? v[i] + (int64_t)out : v[i];
			if (ax < 0 || ax >= (int64_t)out || (mark & (1u << ax)) ||
			    (!un && d[ax] != 1))
				return false;
			mark |= 1u << ax;
		}
		for (i = 0, j = 0; i < out; i++)
			if (un)
				o[no++] = (mark & (1u << i)) ? 1 : d[j++];
			else if (!(mark & (1u << i)))
				o[no++] = d[i];
	} else if (is(p, "Expand")) {
		/* broadcast: only to the view's own dims (leading 1s aside) */
		no = nv > *n ? nv : *n;
		for (i = 0; i < no; i++) {
			int64_t a = i + *n >= no ? d[i + *n - no] : 1;
			int64_t b = i + nv >= no ? v[i + nv - no] : 1;

			if (b != 1 && b != a)
				return false;
			o[i] = a;
		}
	} else {
		return false;
	}
	for (i = 0, known = 1; i < no; i++) {
		if (o[i] <= 0)
			return false;
		known *= (uint64_t)o[i];
	}
	if (known != total || no > FOLD_DIMS)
		return false;
	memcpy(d, o, no * sizeof(*o));
	*n = no;
	return true;
}

/* The scale s = tensor name of kind k (scale_kind) applied to r as it is
 * viewed [.., vr, vc] (trans: base transposed) */
static bool apply_scale(struct fold *fd, struct wref *r, const char *name, int k, bool div,
			const int64_t *d, size_t n)
{
	float *v = NULL;
	uint64_t nv, i;
	bool ok;

	if (!qvec(fd, name, &v, &nv))
		return false;
	if (k == 0) {
		ok = !div || v[0];
		if (ok)
			r->c = div ? r->c / v[0] : r->c * v[0];
		free(v);
		return ok;
	}
	/* the view a matrix: only its last two dims other than 1 */
	for (i = 0; i + 2 < n; i++)
		if (d[i] != 1) {
			free(v);
			return false;
		}
	ok = n >= (k == 1 ? 1u : 2u) && (int64_t)nv == d[n - k] &&
	     wscale(fd, r, (k == 2) != r->trans, v, nv, div);
	free(v);
	return ok;
}

/* name as a weight: an initializer of the main graph (or a Constant
 * node's value, any float or integer type, stored in any rank whose dims
 * but two are 1) as the graph views it through Identity, Cast, Transpose,
 * Reshape, Squeeze, Unsqueeze, Flatten, Expand to its own shape, a Mul or
 * Div by a scalar or a vector along either axis, and DequantizeLinear of
 * the stored tensor.  The chain is walked back to the tensor (any length:
 * each step charged to the expansion budget), then replayed forward. */
static bool weight(struct fold *fd, const char *name, struct wref *r)
{
	const struct nx_onnx_tensor *t = NULL;
	const struct fnode *p;
	struct step {
		const struct fnode *p;
		unsigned w;    /* the operand that is the weight */
	} *chain = NULL;
	size_t nchain = 0, cap = 0, i, n;
	int64_t d[FOLD_DIMS], a[2], b[2];
	uint64_t nv, elem;
	bool fl;
	int k;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->c = 1;
	while (!(t = tensor(fd, name))) {
		unsigned w = 0;

		if (nchain > fd->nn || !(p = producer(fd, name)) || !p->nin || !p->in[0][0])
			goto no;
		fd->visits++;
		if (is(p, "Mul") && p->nin == 2 && scale_kind(fd, p->in[1], &nv) < 0) {
			if (scale_kind(fd, p->in[0], &nv) < 0)
				goto no;
			w = 1;
		} else if ((is(p, "Mul") || is(p, "Div")) &&
			   (p->nin != 2 || !p->in[1][0] || scale_kind(fd, p->in[1], &nv) < 0)) {
			goto no;
		} else if (!is(p, "Identity") && !is(p, "Cast") && !is(p, "Transpose") &&
			   !is(p, "Reshape") && !is(p, "Squeeze") && !is(p, "Unsqueeze") &&
			   !is(p, "Flatten") && !is(p, "Expand") && !is(p, "Mul") &&
			   !is(p, "Div") && !(is(p, "DequantizeLinear") && p->nin >= 2)) {
			goto no;
		}
		if (NX_ARRAY_PUSH(chain, cap, nchain))
			goto no;
		chain[nchain++] = (struct step){ p, w };
		name = p->in[w];
	}
	if (t->sparse || t->ndims > FOLD_DIMS || !t->nelem ||
	    !nx_fp__num_width(t->data_type) || t->data_type == 9)
		goto no;
	n = t->ndims;
	memcpy(d, t->dims, n * sizeof(*d));
	if (!n)
		d[n++] = 1;
	/* a 1 x 1 Conv's stored kernel [out, in, 1, ...]: [out, in] row-major */
	if (fd->kernel && !nchain && n >= 3)
		n = 2;
	/* integer codes are made floats (Cast or DequantizeLinear) before
	 * anything but a view uses them */
	fl = nx_fp__num_float(t->data_type);
	for (i = nchain; i-- > 0;) {
		p = chain[i].p;
		if (is(p, "Identity")) {
			continue;
		} else if (is(p, "Cast")) {
			if (!float_type(p->to))
				goto no;
			fl = true;
		} else if (is(p, "DequantizeLinear")) {
			int64_t ax = p->axis < 0 ? p->axis + (int64_t)t->ndims : p->axis;

			/* of the stored codes only, in their own coordinates */
			if (fl || t->data_type > 3 || n != t->ndims ||
			    memcmp(d, t->dims, n * sizeof(*d)))
				goto no;
			fl = true;
			r->q = true;
			if (!qvec_charged(fd, p->in[1], &r->scale, &r->nscale))
				goto no;
			if (p->nin >= 3 && p->in[2][0] &&
			    (!qvec_charged(fd, p->in[2], &r->zp, &nv) || nv != r->nscale)) {
				scale_free(fd, &r->zp, nv);
				goto no;
			}
			if (r->nscale != 1) {
				/* per axis: one of the last two of the stored dims, the rest 1 */
				if (nonone(t->dims, t->ndims, a) > 2 || t->ndims < 2 ||
				    (ax != (int64_t)t->ndims - 1 && ax != (int64_t)t->ndims - 2) ||
				    r->nscale != (uint64_t)t->dims[ax])
					goto no;
				for (size_t j = 0; j + 2 < t->ndims; j++)
					if (t->dims[j] != 1)
						goto no;
				r->axis = ax == (int64_t)t->ndims - 1;
			}
		} else if (is(p, "Transpose")) {
			int64_t o[FOLD_DIMS];
			unsigned seen = 0;

			int64_t first = -1;
			size_t big = 0;

			if ((p->nperm && p->nperm != n) || nonone(d, n, a) > 2)
				goto no;
			for (size_t j = 0; j < n; j++) {
				int64_t q = p->nperm ? p->perm[j] : (int64_t)(n - 1 - j);

				if (q < 0 || q >= (int64_t)n || (seen & (1u << q)))
					goto no;
				seen |= 1u << q;
				o[j] = d[q];
				/* the two dims other than 1 swapped: the base transposed */
				if (d[q] != 1 && big++ == 0)
					first = q;
			}
			if (big == 2) {
				for (size_t j = 0; j < n; j++)
					if (d[j] != 1) {
						if (j != (size_t)first)
							r->trans = !r->trans;
						break;
					}
			}
			memcpy(d, o, n * sizeof(*o));
		} else if (is(p, "Mul") || is(p, "Div")) {
			if (!fl)
				goto no;
			/* the base: the view as a matrix, untransposed (no new layout
			 * may follow a scale, so it is the final one) */
			uint64_t vrow = n >= 2 ? (uint64_t)d[n - 2] : 1, vcol = (uint64_t)d[n - 1];

			/* scales held are of this base: it must not have changed
			 * (a view [m, n] then [m, n, 1] is another matrix) */
			if ((r->vr || r->vc) &&
			    (r->brows != (r->trans ? vcol : vrow) || r->stride != (r->trans ? vrow : vcol)))
				goto no;
			r->brows = r->trans ? vcol : vrow;
			r->stride = r->trans ? vrow : vcol;
			if ((k = scale_kind(fd, p->in[1 - chain[i].w], &nv)) < 0 ||
			    !apply_scale(fd, r, p->in[1 - chain[i].w], k, is(p, "Div"), d, n))
				goto no;
		} else {
			size_t na = nonone(d, n, a);

			if (!reshape_view(fd, p, d, &n))
				goto no;
			/* a new layout of the elements: only of the base as stored
			 * (row-major), never of one transposed or scaled */
			if ((nonone(d, n, b) != na || a[0] != b[0] || a[1] != b[1]) &&
			    (r->trans || r->vr || r->vc))
				goto no;
		}
	}
	/* a float matrix as MatMul reads it: every dim but the last two 1 */
	if (!fl)
		goto no;
	for (i = 0; i + 2 < n; i++)
		if (d[i] != 1)
			goto no;
	r->t = t;
	r->rows = n >= 2 ? (uint64_t)d[n - 2] : 1;
	r->cols = (uint64_t)d[n - 1];
	if (r->trans) {
		uint64_t x = r->rows;

		r->rows = r->cols;
		r->cols = x;
	}
	if ((r->vr && r->brows != r->rows) || (r->vc && r->stride != r->cols))
		goto no;
	r->brows = r->rows;
	r->stride = r->cols;
	r->scols = t->ndims ? (uint64_t)t->dims[t->ndims - 1] : 1;
	elem = nx_fp__num_width(t->data_type);
	if (t->location == NX_TENSOR_INLINE && !t->contents_encoded &&
	    t->contents_length != t->nelem * elem)
		goto no;
	free(chain);
	return true;
no:
	free(chain);
	wref_release(fd, r);
	return false;
}

static int temp_file(struct fold *fd, int *out);

struct wsink {
	int fd;
	uint64_t off, cap;
};

static int wsink_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct wsink *k = ctx;

	if (len > k->cap - k->off)
		return NX_ELIMIT;
	while (len) {
		ssize_t w = pwrite(k->fd, buf, len, (off_t)k->off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return NX_EIO;
		buf += w;
		len -= (size_t)w;
		k->off += (uint64_t)w;
	}
	return 0;
}

/* An inline tensor spread over typed fields (varints, unpacked values):
 * its contents decoded once, as the rest of the gate reads them, to an
 * unlinked file that is then read at offsets like any other. */
static int decode(struct fold *fd, struct wref *r, uint64_t len)
{
	struct wsink k = { -1, 0, len };
	int rc;

	if ((rc = temp_file(fd, &k.fd)) != 0)
		return rc;
	r->fd = k.fd;
	r->off = 0;
	rc = nx_onnx_tensor_read(fd->fd, fd->path, r->t, wsink_feed, &k, fd->err);
	if (rc == NX_ELIMIT || rc == NX_EIO || (!rc && k.off != len))
		return nx_error_set(fd->err, NX_EFORMAT, fd->path, 0, -1,
				    "%s: tensor '%s' does not decode to its %llu bytes", fd->path,
				    r->t->name, (unsigned long long)len);
	return rc;
}

/* The stored bytes of r, opened once: the model's, or its external file. */
static int wref_open(struct fold *fd, struct wref *r)
{
	const struct nx_onnx_tensor *t = r->t;
	const char *slash = strrchr(fd->path, '/');
	size_t dlen = slash ? (size_t)(slash - fd->path) + 1 : 0;
	struct stat st;
	uint64_t len = t->nelem * nx_fp__num_width(t->data_type);
	int rc;

	if (r->fd != -1)
		return 0;
	if (t->location == NX_TENSOR_INLINE && t->contents_encoded)
		return decode(fd, r, len);
	if (t->location == NX_TENSOR_INLINE) {
		r->fd = -2;     /* the model's own */
		r->off = t->contents_offset;
		return 0;
	}
	if (!t->ext_location || nx_onnx_location_problem(t->ext_location))
		return nx_error_set(fd->err, NX_EUNSAFE, fd->path, 0, -1,
				    "%s: external data of tensor '%s' is refused", fd->path, t->name);
	if (!(r->path = malloc(dlen + strlen(t->ext_location) + 1)))
		return nx_error_oom(fd->err, NULL);
	memcpy(r->path, fd->path, dlen);
	memcpy(r->path + dlen, t->ext_location, strlen(t->ext_location) + 1);
	if ((rc = nx_fs_open_beneath(&r->fd, fd->dirfd, r->path, O_RDONLY | O_NOCTTY | O_NONBLOCK,
				     fd->err)) != 0) {
		r->fd = -1;
		return rc;
	}
	r->off = t->ext_offset < 0 ? 0 : (uint64_t)t->ext_offset;
	if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode) || r->off > (uint64_t)st.st_size ||
	    len > (uint64_t)st.st_size - r->off)
		return nx_error_set(fd->err, NX_EFORMAT, r->path, 0, -1,
				    "%s: tensor '%s' runs past the end of %s", fd->path, t->name,
				    r->path);
	return 0;
}

/* Stored elements [first, first + n) of r, as floats (dequantized). */
static int read_elems(struct fold *fd, struct wref *r, uint64_t first, size_t n, float *out)
{
	size_t width = nx_fp__num_width(r->t->data_type), i, done = 0;
	unsigned char buf[16384];
	int rc;

	if ((rc = wref_open(fd, r)) != 0)
		return rc;
	while (done < n) {
		size_t k = n - done < sizeof(buf) / width ? n - done : sizeof(buf) / width;
		int from = r->fd == -2 ? fd->fd : r->fd;

		if (nx_pread_full(from, buf, k * width, (off_t)(r->off + (first + done) * width)) !=
		    (ssize_t)(k * width))
			return nx_error_errno(fd->err, NX_EIO, errno, fd->path, "cannot read %s",
					      r->path ? r->path : fd->path);
		for (i = 0; i < k; i++) {
			uint64_t e = first + done + i, a;
			/* the shared decoder (fingerprint_num.c): float8 and the
			 * unsigned types read as the stored-tensor walk reads them */
			float v = (float)nx_fp__num_get(buf + i * width, r->t->data_type);

			if (r->q) {
				a = r->nscale == 1 ? 0 : r->axis ? e % r->scols : e / r->scols;
				v = (v - (r->zp ? r->zp[a] : 0)) * r->scale[a];
			}
			if (r->vr)
				v *= r->vr[e / r->stride];
			if (r->vc)
				v *= r->vc[e % r->stride];
			out[done + i] = (float)(r->c * v);
		}
		done += k;
	}
	return 0;
}

/* Factor r as its logical [rows, cols] matrix (transposed if r->trans), whole. */
static int load_factor(struct fold *fd, struct wref *r, float **out)
{
	uint64_t n = r->rows * r->cols, i, j;
	float *raw = malloc(n * sizeof(float)), *m;
	int rc = 0;

	*out = NULL;
	if (!raw)
		return nx_error_oom(fd->err, NULL);
	for (i = 0; i < r->rows && !rc; i++)
		rc = read_elems(fd, r, r->boff + i * r->stride, (size_t)r->cols, raw + i * r->cols);
	if (rc || !r->trans) {
		if (rc)
			free(raw);
		else
			*out = raw;
		return rc;
	}
	if (!(m = malloc(n * sizeof(float)))) {
		free(raw);
		return nx_error_oom(fd->err, NULL);
	}
	for (i = 0; i < r->rows; i++)
		for (j = 0; j < r->cols; j++)
			m[j * r->rows + i] = raw[i * r->cols + j];
	free(raw);
	*out = m;
	return 0;
}

/* The logical dims of a factor. */
static uint64_t lrows(const struct wref *r)
{
	return r->trans ? r->cols : r->rows;
}

static uint64_t lcols(const struct wref *r)
{
	return r->trans ? r->rows : r->cols;
}

/* An op that passes its first input on as it is, or viewed otherwise
 * (Cast to a float type, a shape op): a term through it is the same term. */
static bool passes(const struct fnode *p)
{
	return p->nin && p->in[0][0] &&
	       (is(p, "Identity") || (is(p, "Cast") && float_type(p->to)) || is(p, "Reshape") ||
		is(p, "Squeeze") || is(p, "Unsqueeze") || is(p, "Flatten") || is(p, "Expand"));
}

/* x as the value it copies or views, so that terms of one input group */
static const char *through_identity(struct fold *fd, const char *x)
{
	const struct fnode *p;

	/* uncapped, charged like weight()'s walk */
	for (size_t i = 0; i <= fd->nn && (p = producer(fd, x)) && passes(p); i++, fd->visits++)
		x = p->in[0];
	return x;
}

static bool letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Einsum of x and a weight in a plain MatMul's form: "X c, c o -> X o"
 * (x W; the weight either way round, either operand first) or
 * "X c y, o c -> X o y" (W x); X letters or "..." then letters. */
static bool einsum_term(struct fold *fd, const struct fnode *p, struct term *t)
{
	char eq[FOLD_EQ_MAX + 1], want[FOLD_EQ_MAX + 4], impl[FOLD_EQ_MAX + 4], *ops[2], *out, *x,
	     *w;
	size_t len = 0, i, nl, nx, pre;
	unsigned wi, cnt[128] = { 0 };
	bool ell;
	char o;

	if (p->nin != 2)
		return false;
	if (p->eq_long) {
		/* an equation the fold cannot read: fail closed, not "no term" */
		fd->over = true;
		fd->unread = p->nout ? p->out[0] : "";
		return false;
	}
	if (!p->eq)
		return false;
	for (i = 0; p->eq[i] && len < FOLD_EQ_MAX; i++)
		if (p->eq[i] != ' ')
			eq[len++] = p->eq[i];
	eq[len] = '\0';
	ops[0] = eq;
	if (!(ops[1] = strchr(eq, ',')))
		return false;
	*ops[1]++ = '\0';
	if ((out = strstr(ops[1], "->")) != NULL) {
		*out = '\0';
		out += 2;
	}
	for (wi = 1;; wi--) {
		if (weight(fd, p->in[wi], &t->f[0]))
			break;
		if (!wi)
			return false;
	}
	w = ops[wi];
	x = ops[1 - wi];
	ell = !strncmp(x, "...", 3);
	pre = ell ? 3 : 0;
	nl = strlen(x + pre);
	if (strlen(w) != 2 || !letter(w[0]) || !letter(w[1]) || w[0] == w[1] || !nl)
		goto no;
	for (i = 0; i < 2; i++)
		cnt[(unsigned char)w[i]]++;
	for (i = pre; x[i]; i++) {
		if (!letter(x[i]) || (cnt[(unsigned char)x[i]] && !strchr(w, x[i])) ||
		    (cnt[(unsigned char)x[i]] && strchr(x + i + 1, x[i])))
			goto no;
		cnt[(unsigned char)x[i]]++;
	}
	if (!out) {
		/* implicit: "..." and the letters seen once, in order */
		len = 0;
		if (ell)
			len += (size_t)snprintf(impl, sizeof(impl), "...");
		for (i = 'A'; i <= 'z' && len < FOLD_EQ_MAX; i++)
			if (cnt[i] == 1)
				impl[len++] = (char)i;
		impl[len] = '\0';
		out = impl;
	}
	/* x's last letter contracted: x W; the one before it: W x */
	for (nx = 1; nx <= 2 && nx <= nl; nx++) {
		char c = x[pre + nl - nx];

		if (!strchr(w, c) || cnt[(unsigned char)c] != 2)
			continue;
		o = w[0] == c ? w[1] : w[0];
		if (cnt[(unsigned char)o] != 1)
			goto no;
		len = (size_t)snprintf(want, sizeof(want), "%.*s%c%s", (int)(pre + nl - nx), x, o,
				       nx == 2 ? x + pre + nl - 1 : "");
		if (len >= sizeof(want) || strcmp(want, out))
			goto no;
		/* the weight as the term wants it: [c, o] for x W, [o, c] for W x */
		if ((nx == 1) != (w[0] == c))
			t->f[0].trans = !t->f[0].trans;
		t->left = nx == 2;
		t->x = p->in[1 - wi];
		return true;
	}
no:
	wref_release(fd, &t->f[0]);
	return false;
}

/* A MatMul/Gemm/Einsum node as a term of some input (false: not one). */
static bool swaps_last(const struct fnode *p)
{
	size_t n = p->nperm;

	if (!is(p, "Transpose") || p->nin < 1 || !p->in[0][0] || n < 2 || n > FOLD_DIMS ||
	    p->perm[n - 2] != (int64_t)n - 1 || p->perm[n - 1] != (int64_t)n - 2)
		return false;
	for (size_t i = 0; i + 2 < n; i++)
		if (p->perm[i] != (int64_t)i)
			return false;
	return true;
}

static bool as_term(struct fold *fd, const struct fnode *p, double coef, struct term *t)
{
	const struct fnode *q;
	bool ok;

	memset(t, 0, sizeof(*t));
	t->coef = coef;
	if (is(p, "Gemm")) {
		/* Gemm(x, W) (x^T when transA), or Gemm(W, x) the W x form
		 * (x^T when transB): the weight on either side, like MatMul */
		if (p->nin < 2)
			return false;
		if (weight(fd, p->in[1], &t->f[0])) {
			if (p->trans_b)
				t->f[0].trans = !t->f[0].trans;
			t->x = p->in[0];
			t->xt = p->trans_a;
		} else if (weight(fd, p->in[0], &t->f[0])) {
			if (p->trans_a)
				t->f[0].trans = !t->f[0].trans;
			t->x = p->in[1];
			t->xt = p->trans_b;
			t->left = true;
		} else {
			return false;
		}
		t->coef *= p->alpha;
	} else if (is(p, "MatMul") && p->nin == 2) {
		if (weight(fd, p->in[1], &t->f[0])) {
			t->x = p->in[0];
		} else if (weight(fd, p->in[0], &t->f[0])) {
			t->x = p->in[1];
			t->left = true;
		} else {
			return false;
		}
	} else if (is(p, "Conv") && p->nin >= 2 && p->in[0][0] && !p->strided) {
		/* a stored kernel [out, in, 1, ...] of group 1, stride and
		 * dilation 1, no pad: W [out, in] on the channel axis; a bias is
		 * no term.  (A kernel computed by the graph is not read.) */
		const struct nx_onnx_tensor *k = tensor(fd, p->in[1]);

		if (!k || k->ndims < 3 || k->ndims > FOLD_DIMS || k->dims[0] < 1 || k->dims[1] < 1)
			return false;
		for (size_t i = 2; i < k->ndims; i++)
			if (k->dims[i] != 1)
				return false;
		fd->kernel = true;
		ok = weight(fd, p->in[1], &t->f[0]);
		fd->kernel = false;
		if (!ok)
			return false;
		if (t->f[0].rows * t->f[0].cols != (uint64_t)k->dims[0] * (uint64_t)k->dims[1] ||
		    t->f[0].rows != (uint64_t)k->dims[0] || t->f[0].trans) {
			wref_release(fd, &t->f[0]);
			return false;
		}
		t->x = p->in[0];
		t->left = true;
		t->conv = true;
	} else if (is(p, "Einsum")) {
		if (!einsum_term(fd, p, t))
			return false;
	} else {
		return false;
	}
	t->nf = 1;
	/* x and x^T are one input: terms of either group, the swap kept */
	t->x = through_identity(fd, t->x);
	for (size_t i = 0; i <= fd->nn && (q = producer(fd, t->x)) && swaps_last(q);
	     i++, fd->visits++) {
		t->x = through_identity(fd, q->in[0]);
		t->xt = !t->xt;
	}
	return true;
}

/* x a Concat of k copies of one value along the contracted axis
 * ([x, x] @ [A; B] = x A + x B): k, and t->x that value; else 1. */
static size_t self_concat(struct fold *fd, struct term *t)
{
	const struct fnode *p = producer(fd, t->x);
	const char *x;
	size_t i;

	if (!p || !is(p, "Concat") || p->nin < 2 || t->nf != 1 || t->xt || t->conv ||
	    p->axis != (t->left ? -2 : -1))
		return 1;
	x = through_identity(fd, p->in[0]);
	for (i = 1; i < p->nin; i++)
		if (strcmp(through_identity(fd, p->in[i]), x))
			return 1;
	if ((t->left ? lcols(&t->f[0]) : lrows(&t->f[0])) % p->nin)
		return 1;
	t->x = x;
	return p->nin;
}

/* *v a copy of from[n] (scale vectors charged to FOLD_SCALES_MAX) */
static bool copyv(struct fold *fd, float **v, const float *from, uint64_t n, bool charge)
{
	if (!from)
		return true;
	if (charge && n > FOLD_SCALES_MAX - fd->scales) {
		fd->over = true;
		return false;
	}
	if (!(*v = malloc(n * sizeof(float))))
		return false;
	memcpy(*v, from, n * sizeof(float));
	if (charge)
		fd->scales += n;
	return true;
}

/* Block j of k of t's weight along the contracted axis, as a term of its
 * own (a copy: its own scales, its own file). */
static bool block_term(struct fold *fd, const struct term *t, size_t j, size_t k, struct term *b)
{
	struct wref *r = &b->f[0];
	const struct wref *f = &t->f[0];
	bool rows = t->left == f->trans;      /* the base's rows split */
	uint64_t h;

	*b = *t;
	r->fd = -1;
	r->path = NULL;
	r->scale = r->zp = r->vr = r->vc = NULL;
	if (!copyv(fd, &r->vr, f->vr, r->brows, true) || !copyv(fd, &r->vc, f->vc, r->stride, true) ||
	    !copyv(fd, &r->scale, f->scale, r->nscale, true) ||
	    !copyv(fd, &r->zp, f->zp, r->nscale, true)) {
		wref_release(fd, r);
		return false;
	}
	if (rows) {
		h = r->rows / k;
		r->boff += j * h * r->stride;
		r->rows = h;
	} else {
		h = r->cols / k;
		r->boff += j * h;
		r->cols = h;
	}
	return true;
}

/* Follow x back through scalar Mul/Div and Neg to a MatMul/Gemm by a
 * factor of inner dimension k <= FOLD_RANK_MAX on the same side: t becomes
 * a low-rank term of that MatMul's input. */
static void low_rank(struct fold *fd, struct term *t)
{
	const struct fnode *p;
	struct term u;
	double c = 1, v;
	const char *x = t->x;
	size_t steps;
	uint64_t k = t->left ? lcols(&t->f[0]) : lrows(&t->f[0]);

	if (k > FOLD_RANK_MAX)
		return;
	/* uncapped, charged like weight()'s walk */
	for (steps = 0; steps <= fd->nn && (p = producer(fd, x)); steps++, fd->visits++) {
		if (passes(p)) {
			x = p->in[0];
		} else if (is(p, "Neg") && p->nin == 1) {
			c = -c;
			x = p->in[0];
		} else if ((is(p, "Mul") || is(p, "Div")) && p->nin == 2 && scalar(fd, p->in[1], &v)) {
			c = is(p, "Mul") ? c * v : v ? c / v : 0;
			x = p->in[0];
		} else if (is(p, "Mul") && p->nin == 2 && scalar(fd, p->in[0], &v)) {
			c *= v;
			x = p->in[1];
		} else {
			break;
		}
	}
	if (!p || !c || !as_term(fd, p, c, &u))
		return;
	/* factors past FOLD_FACTOR_MAX are kept: fold_group fails the sum
	 * closed (NX_ELIMIT) rather than leave it unfolded */
	if (u.left != t->left || (t->left ? lrows(&u.f[0]) != k : lcols(&u.f[0]) != k)) {
		wref_release(fd, &u.f[0]);
		return;
	}
	t->f[1] = t->f[0];
	t->f[0] = u.f[0];
	t->nf = 2;
	t->coef *= u.coef;
	t->x = u.x;
}

static void term_dims(struct term *t)
{
	/* x W1 W2: [rows(W1), cols(W2)]; W2 W1 x: [rows(W2), cols(W1)] */
	const struct wref *a = &t->f[0], *b = &t->f[t->nf - 1];

	t->m = t->left ? lrows(b) : lrows(a);
	t->n = t->left ? lcols(a) : lcols(b);
}

static int push_term(struct fold *fd, const struct term *t)
{
	if (NX_ARRAY_PUSH(fd->terms, fd->capterms, fd->nterms))
		return nx_error_oom(fd->err, NULL);
	fd->terms[fd->nterms++] = *t;
	return 0;
}

/* A Clip no value reaches: both bounds absent, infinite or past 1e30 in
 * magnitude (FLT_MAX is 3.4e38: a layer's values near 1e30 are no layer's).
 * A Clip with finite bounds inside that changes the function: not read. */
#define FOLD_CLIP_OPEN 1e30
static bool open_clip(struct fold *fd, const struct fnode *p)
{
	double lo = p->lo, hi = p->hi;

	if (!is(p, "Clip") || p->nin < 1 || !p->in[0][0] || p->nin > 3)
		return false;
	if (p->nin >= 2 && p->in[1][0] && !scalar(fd, p->in[1], &lo))
		return false;
	if (p->nin >= 3 && p->in[2][0] && !scalar(fd, p->in[2], &hi))
		return false;
	return lo <= -FOLD_CLIP_OPEN && hi >= FOLD_CLIP_OPEN;
}

/* How expand reads p: 1 a sum (every input), 2 one input (*arg) passed on,
 * negated (Neg) or scaled (Mul/Div by a scale of kind *sk, scale_kind),
 * 0 not at all. */
static int expand_kind(struct fold *fd, const struct fnode *p, size_t *arg, int *sk)
{
	uint64_t n;

	*arg = 0;
	*sk = -1;
	if (is(p, "Add") || is(p, "Sub") || is(p, "Sum"))
		return 1;
	if ((is(p, "Neg") && p->nin == 1 && p->in[0][0]) || passes(p) || open_clip(fd, p) ||
	    swaps_last(p))
		return 2;
	if ((is(p, "Mul") || is(p, "Div")) && p->nin == 2 && p->in[0][0] &&
	    (*sk = scale_kind(fd, p->in[1], &n)) >= 0)
		return 2;
	if (is(p, "Mul") && p->nin == 2 && p->in[1][0] && (*sk = scale_kind(fd, p->in[0], &n)) >= 0) {
		*arg = 1;
		return 2;
	}
	return 0;
}

static bool term_op(const struct fnode *p)
{
	return is(p, "MatMul") || is(p, "Gemm") || is(p, "Einsum");
}

/* The expansion budget spent (or sums nested too deep, or scales past
 * their memory): fail closed. */
static int over_budget(struct fold *fd)
{
	if (fd->unread)
		return nx_error_set(fd->err, NX_ELIMIT, fd->path, 0, -1,
				    "%s: '%s' (a weight's scale or zero point, or an Einsum "
				    "term's equation) cannot be read to fold (its type, size "
				    "or stored bytes)",
				    fd->path, fd->unread);
	return nx_error_set(fd->err, NX_ELIMIT, fd->path, 0, -1,
			    "%s: the graph's sums take more than %u steps a node, nest "
			    "deeper than %u, or hold more than %u scale elements, to fold",
			    fd->path, FOLD_VISITS_PER_NODE, FOLD_DEPTH_MAX, FOLD_SCALES_MAX);
}

/* A vector scale between a term and its sum, outermost last. */
struct oscale {
	const float *v;
	uint64_t n;
	int k;                 /* scale_kind: 1 along the last axis, 2 the one before;
				* 0 no scale: a Transpose of the last two axes */
	bool div;
	const struct oscale *up;
};

/* The scales on t's output as scales of its matrix: the last axis scales
 * x W's columns, the one before W x's rows (the other way round, a scale
 * per position of x, is no scale of the matrix: false). */
static bool out_scales(struct fold *fd, struct term *t, const struct oscale *os)
{
	struct wref *f = &t->f[t->nf - 1];
	bool flip = false;
	int k;

	for (; os; os = os->up) {
		if (!os->k) {
			/* a Transpose of the last two axes: (x W)^T = W^T x^T.
			 * A Conv's output is [N, out, ...]: a Transpose (after a
			 * view to [out, L]) leaves its kernel W as it is, and
			 * Conv terms group only with Conv terms */
			flip = !flip && !t->conv;
			continue;
		}
		k = flip ? 3 - os->k : os->k;
		/* a Conv's output is [N, out, ...]: no axis of its matrix */
		if (t->conv || (k == 1) == t->left ||
		    !wscale(fd, f, (k == 1) == f->trans, os->v, os->n, os->div))
			return false;
	}
	if (flip) {
		t->left = !t->left;
		t->xt = !t->xt;
		for (size_t j = 0; j < t->nf; j++)
			t->f[j].trans = !t->f[j].trans;
		term_dims(t);
	}
	return true;
}

static bool over(struct fold *fd)
{
	return fd->visits > fd->visit_max || fd->over;
}

/* The terms of value name (times coef, and the scales os) into fd->terms:
 * depth-first, each step charged to fd->visits. */
static int expand(struct fold *fd, const char *name, double coef, const struct oscale *os,
		  unsigned depth)
{
	const struct fnode *p = producer(fd, name);
	struct term t, b;
	struct oscale here;
	size_t i, k, arg;
	uint64_t n;
	float *v = NULL;
	int rc = 0, kind, sk;

	if (++fd->visits > fd->visit_max || depth > FOLD_DEPTH_MAX)
		return over_budget(fd);
	if (!p)
		return 0;
	if ((kind = expand_kind(fd, p, &arg, &sk)) == 1) {
		for (i = 0; i < p->nin && !rc; i++)
			if (p->in[i][0])
				rc = expand(fd, p->in[i], is(p, "Sub") && i == 1 ? -coef : coef, os,
					    depth + 1);
		return rc;
	}
	if (kind == 2) {
		if (is(p, "Neg"))
			coef = -coef;
		if (swaps_last(p)) {
			here = (struct oscale){ NULL, 0, 0, false, os };
			return expand(fd, p->in[0], coef, &here, depth + 1);
		}
		if (sk < 0)
			return expand(fd, p->in[arg], coef, os, depth + 1);
		scale_kind(fd, p->in[1 - arg], &n);
		if (n > FOLD_SCALES_MAX - fd->scales)
			return over_budget(fd);
		if (!qvec(fd, p->in[1 - arg], &v, &n))
			return over(fd) ? over_budget(fd) : 0;
		if (sk == 0) {
			coef = is(p, "Div") ? (v[0] ? coef / v[0] : 0) : coef * v[0];
			free(v);
			return coef ? expand(fd, p->in[arg], coef, os, depth + 1) : 0;
		}
		fd->scales += n;
		here = (struct oscale){ v, n, sk, is(p, "Div"), os };
		rc = expand(fd, p->in[arg], coef, &here, depth + 1);
		fd->scales -= n;
		free(v);
		return rc;
	}
	/* Gemm(x, A, C) is x A + beta C: C another operand of the sum */
	if (is(p, "Gemm") && p->nin >= 3 && p->in[2][0] && p->beta &&
	    (rc = expand(fd, p->in[2], coef * p->beta, os, depth + 1)) != 0)
		return rc;
	if (!as_term(fd, p, coef, &t))
		return over(fd) ? over_budget(fd) : 0;
	low_rank(fd, &t);
	term_dims(&t);
	if (!out_scales(fd, &t, os)) {
		for (i = 0; i < t.nf; i++)
			wref_release(fd, &t.f[i]);
		return over(fd) ? over_budget(fd) : 0;
	}
	if ((k = self_concat(fd, &t)) > 1) {
		/* [x, x] @ [A; B]: a term a block */
		for (i = 0; i < k && !rc; i++) {
			if (!block_term(fd, &t, i, k, &b))
				rc = over(fd) ? over_budget(fd) : nx_error_oom(fd->err, NULL);
			else {
				term_dims(&b);
				if ((rc = push_term(fd, &b)) != 0)
					wref_release(fd, &b.f[0]);
			}
		}
		wref_release(fd, &t.f[0]);
		return rc ? rc : over(fd) ? over_budget(fd) : 0;
	}
	if ((rc = push_term(fd, &t)) != 0) {
		for (i = 0; i < t.nf; i++)
			wref_release(fd, &t.f[i]);
		return rc;
	}
	/* the walks through Identity in as_term and low_rank were charged */
	return over(fd) ? over_budget(fd) : 0;
}

static void release_terms(struct fold *fd)
{
	for (size_t i = 0; i < fd->nterms; i++)
		for (size_t j = 0; j < fd->terms[i].nf; j++)
			wref_release(fd, &fd->terms[i].f[j]);
	fd->nterms = 0;
}

/* Terms that fold together: one input, side and shape. */
static bool same_group(const struct term *a, const struct term *b)
{
	return a->left == b->left && a->xt == b->xt && a->conv == b->conv && a->m == b->m &&
	       a->n == b->n && !strcmp(a->x, b->x);
}

/* The same codes dequantized the same way (one weight reached twice);
 * codes under another scale or zero point are another matrix. */
static bool same_q(const struct wref *a, const struct wref *b)
{
	if (!a->q)
		return true;
	return a->nscale == b->nscale && a->axis == b->axis &&
	       !memcmp(a->scale, b->scale, a->nscale * sizeof(float)) &&
	       !a->zp == !b->zp && (!a->zp || !memcmp(a->zp, b->zp, a->nscale * sizeof(float)));
}

static bool same_factors(const struct term *a, const struct term *b)
{
	if (a->nf != b->nf)
		return false;
	for (size_t j = 0; j < a->nf; j++)
		if (a->f[j].t != b->f[j].t || a->f[j].trans != b->f[j].trans ||
		    a->f[j].rows != b->f[j].rows || a->f[j].q != b->f[j].q ||
		    a->f[j].boff != b->f[j].boff || a->f[j].c != b->f[j].c ||
		    a->f[j].vr || a->f[j].vc || b->f[j].vr || b->f[j].vc ||
		    !same_q(&a->f[j], &b->f[j]))
			return false;
	return true;
}

/* "A - 4 U V (folded)" */
static char *fold_name(struct term **g, size_t ng)
{
	char *s = malloc(FOLD_NAME_MAX + 32);
	size_t len = 0, i, j;

	if (!s)
		return NULL;
	for (i = 0; i < ng && len < FOLD_NAME_MAX; i++) {
		double c = g[i]->coef < 0 ? -g[i]->coef : g[i]->coef;

		len += (size_t)snprintf(s + len, FOLD_NAME_MAX - len, "%s", g[i]->coef < 0
					? (i ? " - " : "-") : (i ? " + " : ""));
		if (len < FOLD_NAME_MAX && (c < 0.999999 || c > 1.000001))
			len += (size_t)snprintf(s + len, FOLD_NAME_MAX - len, "%g ", c);
		for (j = 0; j < g[i]->nf && len < FOLD_NAME_MAX; j++)
			len += (size_t)snprintf(s + len, FOLD_NAME_MAX - len, "%s%s%s",
						j ? " " : "", g[i]->f[j].t->name,
						g[i]->f[j].trans ? "^T" : "");
	}
	if (len > FOLD_NAME_MAX)
		len = FOLD_NAME_MAX;
	snprintf(s + len, 32, "%s (folded)", i < ng ? " ..." : "");
	return s;
}

/* An unlinked file to write a folded matrix to. */
static int temp_file(struct fold *fd, int *out)
{
	const char *dir = getenv("TMPDIR");
	char tmpl[4096];
	int t;

	if (!dir || !dir[0] || strlen(dir) > 4000)
		dir = "/tmp";
	t = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (t < 0) {
		snprintf(tmpl, sizeof(tmpl), "%s/nexus-fold-XXXXXX", dir);
		if ((t = mkstemp(tmpl)) >= 0)
			unlink(tmpl);
	}
	if (t < 0)
		return nx_error_errno(fd->err, NX_EIO, errno, dir,
				      "cannot make a temporary file in %s for the folded weights",
				      dir);
	*out = t;
	return 0;
}

/* Adds c times rows [r0, r0 + nr) of O (the fold's output, O = M or
 * M^T when ot) of full term t to blk ([nr, ocol]). */
static int add_full(struct fold *fd, struct term *t, bool ot, uint64_t r0, uint64_t nr,
		    uint64_t ocol, float *blk, float *tmp)
{
	struct wref *v = &t->f[0];
	uint64_t i, j;
	int rc;

	if (v->trans == ot) {
		/* O is the stored view: its rows in order (a block's, a row at a time) */
		for (i = 0; i < nr; i += v->stride == v->cols ? nr : 1)
			if ((rc = read_elems(fd, v, v->boff + (r0 + i) * v->stride,
					     (size_t)((v->stride == v->cols ? nr : 1) * ocol),
					     tmp + i * ocol)) != 0)
				return rc;
		for (i = 0; i < nr * ocol; i++)
			blk[i] += (float)(t->coef * tmp[i]);
		return 0;
	}
	/* O is the stored view transposed: a piece of each stored row */
	for (j = 0; j < ocol; j++) {
		if ((rc = read_elems(fd, v, v->boff + j * v->stride + r0, (size_t)nr, tmp)) != 0)
			return rc;
		for (i = 0; i < nr; i++)
			blk[i * ocol + j] += (float)(t->coef * tmp[i]);
	}
	return 0;
}

/* The same for a low-rank term, M = P Q (P [m, k], Q [k, n], in memory). */
static void add_low_rank(const struct term *t, const float *P, const float *Q, uint64_t k,
			 bool ot, uint64_t r0, uint64_t nr, uint64_t ocol, float *blk)
{
	uint64_t i, j, l;

	for (i = 0; i < nr; i++) {
		float *o = blk + i * ocol;

		for (l = 0; l < k; l++) {
			if (!ot) {
				/* O[r, :] += c P[r, l] Q[l, :] */
				float a = (float)(t->coef * P[(r0 + i) * k + l]);
				const float *q = Q + l * t->n;

				for (j = 0; j < ocol; j++)
					o[j] += a * q[j];
			} else {
				/* O[r, j] = M[j, r]: += c P[j, l] Q[l, r] */
				float b = (float)(t->coef * Q[l * t->n + r0 + i]);

				for (j = 0; j < ocol; j++)
					o[j] += b * P[j * k + l];
			}
		}
	}
}

static int write_full(struct fold *fd, int tf, const float *p, uint64_t len, uint64_t off)
{
	const unsigned char *b = (const unsigned char *)p;

	while (len) {
		ssize_t k = pwrite(tf, b, len, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return nx_error_errno(fd->err, NX_EIO, errno ? errno : EIO, fd->path,
					      "cannot write the folded weights");
		b += k;
		len -= (uint64_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

/* The group's matrix sum(c M), written as O = M (or M^T when its first
 * full term is stored so: its rows read in order) to a temporary file a
 * block of rows at a time, then fingerprinted as a student tensor. */
static int fold_group(struct fold *fd, struct term **g, size_t ng)
{
	const struct term *full = NULL;
	uint64_t orow, ocol, r0, rb, nr, cost = 0, k;
	float *blk = NULL, *tmp = NULL, **fac = NULL;
	struct nx_onnx_tensor t;
	int64_t dims[2];
	char *name = NULL;
	bool ot;
	size_t i, j;
	int tf = -1, rc = 0;

	for (i = 0; i < ng; i++) {
		if (!full && g[i]->nf == 1)
			full = g[i];
		for (j = 0; j < g[i]->nf; j++)
			/* a block ([x, x] @ [A; B]) reads its own elements only */
			cost += g[i]->f[j].rows * g[i]->f[j].cols *
				nx_fp__num_width(g[i]->f[j].t->data_type);
	}
	if (!full)
		return 0;
	for (i = 0, k = 0; i < ng; i++)
		if (g[i]->nf == 2)
			k += g[i]->f[0].t->nelem + g[i]->f[1].t->nelem;
	if (k > FOLD_FACTOR_MAX)
		return nx_error_set(fd->err, NX_ELIMIT, fd->path, 0, -1,
				    "%s: the low-rank terms of one sum hold more than %u elements "
				    "to fold", fd->path, FOLD_FACTOR_MAX);
	if (cost > fd->charge_max - fd->charged)
		return nx_error_set(fd->err, NX_ELIMIT, fd->path, 0, -1,
				    "%s: the graph's sums of linear maps take more than the model's "
				    "own %llu bytes of weights to fold", fd->path,
				    (unsigned long long)fd->charge_max);
	fd->charged += cost;
	ot = full->f[0].trans;
	orow = ot ? full->n : full->m;
	ocol = ot ? full->m : full->n;
	if (ocol > FOLD_COLS_MAX)
		return nx_error_set(fd->err, NX_ELIMIT, fd->path, 0, -1,
				    "%s: a sum of linear maps with rows of more than %u columns "
				    "to fold", fd->path, FOLD_COLS_MAX);
	rb = FOLD_BLOCK / 4 / ocol ? FOLD_BLOCK / 4 / ocol : 1;
	if (rb > orow)
		rb = orow;
	if (!(blk = malloc(rb * ocol * sizeof(float))) ||
	    !(tmp = malloc((rb * ocol > ocol ? rb * ocol : ocol) * sizeof(float))) ||
	    !(fac = calloc(2 * ng, sizeof(*fac))) || !(name = fold_name(g, ng))) {
		rc = nx_error_oom(fd->err, NULL);
		goto out;
	}
	/* a low-rank term's factors, whole: P then Q (x U V: U V; V U x: V U) */
	for (i = 0; i < ng && !rc; i++)
		if (g[i]->nf == 2) {
			rc = load_factor(fd, &g[i]->f[g[i]->left ? 1 : 0], &fac[2 * i]);
			if (!rc)
				rc = load_factor(fd, &g[i]->f[g[i]->left ? 0 : 1], &fac[2 * i + 1]);
		}
	if (rc || (rc = temp_file(fd, &tf)) != 0)
		goto out;
	for (r0 = 0; r0 < orow && !rc; r0 += nr) {
		nr = orow - r0 < rb ? orow - r0 : rb;
		memset(blk, 0, nr * ocol * sizeof(float));
		for (i = 0; i < ng && !rc; i++) {
			if (g[i]->nf == 1) {
				rc = add_full(fd, g[i], ot, r0, nr, ocol, blk, tmp);
				continue;
			}
			k = g[i]->left ? lcols(&g[i]->f[1]) : lcols(&g[i]->f[0]);
			add_low_rank(g[i], fac[2 * i], fac[2 * i + 1], k, ot, r0, nr, ocol, blk);
		}
		if (!rc)
			rc = write_full(fd, tf, blk, nr * ocol * sizeof(float), r0 * ocol * sizeof(float));
	}
	if (rc)
		goto out;
	memset(&t, 0, sizeof(t));
	dims[0] = (int64_t)orow;
	dims[1] = (int64_t)ocol;
	t.name = name;
	t.data_type = 1;
	t.ndims = 2;
	t.dims = dims;
	t.nelem = orow * ocol;
	t.location = NX_TENSOR_INLINE;
	t.contents_length = t.data_length = orow * ocol * sizeof(float);
	t.scope = (char *)"graph";
	t.referenced = true;
	rc = fd->one(fd->w, &t, tf, "(folded weights)", fd->err);
	if (!rc && push_str(&fd->names, &fd->nnames, name))
		rc = nx_error_oom(fd->err, NULL);
	name = NULL;
out:
	for (i = 0; fac && i < 2 * ng; i++)
		free(fac[i]);
	free(fac);
	free(name);
	free(blk);
	free(tmp);
	if (tf >= 0)
		close(tf);
	return rc;
}

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b))

/* Orders terms by group (input, side, shape), then by factors (duplicates
 * side by side), then as they were found. */
static int cmp_term(const void *pa, const void *pb)
{
	const struct term *a = *(const struct term *const *)pa, *b = *(const struct term *const *)pb;
	int c;

	if ((c = strcmp(a->x, b->x)) != 0 || (c = CMP(a->left, b->left)) != 0 ||
	    (c = CMP(a->xt, b->xt)) != 0 || (c = CMP(a->conv, b->conv)) != 0 ||
	    (c = CMP(a->m, b->m)) != 0 || (c = CMP(a->n, b->n)) != 0 ||
	    (c = CMP(a->nf, b->nf)) != 0)
		return c;
	for (size_t j = 0; j < a->nf; j++)
		if ((c = CMP(a->f[j].t, b->f[j].t)) != 0 ||
		    (c = CMP(a->f[j].trans, b->f[j].trans)) != 0 ||
		    (c = CMP(a->f[j].rows, b->f[j].rows)) != 0 || (c = CMP(a->f[j].q, b->f[j].q)) != 0 ||
		    (c = CMP(a->f[j].boff, b->f[j].boff)) != 0)
			return c;
	return CMP(a, b);
}

static int cmp_found(const void *pa, const void *pb)
{
	return CMP(*(const struct term *const *)pa, *(const struct term *const *)pb);
}

/* The terms of one sum tree, grouped by input, side and shape; duplicates
 * (one weight reached twice) merged; each group of two or more folded, its
 * terms in the order they were found.  Sorted, not compared pairwise: a
 * sum of many terms costs n log n. */
static int fold_terms(struct fold *fd)
{
	struct term **o, **g;
	size_t i, j, ng;
	int rc = 0;

	if (fd->nterms < 2)
		return 0;
	if (!(o = malloc(fd->nterms * sizeof(*o))) || !(g = malloc(fd->nterms * sizeof(*g)))) {
		free(o);
		return nx_error_oom(fd->err, NULL);
	}
	for (i = 0; i < fd->nterms; i++)
		o[i] = &fd->terms[i];
	qsort(o, fd->nterms, sizeof(*o), cmp_term);
	for (i = 0; i < fd->nterms && !rc; i = j) {
		ng = 0;
		for (j = i; j < fd->nterms && same_group(o[i], o[j]); j++) {
			if (ng && same_factors(g[ng - 1], o[j]))
				g[ng - 1]->coef += o[j]->coef;
			else
				g[ng++] = o[j];
		}
		if (ng >= 2) {
			qsort(g, ng, sizeof(*g), cmp_found);
			rc = fold_group(fd, g, ng);
		}
	}
	free(g);
	free(o);
	return rc;
}

int nx_fp__fold(struct tensors *w, int dirfd, const char *path, int fd, const nx_onnx_summary *s,
		nx_fp__fold_fn one, nx_error *err)
{
	struct fold f;
	size_t i, j, arg;
	int rc, kind, sk;

	memset(&f, 0, sizeof(f));
	f.w = w;
	f.one = one;
	f.dirfd = dirfd;
	f.fd = fd;
	f.path = path;
	f.s = s;
	f.err = err;
	for (i = 0; i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (t->attribute && !t->sparse) {
			/* a Constant node's value, found by its offset */
			if (NX_ARRAY_PUSH_EXACT(f.consts, f.nconsts)) {
				rc = nx_error_oom(err, NULL);
				goto out;
			}
			f.consts[f.nconsts++] = (struct fconst){ t->msg_offset, i };
			continue;
		}
		if (t->attribute || t->sparse || t->duplicate || strcmp(t->scope, "graph"))
			continue;
		if (NX_ARRAY_PUSH_EXACT(f.tens, f.ntens)) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		f.tens[f.ntens++] = (struct fkey){ t->name, i };
	}
	if (f.ntens)
		qsort(f.tens, f.ntens, sizeof(*f.tens), cmp_key);
	if (f.nconsts)
		qsort(f.consts, f.nconsts, sizeof(*f.consts), cmp_const);
	if ((rc = read_graph(&f)) != 0)
		goto out;
	for (i = 0; i < f.nn; i++)
		for (j = 0; j < f.n[i].nout; j++) {
			if (!f.n[i].out[j][0])
				continue;
			if (NX_ARRAY_PUSH_EXACT(f.prod, f.nprod)) {
				rc = nx_error_oom(err, NULL);
				goto out;
			}
			f.prod[f.nprod++] = (struct fkey){ f.n[i].out[j], i };
		}
	if (f.nprod)
		qsort(f.prod, f.nprod, sizeof(*f.prod), cmp_key);
	/* a value another sum reads is folded with that sum, not alone */
	for (i = 0; i < f.nn; i++) {
		if (!f.n[i].op)
			continue;
		if (is(&f.n[i], "Gemm"))
			kind = 3;   /* only C, summed with the product */
		else if (!(kind = expand_kind(&f, &f.n[i], &arg, &sk)))
			continue;
		for (j = 0; j < f.n[i].nin; j++) {
			if ((kind == 2 && j != arg) || (kind == 3 && j != 2) || !f.n[i].in[j][0])
				continue;
			if (NX_ARRAY_PUSH_EXACT(f.inner, f.ninner)) {
				rc = nx_error_oom(err, NULL);
				goto out;
			}
			f.inner[f.ninner++] = (struct fkey){ f.n[i].in[j], i };
		}
	}
	if (f.ninner)
		qsort(f.inner, f.ninner, sizeof(*f.inner), cmp_key);
	f.visit_max = FOLD_VISITS_PER_NODE * (uint64_t)f.nn + 1024;
	f.charge_max = s->weight_bytes;
	for (i = 0; i < f.nn && !rc; i++) {
		/* a sum read by no other, or a term by none ([x, x] @ [A; B]) */
		if (!f.n[i].op || !f.n[i].nout || !f.n[i].out[0][0] ||
		    !(expand_kind(&f, &f.n[i], &arg, &sk) || term_op(&f.n[i])) ||
		    find(f.inner, f.ninner, f.n[i].out[0]))
			continue;
		rc = expand(&f, f.n[i].out[0], 1, NULL, 0);
		if (!rc)
			rc = fold_terms(&f);
		release_terms(&f);
	}
out:
	release_terms(&f);
	free(f.terms);
	for (i = 0; i < f.nn; i++) {
		for (j = 0; j < f.n[i].nin; j++)
			free(f.n[i].in[j]);
		for (j = 0; j < f.n[i].nout; j++)
			free(f.n[i].out[j]);
		free(f.n[i].in);
		free(f.n[i].out);
		free(f.n[i].op);
		free(f.n[i].eq);
	}
	free(f.n);
	free(f.tens);
	free(f.consts);
	free(f.prod);
	free(f.inner);
	for (i = 0; i < f.nnames; i++)
		free(f.names[i]);
	free(f.names);
	nx_pb_file_release(&f.f);
	return rc;
}
