/*
 * verify_consts.c - constant subgraphs of the student's main graph (part of
 * `weights`, docs/DESIGN-NOTES.md "Constant subgraphs").
 *
 * A value is constant when it is an initializer, the output of a Constant
 * node, of Sub(x, x) or Xor(x, x) (zero whatever x is), or the output of a
 * node all of whose inputs are constant.  An
 * exporter folds such nodes (torch.onnx.export's do_constant_folding, ORT's
 * optimizer): what is left of them in a canonical student is a decoding
 * step - bit planes reassembled, an additive or XOR split summed, a
 * permutation undone with Gather - that turns bytes no fingerprint knows
 * into a teacher tensor at run time.  So a node whose inputs are all
 * constant and hold NX_CONST_BYTES_MIN bytes or more in all FAILs
 * (constant-subgraph), except the steps exporters do leave unfolded: a
 * weight stored in another type or layout and converted where it is used
 * (Cast, DequantizeLinear, Transpose, Reshape, Squeeze, Unsqueeze,
 * Flatten, Identity), when only its first input is that large.
 * Subgraphs of If/Loop/Scan are not looked into (their nodes read outer
 * values, which this pass does not follow).
 */
#include "verify_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/strset_int.h"
#include "nexus/pb.h"

#define CHECK NX_CHECK_WEIGHTS
/* Bytes of constant input above which a node must have been folded. */
#define NX_CONST_BYTES_MIN 4096u
#define NX_CONST_NODES_MAX 4000000u   /* nodes of the main graph read */

/* Ops an exporter leaves between a stored weight and its use. */
static const char *const decode_ops[] = {
	"Cast", "DequantizeLinear", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
	"Identity",
};

/* Ops whose output is not a function of their inputs. */
static const char *const random_ops[] = {
	"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
	"Bernoulli", "Dropout",
};

static bool in_list(const char *op, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(op, list[i]))
			return true;
	return false;
}

/* name -> bytes of constant data it is computed from (open addressing). */
struct cmap {
	struct centry { char *name; uint64_t bytes; } *e;
	size_t cap, n;
};

static struct centry *cmap_slot(const struct cmap *m, const char *name)
{
	size_t i = (size_t)nx_keyhash(name, strlen(name), NULL, 0) & (m->cap - 1);

	while (m->e[i].name && strcmp(m->e[i].name, name))
		i = (i + 1) & (m->cap - 1);
	return &m->e[i];
}

static int cmap_put(struct cmap *m, const char *name, uint64_t bytes)
{
	struct centry *s;

	if (2 * (m->n + 1) > m->cap) {
		struct cmap b = { calloc(m->cap ? 2 * m->cap : 1024, sizeof(*b.e)),
				  m->cap ? 2 * m->cap : 1024, 0 };
		size_t i;

		if (!b.e)
			return NX_ENOMEM;
		for (i = 0; i < m->cap; i++)
			if (m->e[i].name) {
				*cmap_slot(&b, m->e[i].name) = m->e[i];
				b.n++;
			}
		free(m->e);
		*m = b;
	}
	s = cmap_slot(m, name);
	if (!s->name) {
		if (!(s->name = strdup(name)))
			return NX_ENOMEM;
		m->n++;
	}
	s->bytes = bytes;
	return 0;
}

static const struct centry *cmap_get(const struct cmap *m, const char *name)
{
	const struct centry *s;

	if (!m->cap)
		return NULL;
	s = cmap_slot(m, name);
	return s->name ? s : NULL;
}

static void cmap_release(struct cmap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		free(m->e[i].name);
	free(m->e);
	memset(m, 0, sizeof(*m));
}

/* One node of the main graph. */
struct cnode {
	char *op, *name;
	char **in, **out;
	size_t nin, nout;
	uint64_t value_bytes;  /* Constant: bytes of its value attribute */
	bool subgraph;         /* has a graph attribute */
};

struct walk {
	struct nx_pb_file f;
	nx_error *err;
	struct cnode *n;
	size_t nn, cap;
};

#define LOOP(r, fl, rc, err) while (((rc) = nx_pb_next((r), (fl), (err))) > 0 && ((rc) = 0) == 0)

static int push(char ***v, size_t *n, char *s)
{
	if (NX_ARRAY_PUSH_EXACT(*v, *n)) {
		free(s);
		return NX_ENOMEM;
	}
	(*v)[(*n)++] = s;
	return 0;
}

/* Bytes of a TensorProto's elements from its dims and data_type. */
static int tensor_bytes(struct walk *w, const struct nx_pb_reader *parent,
			const struct nx_pb_field *fld, uint64_t *out)
{
	struct nx_pb_reader r, p;
	struct nx_pb_field f;
	uint64_t n = 1, v, bits = 0;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP(&r, &f, rc, w->err) {
		if (f.num == 1 && f.wire == NX_PB_VARINT) {
			n = f.value && n > UINT64_MAX / f.value ? UINT64_MAX : n * f.value;
		} else if (f.num == 1 && f.wire == NX_PB_LEN) {
			if ((rc = nx_pb_sub(&p, &r, &f, w->err)) != 0)
				return rc;
			while (p.pos < p.end) {
				if ((rc = nx_pb_read_varint(&p, &v, w->err)) != 0)
					return rc;
				n = v && n > UINT64_MAX / v ? UINT64_MAX : n * v;
			}
		} else if (f.num == 2 && f.wire == NX_PB_VARINT) {
			bits = nx_onnx_dtype_bits((int32_t)f.value);
		}
	}
	if (rc)
		return rc;
	*out = n > UINT64_MAX / 64 ? UINT64_MAX : n * bits / 8;
	return 0;
}

static int read_node(struct walk *w, const struct nx_pb_reader *g, const struct nx_pb_field *nf)
{
	struct nx_pb_reader r, a;
	struct nx_pb_field f, af;
	struct cnode *n;
	char *s = NULL;
	int rc;

	if (w->nn >= NX_CONST_NODES_MAX)
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, (long long)nf->tag_offset,
				    "more than %u nodes in the main graph", NX_CONST_NODES_MAX);
	if (NX_ARRAY_PUSH(w->n, w->cap, w->nn))
		return NX_ENOMEM;
	n = &w->n[w->nn++];
	memset(n, 0, sizeof(*n));
	if ((rc = nx_pb_sub(&r, g, nf, w->err)) != 0)
		return rc;
	LOOP(&r, &f, rc, w->err) {
		if (f.wire != NX_PB_LEN)
			continue;
		if (f.num == 1 || f.num == 2 || f.num == 3 || f.num == 4) {
			if ((rc = nx_pb_read_string(&w->f, &f, 0, &s, NULL, w->err)) != 0)
				return rc;
			if (f.num == 1)
				rc = push(&n->in, &n->nin, s);
			else if (f.num == 2)
				rc = push(&n->out, &n->nout, s);
			else if (f.num == 3 && !n->name)
				n->name = s;
			else if (f.num == 4 && !n->op)
				n->op = s;
			else
				free(s);
			s = NULL;
			if (rc)
				return rc;
		} else if (f.num == 5) {
			if ((rc = nx_pb_sub(&a, &r, &f, w->err)) != 0)
				return rc;
			LOOP(&a, &af, rc, w->err) {
				if ((af.num == 6 || af.num == 11) && af.wire == NX_PB_LEN)
					n->subgraph = true;
				else if ((af.num == 5 || af.num == 22) && af.wire == NX_PB_LEN &&
					 (rc = tensor_bytes(w, &a, &af, &n->value_bytes)) != 0)
					return rc;
			}
			if (rc)
				return rc;
		}
	}
	return rc;
}

static void free_nodes(struct walk *w)
{
	size_t i, j;

	for (i = 0; i < w->nn; i++) {
		for (j = 0; j < w->n[i].nin; j++)
			free(w->n[i].in[j]);
		for (j = 0; j < w->n[i].nout; j++)
			free(w->n[i].out[j]);
		free(w->n[i].in);
		free(w->n[i].out);
		free(w->n[i].op);
		free(w->n[i].name);
	}
	free(w->n);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The finding for node n, which should have been folded. */
static int report(struct vfy_ctx *c, const struct cnode *n, uint64_t bytes, const char *why)
{
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_CONSTANT_SUBGRAPH, NX_MODEL_PATH, 0,
			     "node '%.200s' (%.64s) computes only from constants (%llu bytes of "
			     "initializers and Constant values%s): an exporter folds such nodes, and "
			     "left in they can decode data hidden in their inputs (bit planes, a "
			     "split, a permutation) at run time; fold them (torch.onnx.export with "
			     "do_constant_folding, or onnxruntime's offline optimizer) and rebuild",
			     n->name && n->name[0] ? n->name : (n->nout ? n->out[0] : "?"),
			     n->op ? n->op : "?", (unsigned long long)bytes, why);
}

/* Sub(x, x), Xor(x, x): zero whatever x is, so the output is a constant
 * even when x is not.  Without this, `w + Sub(x, x)` launders a stored
 * tensor w into a non-constant before an in-graph decoder.  Only the
 * spelling with one input named twice is seen: two nodes computing the
 * same value (Relu(x) - Relu(x) as two Relus) are not (docs/TRV.md, Known
 * limits). */
static bool algebraic_zero(const struct cnode *n)
{
	return n->nin == 2 && n->in[0][0] && !strcmp(n->in[0], n->in[1]) &&
	       (!strcmp(n->op, "Sub") || !strcmp(n->op, "Xor") || !strcmp(n->op, "BitwiseXor"));
}

/* Mark constants in topological passes until nothing changes (a graph
 * need not be sorted); judge each node once, when it becomes constant. */
static int judge(struct vfy_ctx *c, struct walk *w, struct cmap *m)
{
	bool *done = calloc(w->nn ? w->nn : 1, sizeof(bool)), changed = true;
	size_t i, j, reported = 0;
	int rc = 0;

	if (!done)
		return NX_ENOMEM;
	while (changed && !rc) {
		changed = false;
		for (i = 0; i < w->nn && !rc; i++) {
			struct cnode *n = &w->n[i];
			uint64_t total = 0, first = 0, rest = 0;
			bool all = true;

			if (done[i] || !n->op || n->subgraph ||
			    in_list(n->op, random_ops, sizeof(random_ops) / sizeof(*random_ops)))
				continue;
			if (!strcmp(n->op, "Constant")) {
				total = n->value_bytes;
			} else if (algebraic_zero(n)) {
				total = 0;   /* x - x is 0 whatever x is: a constant of no data */
			} else {
				for (j = 0; j < n->nin && all; j++) {
					const struct centry *e;

					if (!n->in[j][0])
						continue;   /* an optional input left out */
					if (!(e = cmap_get(m, n->in[j])))
						all = false;
					else if (j == 0)
						first = e->bytes;
					else
						rest = add_sat(rest, e->bytes);
				}
				if (!all || !n->nin)
					continue;
				total = add_sat(first, rest);
			}
			done[i] = true;
			changed = true;
			for (j = 0; j < n->nout && !rc; j++)
				if (n->out[j][0])
					rc = cmap_put(m, n->out[j], total);
			if (rc || !strcmp(n->op, "Constant") || total < NX_CONST_BYTES_MIN)
				continue;
			if (in_list(n->op, decode_ops, sizeof(decode_ops) / sizeof(*decode_ops))) {
				if (rest >= NX_CONST_BYTES_MIN && reported++ < 16)
					rc = report(c, n, total, "; a conversion step whose second "
						    "input is as large is not one");
			} else if (reported++ < 16) {
				rc = report(c, n, total, "");
			}
		}
	}
	free(done);
	return rc;
}

/* The nodes of the student's main graph into w (w->err set); *fd the
 * model, open, for the caller to close.  A model without a graph: none. */
static int read_main_graph(struct vfy_ctx *c, struct walk *w, int *fd)
{
	struct nx_pb_reader top, g;
	struct nx_pb_field f, graph;
	bool have = false;
	int rc;

	if ((rc = nx_vfy__open_regular(fd, NULL, c->dirfd, NX_MODEL_PATH, w->err)) != 0)
		return rc;
	if ((rc = nx_pb_file_init(&w->f, *fd, NX_MODEL_PATH, w->err)) != 0 ||
	    (rc = nx_pb_reader_init(&top, &w->f, 0, w->f.size, w->err)) != 0)
		return rc;
	LOOP(&top, &f, rc, w->err)
		if (f.num == 7 && f.wire == NX_PB_LEN) {
			graph = f;
			have = true;
		}
	if (rc || !have)
		return rc;
	if ((rc = nx_pb_reader_init(&top, &w->f, 0, w->f.size, w->err)) != 0 ||
	    (rc = nx_pb_sub(&g, &top, &graph, w->err)) != 0)
		return rc;
	LOOP(&g, &f, rc, w->err)
		if (f.num == 1 && f.wire == NX_PB_LEN && (rc = read_node(w, &g, &f)) != 0)
			break;
	return rc;
}

int nx_vfy__constant_subgraphs(struct vfy_ctx *c)
{
	const nx_onnx_summary *s = nx_onnx_summary_get(c->onnx);
	struct walk w = {0};
	struct cmap m = {0};
	nx_error e;
	size_t i;
	int fd = -1, rc;

	nx_error_clear(&e);
	w.err = &e;
	rc = read_main_graph(c, &w, &fd);
	if (rc)
		goto out;
	for (i = 0; i < s->ntensors && !rc; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (!t->attribute && !strcmp(t->scope, "graph"))
			rc = cmap_put(&m, t->name, t->nelem > UINT64_MAX / 64 ? UINT64_MAX :
				      t->nelem * nx_onnx_dtype_bits(t->data_type) / 8);
	}
	if (!rc)
		rc = judge(c, &w, &m);
out:
	cmap_release(&m);
	free_nodes(&w);
	nx_pb_file_release(&w.f);
	if (fd >= 0)
		close(fd);
	if (rc == NX_ENOMEM)
		return rc;
	if (rc && e.code != NX_OK)   /* the walk of the model reported it already */
		return 0;
	return rc;
}

/*
 * The rows of the input embedding (docs/TRV.md "Leak budget", dead
 * tokens): the Gather whose indices are the ids the runtime feeds
 * (input_ids, or the main graph's only integer input), through the steps
 * an exporter puts between them (Cast, Reshape, ...), and whose data is an
 * initializer of the main graph, or one converted where it is used (a
 * DequantizeLinear or Cast of it): its dim 0.  An id at or past it cannot
 * be embedded (ORT fails the Gather), so such a token is padding.  Several
 * such Gathers: the fewest rows.  -1 with *why set when not determinable.
 */
static const struct cnode *producer(const struct walk *w, const struct cmap *outs, const char *v)
{
	const struct centry *e = cmap_get(outs, v);

	return e ? &w->n[e->bytes] : NULL;
}

static const char *ids_input(const nx_onnx_summary *s)
{
	const char *only = NULL;
	size_t i, nint = 0;

	for (i = 0; i < s->ninputs; i++) {
		int32_t t = s->inputs[i].elem_type;

		if (!strcmp(s->inputs[i].name, "input_ids"))
			return s->inputs[i].name;
		if (t == 6 || t == 7) {   /* INT32, INT64 */
			only = s->inputs[i].name;
			nint++;
		}
	}
	return nint == 1 ? only : NULL;
}

static int64_t initializer_rows(const nx_onnx_summary *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (!t->attribute && !t->duplicate && !strcmp(t->scope, "graph") &&
		    !strcmp(t->name, name))
			/* rows of no bytes ([100000, 0]) are a decoy, not an
			 * embedding (review C) */
			return t->ndims == 2 && t->dims[0] > 0 && t->dims[1] > 0 ? t->dims[0] : -1;
	}
	return -1;
}

static int embedding_judge(const nx_onnx_summary *s, const struct walk *w, int64_t *rows,
			   const char **why)
{
	static const char *const pass_ops[] = {"Cast", "Identity", "Reshape", "Squeeze",
					       "Unsqueeze", "Flatten"};
	static const char *const data_ops[] = {"Cast", "DequantizeLinear", "Identity"};
	struct cmap ids = {0}, outs = {0};
	const char *in = ids_input(s);
	bool changed = true, gathers = false;
	size_t i, pass;
	int rc = 0;

	*rows = -1;
	if (!in) {
		*why = "the graph has no input_ids input (nor a single integer input)";
		return 0;
	}
	if ((rc = cmap_put(&ids, in, 0)))
		goto out;
	for (i = 0; i < w->nn && !rc; i++)
		if (w->n[i].nout && w->n[i].out[0][0])
			rc = cmap_put(&outs, w->n[i].out[0], i);
	/* a graph need not be sorted: passes until nothing changes (bounded) */
	for (pass = 0; changed && !rc && pass < 16; pass++)
		for (i = 0, changed = false; i < w->nn && !rc; i++) {
			const struct cnode *n = &w->n[i];

			if (n->op && n->nin && n->nout && n->out[0][0] &&
			    in_list(n->op, pass_ops, sizeof(pass_ops) / sizeof(*pass_ops)) &&
			    cmap_get(&ids, n->in[0]) && !cmap_get(&ids, n->out[0])) {
				rc = cmap_put(&ids, n->out[0], 0);
				changed = true;
			}
		}
	for (i = 0; i < w->nn && !rc; i++) {
		const struct cnode *n = &w->n[i], *p;
		const char *data;
		int64_t r;
		int hops;

		if (!n->op || strcmp(n->op, "Gather") || n->nin < 2 || !cmap_get(&ids, n->in[1]))
			continue;
		gathers = true;
		data = n->in[0];
		for (hops = 0; hops < 4 && (p = producer(w, &outs, data)) && p->op && p->nin &&
		     in_list(p->op, data_ops, sizeof(data_ops) / sizeof(*data_ops)); hops++)
			data = p->in[0];
		if ((r = initializer_rows(s, data)) < 0) {
			*rows = -1;
			*why = "the Gather of the ids reads no 2-D initializer";
			goto out;
		}
		if (*rows < 0 || r < *rows)
			*rows = r;
	}
	if (!gathers)
		*why = "no Gather reads the ids the runtime feeds";
out:
	cmap_release(&ids);
	cmap_release(&outs);
	return rc;
}

int nx_vfy__embedding_rows(struct vfy_ctx *c)
{
	const nx_onnx_summary *s;
	struct walk w = {0};
	nx_error e;
	int fd = -1, rc;

	c->embed_rows = -1;
	c->embed_why = "the model did not open";
	if (!c->onnx)
		return 0;
	s = nx_onnx_summary_get(c->onnx);
	nx_error_clear(&e);
	w.err = &e;
	rc = read_main_graph(c, &w, &fd);
	if (!rc)
		rc = embedding_judge(s, &w, &c->embed_rows, &c->embed_why);
	else
		c->embed_why = "the model's graph did not read";
	free_nodes(&w);
	nx_pb_file_release(&w.f);
	if (fd >= 0)
		close(fd);
	return rc == NX_ENOMEM ? rc : 0;   /* a model that does not walk: weights says so */
}
