/*
 * quant.c - export.quantize: int8 and int4 (nexus/export.h, opts.quantize).
 *
 * Weight-only, symmetric (zero point 0) int8:
 *  - a MatMul whose second input is a 2-D float32 initializer W[K, N]:
 *    one scale per output column n, max|W[:, n]| / 127, and the node
 *    becomes
 *        DynamicQuantizeLinear(x) -> xq, xs, xz
 *        MatMulInteger(xq, Wq, xz) -> int32;  Cast -> float
 *        Mul(xs, Ws) -> s;  Mul(float, s) -> y
 *    the form onnxruntime.quantization.quantize_dynamic writes, which ONNX
 *    Runtime fuses into DynamicQuantizeMatMul (an MLAS int8 GEMM): on the
 *    DistilBERT-shaped model of bench/quant_forms.py it ran 2.6-2.9x faster
 *    than float32, while the QDQ form (DequantizeLinear -> MatMul) ran at
 *    float32 speed: ONNX Runtime keeps the DequantizeLinear, so every run
 *    dequantizes the weights and multiplies in float (docs/DESIGN-NOTES.md);
 *  - a Gemm (alpha and beta 1, transA 0) reading a 2-D float32
 *    initializer as B: the same form, then Add(product, C) when it has a
 *    bias C (kept float).  With transB 1 (torch's Linear, W[N, K]) the
 *    scales are per row of W and the int8 values are written transposed,
 *    [K, N], so MatMulInteger reads them as it reads a MatMul's;
 *  - a Gather on axis 0 of a 2-D float32 initializer E[V, D] (an
 *    embedding): one scale per row, and the node becomes
 *        Gather(Eq, ids) -> rows;  Gather(Es[V, 1], ids) -> scales
 *        Cast(rows) -> float;  Mul(float, scales) -> y
 *    (only the looked-up rows are dequantized).
 * An initializer is quantized only when every kept node that reads it
 * reads it in one of those two places (a tied embedding also read by a
 * MatMul stays float), it has at least quantize_min_elements elements, it
 * is not a graph input (which a caller may override), and neither its
 * name nor a reading node's name matches quantize_exclude.
 *
 * Streaming: the float values are read with pread through a fixed buffer
 * (QBUF bytes of whole rows), twice for a MatMul weight (the column maxima,
 * then the values) and once for an embedding (a row's maximum is in the
 * row); int8 values go to the data file as they are made when the tensor
 * is big and the export writes a data file, else into the model inline
 * (only small models, whose weights are inline anyway).  Memory: the
 * buffer and one scale per column or row.
 */
#include "export_int.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* rc is 0 inside the body, 0 or an error after the loop */
#define LOOP(x, r, f, rc) while (((rc) = nx_pb_next((r), (f), (x)->err)) > 0 && ((rc) = 0) == 0)

#define QBUF (4u << 20)
#define QPIECES 8         /* pieces of a buffer, taken in turn by the threads (quant_par.c) */
#define QBUF16 (16u << 20)  /* int4: the most the pieces' column buffers may take */
#define NX_QUANT_MS_DOMAIN "com.microsoft"          /* bytes of float32 rows read at a time */
#define QNAME_MAX 4096
#define QINT4_ACCURACY 4  /* MatMulNBits accuracy_level: int8 compute */
#define QDIMS_MAX 32      /* rank of an fp16 tensor (ONNX models stay far below) */

static const char *const q_ops[] = {
	"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
	"ConvInteger", "MatMulNBits", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
	"QAttention", "QGemm", "DequantizeBFP", "GatherBlockQuantized",
};

float nx_quant_int8_scale(float maxabs)
{
	return maxabs > 0.0f ? maxabs / 127.0f : 1.0f;
}

signed char nx_quant_int8(float v, float scale)
{
	float q = rintf(v / scale);

	return (signed char)(q > 127.0f ? 127 : q < -127.0f ? -127 : (int)q);
}

uint16_t nx_quant_fp16(uint32_t x)
{
	uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff, r, rest;
	int32_t he = (int32_t)e - 127 + 15;

	if (e == 0xff)
		return (uint16_t)(sign | 0x7c00 | (m ? 0x200 | (m >> 13) : 0));
	if (he >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (he <= 0) {
		unsigned shift;

		if (he < -10)
			return (uint16_t)sign;
		m |= 0x800000;
		shift = (unsigned)(14 - he);
		r = m >> shift;
		rest = m & ((1u << shift) - 1);
		if (rest > 1u << (shift - 1) || (rest == 1u << (shift - 1) && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	r = (uint32_t)he << 10 | m >> 13;
	rest = m & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (r & 1)))
		r++;    /* a carry into the exponent rounds up to the next one, or inf */
	return (uint16_t)(sign | r);
}

bool nx_quant_same_tensor(const char *name, const char *tensor)
{
	size_t n = strlen(name);

	return !strcmp(name, tensor) ||
	       (!strncmp(name, tensor, n) && (!strcmp(tensor + n, "/int8") ||
					       !strcmp(tensor + n, "/int4") ||
					       !strcmp(tensor + n, "/fp16")));
}

void nx_export__quant_release(struct ex *x)
{
	size_t i;

	for (i = 0; i < x->nqinits; i++)
		free(x->qinits[i].name);
	free(x->qinits);
	free(x->qnode);
	nx_export__par_release(x);
	x->qinits = NULL;
	x->qnode = NULL;
	x->nqinits = 0;
}

static bool quant_op(const char *op)
{
	size_t i;

	if (!strncmp(op, "QLinear", 7))
		return true;
	for (i = 0; i < sizeof(q_ops) / sizeof(q_ops[0]); i++)
		if (!strcmp(op, q_ops[i]))
			return true;
	return false;
}

static bool excluded(const struct ex *x, const char *name)
{
	size_t i;

	for (i = 0; name && i < x->o->nquantize_exclude; i++)
		if (!fnmatch(x->o->quantize_exclude[i], name, 0))
			return true;
	return false;
}

static struct ex_qinit *qinit_find(const struct ex *x, const char *name)
{
	size_t i;

	for (i = 0; i < x->nqinits; i++)
		if (!strcmp(x->qinits[i].name, name))
			return &x->qinits[i];
	return NULL;
}

/* One initializer's name, dims, data type and payload kind; int8/uint8
 * weights of the minimum size mean the model is already quantized. */
static int read_init(struct ex *x, const struct nx_pb_reader *g, const struct nx_pb_field *fld,
		     uint64_t min)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct ex_qinit q = { 0 };
	uint64_t dims[3] = { 0 }, n = 1;
	size_t ndims = 0;
	int64_t dtype = 0;
	int rc;

	if ((rc = nx_pb_sub(&r, g, fld, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc) {
		if (f.num == 1 && f.wire == NX_PB_VARINT) {
			if (ndims < 3)
				dims[ndims] = f.value;
			ndims++;
			n = f.value && n > UINT64_MAX / f.value ? UINT64_MAX : n * f.value;
		} else if (f.num == 2 && f.wire == NX_PB_VARINT) {
			dtype = (int64_t)f.value;
		} else if (f.num == 8) {
			rc = nx_export__read_name(x, &f, &q.name);
		} else if (f.num == 9 || f.num == 13) {
			q.payload = true;
		}
		if (rc)
			break;
	}
	if (rc)
		goto out;
	if ((dtype == 2 || dtype == 3 || dtype == 10 || dtype == 16) && n >= min && q.name &&
	    nx_strset_has(&x->needed, q.name)) {
		rc = nx_error_set(x->err, NX_ECONFIG, x->path, 0, (long long)fld->tag_offset,
				  "%s is already quantized (initializer '%s' holds %s values): "
				  "set export.quantize: none for this student, or quantize the "
				  "float32 student", x->path, q.name,
				  dtype == 2 ? "uint8" : dtype == 3 ? "int8" : dtype == 10 ? "float16"
				  : "bfloat16");
		goto out;
	}
	/* fp16 takes a float32 tensor of any rank (QDIMS_MAX, so that its
	 * dims fit the rewrite's array); int8 and int4 2-D ones */
	if (dtype != 1 || !q.name || !n || ndims > QDIMS_MAX ||
	    (x->o->quantize == NX_EXPORT_QUANT_FP16 ? ndims < 1 : ndims != 2) ||
	    (ndims == 2 && (!dims[0] || !dims[1])))
		goto out;
	q.rows = dims[0];
	q.cols = ndims >= 2 ? dims[1] : 1;
	q.nelem = n;
	if (x->nqinits % 64 == 0) {
		struct ex_qinit *a = realloc(x->qinits, (x->nqinits + 64) * sizeof(*a));

		if (!a) {
			rc = nx_export__oom(x);
			goto out;
		}
		x->qinits = a;
	}
	x->qinits[x->nqinits++] = q;
	q.name = NULL;
out:
	free(q.name);
	return rc;
}

/* Graph inputs that are also initializers stay float (a caller may feed them). */
static int read_input(struct ex *x, const struct nx_pb_reader *g, const struct nx_pb_field *fld)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	char *name = NULL;
	struct ex_qinit *q;
	int rc;

	if ((rc = nx_pb_sub(&r, g, fld, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc)
		if (f.num == 1 && (rc = nx_export__read_name(x, &f, &name)) != 0)
			break;
	if (!rc && name && (q = qinit_find(x, name)))
		q->input = true;
	free(name);
	return rc;
}

/* The node that produces name, or NULL. */
static const struct ex_node *producer(const struct ex *x, const char *name)
{
	size_t i, j;

	for (i = 0; i < x->nnodes; i++)
		for (j = 0; j < x->nodes[i].nout; j++)
			if (x->keep_node[i] && !strcmp(x->nodes[i].out[j], name))
				return &x->nodes[i];
	return NULL;
}

/* A MatMul or Gemm weight computed from an initializer by a layout op is a
 * constant the exporter did not fold: say so instead of leaving it float
 * without a word. */
static int computed_weight(struct ex *x, const struct ex_node *mm)
{
	static const char *const layout[] = { "Transpose", "Identity", "Cast", "Reshape" };
	const struct ex_node *p;
	size_t k;

	if (!(p = producer(x, mm->in[1])) || !p->op || p->ndirect < 1)
		return 0;
	for (k = 0; k < sizeof(layout) / sizeof(layout[0]); k++)
		if (!strcmp(p->op, layout[k]) && qinit_find(x, p->in[0]))
			return nx_error_set(x->err, NX_ECONFIG, x->path, 0, -1,
					    "%s: %s '%s' reads its weight '%s' through %s of "
					    "initializer '%s', not as a constant, so it cannot be "
					    "quantized: export the student with constant folding "
					    "(torch.onnx.export do_constant_folding=True) or list "
					    "'%s' in export.quantize_exclude", x->path, mm->op,
					    mm->name ? mm->name : mm->out[0], mm->in[1], p->op, p->in[0],
					    mm->name ? mm->name : mm->out[0]);
	return 0;
}

/* The input of node n that a quantized form reads as its weight. */
static size_t weight_pos(const struct ex_node *n)
{
	return n->op && !strcmp(n->op, "Gather") ? 0 : 1;
}

/* The place node n reads initializer q (in[pos]) in, as a quantized form.
 * A Gemm's bias (C) stays float and is added after the quantized product;
 * alpha and beta other than 1 are left to the float Gemm. */
static enum ex_qkind use_kind(const struct ex_node *n, size_t pos)
{
	if (!n->op || n->holes || n->nout != 1 || n->nonzero_axis)
		return EX_Q_NONE;
	if (!strcmp(n->op, "Gemm") && pos == 1 && (n->ndirect == 2 || n->ndirect == 3) && !n->scaled)
		return n->trans_b ? EX_Q_GEMM_T : EX_Q_MATMUL;
	if (n->ndirect != 2 || n->trans_b)
		return EX_Q_NONE;
	if (!strcmp(n->op, "MatMul") && pos == 1)
		return EX_Q_MATMUL;
	if (!strcmp(n->op, "Gather") && pos == 0)
		return EX_Q_GATHER;
	return EX_Q_NONE;
}

/* The version of the default ONNX domain the model imports (0: none). */
static int onnx_opset(struct ex *x, const struct nx_pb_reader *model, int64_t *out)
{
	struct nx_pb_reader m = *model, r;
	struct nx_pb_field f, g;
	int rc;

	*out = 0;
	LOOP(x, &m, &f, rc) {
		char *domain = NULL;
		int64_t v = 0;

		if (f.num != 8 || f.wire != NX_PB_LEN)
			continue;
		if ((rc = nx_pb_sub(&r, &m, &f, x->err)) != 0)
			return rc;
		LOOP(x, &r, &g, rc) {
			if (g.num == 1 && g.wire == NX_PB_LEN && !domain)
				rc = nx_export__read_name(x, &g, &domain);
			else if (g.num == 2 && g.wire == NX_PB_VARINT)
				v = (int64_t)g.value;
			if (rc)
				break;
		}
		if (!rc && (!domain || !domain[0] || !strcmp(domain, "ai.onnx")))
			*out = v;
		free(domain);
		if (rc)
			return rc;
	}
	return rc;
}

/* The quantized forms need ONNX ops of a minimum opset: DynamicQuantizeLinear
 * (11) for int8, Cast with an int `to` (6) for fp16 and int4's int8
 * embeddings.  An older student would get a model ONNX Runtime refuses. */
static int opset_check(struct ex *x, const struct nx_pb_reader *model)
{
	int64_t v, need = x->o->quantize == NX_EXPORT_QUANT_INT8 ? 11 : 6;
	size_t i;
	int rc;

	for (i = 0; i < x->nqinits && x->qinits[i].kind == EX_Q_NONE; i++)
		;
	if (i == x->nqinits)
		return 0;   /* nothing quantized: no new op */
	if ((rc = onnx_opset(x, model, &v)) != 0 || v >= need)
		return rc;
	return nx_error_set(x->err, NX_ECONFIG, x->path, 0, -1,
			    "%s imports ONNX opset %lld, and export.quantize: %s writes ops of "
			    "opset %lld (%s): export the student with opset_version %lld or "
			    "later, or set export.quantize: none", x->path, (long long)v,
			    nx_export_quantize_names[x->o->quantize], (long long)need,
			    need == 11 ? "DynamicQuantizeLinear" : "Cast", (long long)need);
}

/* fp16: every node reads the Cast's float32 output under the tensor's
 * own name, so any kept float32 initializer can be stored float16; only
 * quantize_exclude (of it or of a node reading it), min elements, graph
 * inputs and outputs keep one float32. */
static int plan_fp16(struct ex *x, uint64_t min)
{
	size_t i, j;

	for (i = 0; i < x->nnodes; i++) {
		const struct ex_node *n = &x->nodes[i];
		struct ex_qinit *q;

		for (j = 0; x->keep_node[i] && j < n->nin; j++)
			if ((q = qinit_find(x, n->in[j])) && excluded(x, n->name))
				q->mixed = true;
	}
	for (i = 0; i < x->nqinits; i++) {
		struct ex_qinit *q = &x->qinits[i];

		q->kind = q->mixed || q->input || !q->payload || excluded(x, q->name) ||
				  !nx_strset_has(&x->needed, q->name) ||
				  nx_strset_has(&x->graph_outputs, q->name) || q->nelem < min
			  ? EX_Q_NONE : EX_Q_FP16;
	}
	return 0;
}

int nx_export__quant_plan(struct ex *x, const struct nx_pb_reader *model, const struct nx_pb_field *graph)
{
	struct nx_pb_reader g;
	struct nx_pb_field f;
	uint64_t min = x->o->quantize_min_elements ? x->o->quantize_min_elements
						   : NX_QUANT_MIN_ELEMENTS;
	size_t i, j;
	int rc;

	if (x->o->quantize == NX_EXPORT_QUANT_NONE)
		return 0;
	for (i = 0; i < x->nnodes; i++)
		if (x->keep_node[i] && x->nodes[i].op && quant_op(x->nodes[i].op))
			return nx_error_set(x->err, NX_ECONFIG, x->path, 0, -1,
					    "%s is already quantized (node '%s' is %s): set "
					    "export.quantize: none for this student", x->path,
					    x->nodes[i].name ? x->nodes[i].name : "",
					    x->nodes[i].op);
	if ((rc = nx_pb_sub(&g, model, graph, x->err)) != 0)
		return rc;
	LOOP(x, &g, &f, rc)
		if (f.num == 5 && f.wire == NX_PB_LEN && (rc = read_init(x, &g, &f, min)) != 0)
			return rc;
	if (rc)
		return rc;
	g.pos = graph->offset;
	LOOP(x, &g, &f, rc)
		if (f.num == 11 && f.wire == NX_PB_LEN && (rc = read_input(x, &g, &f)) != 0)
			return rc;
	if (rc)
		return rc;
	if (!(x->qnode = calloc(x->nnodes ? x->nnodes : 1, 1)))
		return nx_export__oom(x);
	if (x->o->quantize == NX_EXPORT_QUANT_FP16)
		return (rc = plan_fp16(x, min)) != 0 ? rc : opset_check(x, model);
	/* every kept use of each candidate: one kind, or the tensor stays float */
	for (i = 0; i < x->nnodes; i++) {
		const struct ex_node *n = &x->nodes[i];

		if (!x->keep_node[i])
			continue;
		if (n->op && (!strcmp(n->op, "MatMul") || !strcmp(n->op, "Gemm")) && n->ndirect >= 2 &&
		    !qinit_find(x, n->in[1]) &&
		    !excluded(x, n->name) && (rc = computed_weight(x, n)) != 0)
			return rc;
		for (j = 0; j < n->nin; j++) {
			struct ex_qinit *q = qinit_find(x, n->in[j]);
			enum ex_qkind k = j < n->ndirect ? use_kind(n, j) : EX_Q_NONE;

			if (!q)
				continue;
			if (k == EX_Q_NONE || excluded(x, n->name) || (q->kind && q->kind != k))
				q->mixed = true;
			else
				q->kind = k;
		}
	}
	for (i = 0; i < x->nqinits; i++) {
		struct ex_qinit *q = &x->qinits[i];

		/* a graph output or input of that name must keep its float tensor */
		if (q->mixed || q->input || !q->payload || excluded(x, q->name) ||
		    nx_strset_has(&x->graph_outputs, q->name) || q->rows > UINT64_MAX / q->cols ||
		    q->rows * q->cols < min)
			q->kind = EX_Q_NONE;
	}
	for (i = 0; i < x->nnodes; i++) {
		const struct ex_node *n = &x->nodes[i];
		struct ex_qinit *q;

		if (!x->keep_node[i] || !n->op || n->ndirect < 2)
			continue;
		if ((q = qinit_find(x, n->in[weight_pos(n)])) && q->kind != EX_Q_NONE &&
		    q->kind == use_kind(n, weight_pos(n)))
			x->qnode[i] = (unsigned char)q->kind;
	}
	return opset_check(x, model);
}

/* ------------------------------------------------------------ new nodes */

/* An int attribute of a new node. */
struct qattr {
	const char *name;
	int64_t value;
};

static int node_new(struct ex *x, struct pw_msg *g, const char *op, const char *name,
		    const char *const *in, size_t nin, const char *const *out, size_t nout,
		    const struct qattr *attrs, size_t nattrs, const char *domain)
{
	struct pw_msg *n = nx_pw__msg_new(), *a = NULL;
	size_t i;
	int rc = 0;

	if (!n)
		return nx_export__oom(x);
	for (i = 0; i < nin && !rc; i++)
		rc = nx_pw__string(n, 1, in[i], strlen(in[i]));
	for (i = 0; i < nout && !rc; i++)
		rc = nx_pw__string(n, 2, out[i], strlen(out[i]));
	if (!rc)
		rc = nx_pw__string(n, 3, name, strlen(name));
	if (!rc)
		rc = nx_pw__string(n, 4, op, strlen(op));
	for (i = 0; i < nattrs && !rc; i++) {
		if (!(a = nx_pw__msg_new()) || nx_pw__string(a, 1, attrs[i].name, strlen(attrs[i].name)) ||
		    nx_pw__varint_field(a, 3, (uint64_t)attrs[i].value) || nx_pw__varint_field(a, 20, 2)) {
			nx_pw__msg_free(a);
			rc = NX_ENOMEM;
		} else {
			rc = nx_pw__child(n, 5, a);
		}
	}
	if (!rc && domain)
		rc = nx_pw__string(n, 7, domain, strlen(domain));
	if (rc) {
		nx_pw__msg_free(n);
		return nx_export__oom(x);
	}
	return nx_pw__child(g, 1, n) ? nx_export__oom(x) : 0;
}

static unsigned qblock(const struct ex *x)
{
	return x->o->quantize_block ? x->o->quantize_block : NX_QUANT_BLOCK;
}

/* int4: an embedding E[V, D] whose rows fill whole blocks goes to
 * com.microsoft.GatherBlockQuantized (uint8 data, bits 4: ONNX Runtime's
 * CPU kernel reads MatMulNBits' packing, two values a byte, zero point 8,
 * and wants the packed row to be exactly D / 2 bytes); other embeddings
 * stay int8 per row. */
static bool gather_int4(const struct ex *x, const struct ex_qinit *q)
{
	return x->o->quantize == NX_EXPORT_QUANT_INT4 && q && q->kind == EX_Q_GATHER &&
	       q->cols % qblock(x) == 0;
}

/* base + suffix, in buf. */
static const char *nm(char *buf, const char *base, const char *suffix)
{
	snprintf(buf, QNAME_MAX, "%s%s", base, suffix);
	return buf;
}

/* A Gemm's bias: Add(product, C) -> y, named as the Gemm. */
static int bias_add(struct ex *x, struct pw_msg *m, const struct ex_node *n, const char *product,
		    const char *base)
{
	const char *in[] = { product, n->in[2] };
	const char *out[] = { n->out[0] };

	return node_new(x, m, "Add", base, in, 2, out, 1, NULL, 0, NULL);
}

int nx_export__quant_node(struct ex *x, const struct nx_pb_field *fld, size_t i, struct pw_msg *m)
{
	const struct ex_node *n = &x->nodes[i];
	const char *y = n->out[0], *base = n->name && n->name[0] ? n->name : y;
	const struct qattr to_float = { "to", 1 };
	bool bias = n->ndirect == 3;   /* a Gemm with C: the product goes to b[12] first */
	char b[14][QNAME_MAX];
	int rc;

	if (n->name && (rc = nx_export__check_term(x, "node", n->name, fld->offset)) != 0)
		return rc;
	if (strlen(y) + 32 > QNAME_MAX || strlen(base) + 32 > QNAME_MAX ||
	    strlen(n->in[0]) + 32 > QNAME_MAX || strlen(n->in[1]) + 32 > QNAME_MAX)
		return nx_error_set(x->err, NX_ELIMIT, x->path, 0, (long long)fld->tag_offset,
				    "%s: node '%s' has a name too long to quantize", x->path, base);
	if (x->qnode[i] != EX_Q_GATHER && x->o->quantize == NX_EXPORT_QUANT_INT4) {
		const struct ex_qinit *q = qinit_find(x, n->in[1]);
		bool t = q->kind == EX_Q_GEMM_T;
		const char *nb_in[] = { n->in[0], nm(b[0], n->in[1], "/int4"),
					nm(b[1], n->in[1], "/scale") };
		const char *nb_out[] = { bias ? nm(b[12], y, "/int4/product") : y };
		/* accuracy_level 4: MLAS multiplies the int4 blocks with the
		 * activations quantized to int8 per block (VNNI dot products)
		 * instead of dequantizing to float32: 3.7x faster on one token
		 * of the DistilBERT-shaped model, at the gate's accuracy
		 * (docs/DESIGN-NOTES.md, "int4 speed") */
		struct qattr at[5] = { { "K", (int64_t)(t ? q->cols : q->rows) },
				       { "N", (int64_t)(t ? q->rows : q->cols) },
				       { "bits", 4 }, { "block_size", (int64_t)qblock(x) },
				       { "accuracy_level", QINT4_ACCURACY } };

		if ((rc = node_new(x, m, "MatMulNBits", bias ? nm(b[13], base, "/int4/matmul") : base,
				   nb_in, 3, nb_out, 1, at, 5, NX_QUANT_MS_DOMAIN)) != 0)
			return rc;
		return bias ? bias_add(x, m, n, nb_out[0], base) : 0;
	} else if (x->qnode[i] != EX_Q_GATHER) {
		const char *dq_in[] = { n->in[0] };
		const char *dq_out[] = { nm(b[0], y, "/int8/x"), nm(b[1], y, "/int8/x_scale"),
					 nm(b[2], y, "/int8/x_zero") };
		const char *mm_in[] = { b[0], nm(b[3], n->in[1], "/int8"), b[2] };
		const char *mm_out[] = { nm(b[4], y, "/int8/acc") };
		const char *cast_out[] = { nm(b[5], y, "/int8/acc_float") };
		const char *s_in[] = { b[1], nm(b[6], n->in[1], "/scale") };
		const char *s_out[] = { nm(b[7], y, "/int8/scale") };
		const char *y_in[] = { b[5], b[7] };
		const char *y_out[] = { bias ? nm(b[12], y, "/int8/product") : y };

		if ((rc = node_new(x, m, "DynamicQuantizeLinear", nm(b[8], base, "/int8/quantize"),
				   dq_in, 1, dq_out, 3, NULL, 0, NULL)) ||
		    (rc = node_new(x, m, "MatMulInteger", nm(b[9], base, "/int8/matmul"), mm_in, 3,
				   mm_out, 1, NULL, 0, NULL)) ||
		    (rc = node_new(x, m, "Cast", nm(b[10], base, "/int8/cast"), mm_out, 1, cast_out, 1,
				   &to_float, 1, NULL)) ||
		    (rc = node_new(x, m, "Mul", nm(b[11], base, "/int8/scale"), s_in, 2, s_out, 1,
				   NULL, 0, NULL)))
			return rc;
		if (!bias)
			return node_new(x, m, "Mul", base, y_in, 2, y_out, 1, NULL, 0, NULL);
		if ((rc = node_new(x, m, "Mul", nm(b[13], base, "/int8/product"), y_in, 2, y_out, 1,
				   NULL, 0, NULL)) != 0)
			return rc;
		return bias_add(x, m, n, y_out[0], base);
	} else if (gather_int4(x, qinit_find(x, n->in[0]))) {
		const char *g_in[] = { nm(b[0], n->in[0], "/int4"), n->in[1], nm(b[1], n->in[0], "/scale") };
		const char *g_out[] = { y };
		struct qattr at[4] = { { "gather_axis", 0 }, { "quantize_axis", 1 },
				       { "block_size", (int64_t)qblock(x) }, { "bits", 4 } };

		return node_new(x, m, "GatherBlockQuantized", base, g_in, 3, g_out, 1, at, 4,
				NX_QUANT_MS_DOMAIN);
	} else {
		const char *g_in[] = { nm(b[0], n->in[0], "/int8"), n->in[1] };
		const char *g_out[] = { nm(b[1], y, "/int8/rows") };
		const char *s_in[] = { nm(b[2], n->in[0], "/scale"), n->in[1] };
		const char *s_out[] = { nm(b[3], y, "/int8/scale") };
		const char *c_out[] = { nm(b[4], y, "/int8/rows_float") };
		const char *y_in[] = { b[4], b[3] };
		const char *y_out[] = { y };

		if ((rc = node_new(x, m, "Gather", nm(b[5], base, "/int8/gather"), g_in, 2, g_out, 1,
				   NULL, 0, NULL)) ||
		    (rc = node_new(x, m, "Gather", nm(b[6], base, "/int8/gather_scale"), s_in, 2,
				   s_out, 1, NULL, 0, NULL)) ||
		    (rc = node_new(x, m, "Cast", nm(b[7], base, "/int8/cast"), g_out, 1, c_out, 1,
				   &to_float, 1, NULL)))
			return rc;
		return node_new(x, m, "Mul", base, y_in, 2, y_out, 1, NULL, 0, NULL);
	}
}

int nx_export__quant_casts(struct ex *x, struct pw_msg *m)
{
	const struct qattr to_float = { "to", 1 };
	char b[2][QNAME_MAX];
	size_t i;
	int rc;

	for (i = 0; i < x->nqinits; i++) {
		const struct ex_qinit *q = &x->qinits[i];
		const char *in[1], *out[1];

		if (q->kind != EX_Q_FP16)
			continue;
		if (strlen(q->name) + 16 > QNAME_MAX)
			return nx_error_set(x->err, NX_ELIMIT, x->path, 0, -1,
					    "%s: tensor name '%.64s...' too long to quantize",
					    x->path, q->name);
		in[0] = nm(b[0], q->name, "/fp16");
		out[0] = q->name;
		if ((rc = node_new(x, m, "Cast", nm(b[1], q->name, "/fp16/cast"), in, 1, out, 1,
				   &to_float, 1, NULL)) != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ tensors */

/* Where a tensor's bytes go: the data file (streamed) or inline. */
struct qout {
	struct ex *x;
	bool to_file;
	uint64_t off, len;
	unsigned char *inl;    /* inline: the whole payload */
	uint64_t pos;
};

static int qout_begin(struct qout *o, struct ex *x, bool to_file, uint64_t len,
		      uint64_t field_offset, const char *name)
{
	memset(o, 0, sizeof(*o));
	o->x = x;
	o->len = len;
	o->to_file = to_file;
	if (to_file)
		return nx_export__data_begin(x, field_offset, name, &o->off);
	if (!x->dry && !(o->inl = malloc(len ? (size_t)len : 1)))
		return nx_export__oom(x);
	return 0;
}

static int qout_write(struct qout *o, const void *buf, size_t len)
{
	int rc = 0;

	if (o->x->dry)
		return 0;
	if (o->to_file)
		rc = nx_pw__out_write(&o->x->ext, buf, len);
	else
		memcpy(o->inl + o->pos, buf, len);
	o->pos += len;
	return rc;
}

/* The TensorProto of what o wrote, added to graph m; frees o. */
static int qout_tensor(struct qout *o, struct pw_msg *m, const char *name, int dtype,
		       const uint64_t *dims, int ndims)
{
	struct ex *x = o->x;
	struct pw_msg *t = nx_pw__msg_new();
	int rc, k;

	if (!t) {
		free(o->inl);
		return nx_export__oom(x);
	}
	for (rc = 0, k = 0; k < ndims && !rc; k++)
		rc = nx_pw__varint_field(t, 1, dims[k]);
	rc = rc || nx_pw__varint_field(t, 2, (uint64_t)dtype) || nx_pw__string(t, 8, name, strlen(name));
	if (!rc && !o->to_file && !x->dry)
		rc = nx_pw__string(t, 9, (const char *)o->inl, (size_t)o->len);
	if (!rc && o->to_file)
		rc = nx_export__ext_fields(t, o->off, o->len);
	free(o->inl);
	o->inl = NULL;
	if (rc || nx_pw__child(m, 5, t)) {
		if (rc)
			nx_pw__msg_free(t);
		return nx_export__oom(x);
	}
	x->res->quant_bytes += o->len;
	return 0;
}

/* pread all of [off, off + len) of fd into buf: 0 or an errno (EIO: the
 * file ended).  No nx_error: the quantizing threads call it too. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		done += (size_t)n;
	}
	return 0;
}

static int rd(struct ex *x, int fd, const char *path, void *buf, size_t len, uint64_t off)
{
	int e = pread_all(fd, buf, len, off);

	return e ? nx_error_errno(x->err, NX_EIO, e, path, "cannot read weights from %s", path) : 0;
}

static int not_finite(struct ex *x, const char *name, uint64_t elem, float v, uint64_t field)
{
	return nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)field,
			    "%s: tensor '%s' holds %s at element %llu, which has no %s form: "
			    "fix the training run, or list '%s' in export.quantize_exclude",
			    x->path, name, isnan(v) ? "NaN" : "an infinity",
			    (unsigned long long)elem, nx_export_quantize_names[x->o->quantize], name);
}

/* The int8 matrix t[rows, cols] to vo as [cols, rows], through a staging
 * buffer of TBLOCK output rows (each source row is read TBLOCK bytes at a
 * time, so the transposition stays in cache). */
#define TBLOCK 64

static int write_transposed(struct ex *x, const signed char *t, uint64_t rows, uint64_t cols,
			    struct qout *vo)
{
	signed char *st = malloc((size_t)(TBLOCK * rows));
	uint64_t c0, c, r;
	int rc = 0;

	if (!st)
		return nx_export__oom(x);
	for (c0 = 0; c0 < cols && !rc; c0 += TBLOCK) {
		uint64_t nc = cols - c0 < TBLOCK ? cols - c0 : TBLOCK;

		for (r = 0; r < rows; r++)
			for (c = 0; c < nc; c++)
				st[c * rows + r] = t[r * cols + c0 + c];
		rc = qout_write(vo, st, (size_t)(nc * rows));
	}
	free(st);
	return rc;
}

/* What went wrong in one piece of a job: the first failure of its range. */
struct qfail {
	int err;          /* a read failed: its errno */
	bool bad;         /* a value is not finite (fp16: or too large) */
	uint64_t at;      /* its element in the tensor */
	float v;
};

/* The first failure in the pieces, in the order one thread meets them (the
 * pieces are consecutive ranges), as an error; 0 if none. */
static int qfail_check(struct ex *x, const struct qfail *f, const char *path,
		       const char *name, uint64_t field, int (*bad)(struct ex *, const char *,
								     uint64_t, float, uint64_t))
{
	unsigned p;

	for (p = 0; p < QPIECES; p++) {
		if (f[p].err)
			return nx_error_errno(x->err, NX_EIO, f[p].err, path,
					      "cannot read weights from %s", path);
		if (f[p].bad)
			return bad(x, name, f[p].at, f[p].v, field);
	}
	return 0;
}

/* Rows [r0, r0 + nr) of the float32 matrix being quantized to int8, one
 * buffer of them, cut into pieces by row: each piece reads its own rows into
 * buf and either takes their column maxima (into max, one row of cols per
 * piece) or quantizes them into out (per column with scale, else per row,
 * the row scales into srow). */
struct qjob {
	const struct ex_qinit *q;
	int fd;
	uint64_t off;            /* the matrix in fd */
	float *buf;
	uint64_t r0, nr;
	bool maxima;
	float *max;
	const float *scale;
	signed char *out;
	float *srow;
	struct qfail fail[QPIECES];
};

static void qjob_piece(void *ctx, unsigned piece, unsigned npieces)
{
	struct qjob *j = ctx;
	uint64_t cols = j->q->cols, lo = j->nr * piece / npieces, hi = j->nr * (piece + 1) / npieces;
	uint64_t r, c;
	struct qfail *f = &j->fail[piece];

	memset(f, 0, sizeof(*f));
	if (lo == hi || (f->err = pread_all(j->fd, j->buf + lo * cols, (size_t)((hi - lo) * cols * 4),
					     j->off + (j->r0 + lo) * cols * 4)) != 0)
		return;
	for (r = lo; r < hi; r++) {
		const float *row = j->buf + r * cols;
		signed char *o = j->out + r * cols;
		float s = 0;

		if (j->scale) {
			for (c = 0; c < cols; c++)
				o[c] = nx_quant_int8(row[c], j->scale[c]);
			continue;
		}
		for (c = 0; c < cols; c++) {
			float v = row[c], a = fabsf(v);

			if (!isfinite(v)) {
				f->bad = true;
				f->at = (j->r0 + r) * cols + c;
				f->v = v;
				return;
			}
			if (j->maxima && a > j->max[piece * cols + c])
				j->max[piece * cols + c] = a;
			s = a > s ? a : s;
		}
		if (j->maxima)
			continue;
		s = j->srow[r] = nx_quant_int8_scale(s);
		for (c = 0; c < cols; c++)
			o[c] = nx_quant_int8(row[c], s);
	}
}

/*
 * Quantize the float32 matrix [rows, cols] at (fd, off): per column
 * (MatMul) or per row (Gather; a Gemm's transposed W[N, K], whose int8
 * values are gathered whole and written transposed, [K, N], the layout
 * MatMulInteger reads: memory rows * cols bytes, a quarter of the
 * float tensor).  Values to vo, scales to so.  The rows of each buffer
 * are quantized by the export's threads (quant_par.c).
 */
static int quantize(struct ex *x, const struct ex_qinit *q, int fd, const char *path,
		    uint64_t off, struct qout *vo, struct qout *so, uint64_t field)
{
	uint64_t rows_per = QBUF / 4 / q->cols ? QBUF / 4 / q->cols : 1, r0, c;
	size_t cap = (size_t)(rows_per * q->cols);
	unsigned p;
	bool per_col = q->kind == EX_Q_MATMUL, trans = q->kind == EX_Q_GEMM_T;
	struct qjob j = { .q = q, .fd = fd, .off = off };
	signed char *all = trans ? malloc((size_t)(q->rows * q->cols)) : NULL;
	float *scale = NULL;
	void *buf = NULL;
	int rc = 0;

	if (posix_memalign(&buf, 4096, cap * sizeof(float)))
		buf = NULL;    /* page-aligned: the kernel copies faster (hash.c) */
	j.buf = buf;
	j.out = trans ? NULL : malloc(cap);
	j.srow = per_col ? NULL : malloc((size_t)rows_per * sizeof(float));
	if (per_col) {
		scale = calloc((size_t)q->cols, sizeof(float));
		j.max = calloc((size_t)q->cols * QPIECES, sizeof(float));
	}
	if (!buf || (!j.out && !all) || (per_col ? !scale || !j.max : !j.srow)) {
		rc = nx_export__oom(x);
		goto out;
	}
	for (r0 = 0; per_col && r0 < q->rows; r0 += rows_per) {
		j.r0 = r0;
		j.nr = q->rows - r0 < rows_per ? q->rows - r0 : rows_per;
		j.maxima = true;
		nx_export__par_run(x, qjob_piece, &j, QPIECES);
		if ((rc = qfail_check(x, j.fail, path, q->name, field, not_finite)) != 0)
			goto out;
	}
	for (c = 0; per_col && c < q->cols; c++) {
		for (p = 0; p < QPIECES; p++)
			scale[c] = j.max[p * q->cols + c] > scale[c] ? j.max[p * q->cols + c] : scale[c];
		scale[c] = nx_quant_int8_scale(scale[c]);
	}
	j.maxima = false;
	j.scale = scale;
	for (r0 = 0; r0 < q->rows; r0 += rows_per) {
		j.r0 = r0;
		j.nr = q->rows - r0 < rows_per ? q->rows - r0 : rows_per;
		if (trans)
			j.out = all + r0 * q->cols;
		nx_export__par_run(x, qjob_piece, &j, QPIECES);
		if ((rc = qfail_check(x, j.fail, path, q->name, field, not_finite)) != 0)
			goto out;
		if (!per_col && (rc = qout_write(so, j.srow, (size_t)j.nr * sizeof(float))) != 0)
			goto out;
		if (!trans && (rc = qout_write(vo, j.out, (size_t)(j.nr * q->cols))) != 0)
			goto out;
	}
	if (per_col)
		rc = qout_write(so, scale, (size_t)q->cols * sizeof(float));
	else if (trans)
		rc = write_transposed(x, all, q->rows, q->cols, vo);
out:
	free(buf);
	free(all);
	if (!trans)
		free(j.out);
	free(j.srow);
	free(j.max);
	free(scale);
	return rc;
}

void nx_quant_int4_column(const float *v, uint64_t n, unsigned block, unsigned char *out,
			  float *scales)
{
	uint64_t nb = (n + block - 1) / block, b, i;

	memset(out, 0x88, (size_t)(nb * block / 2));   /* padding: q 0, stored 8 */
	for (b = 0; b < nb; b++) {
		uint64_t end = (b + 1) * block < n ? (b + 1) * block : n;
		float m = 0, s;

		for (i = b * block; i < end; i++)
			m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
		s = scales[b] = m > 0.0f ? m / 7.0f : 1.0f;
		for (i = b * block; i < end; i++) {
			float q = rintf(v[i] / s);
			unsigned u = (unsigned)((q > 7.0f ? 7 : q < -7.0f ? -7 : (int)q) + 8);

			out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] & 0x0f) | u << 4
							: (out[i / 2] & 0xf0) | u);
		}
	}
}

/* Columns [c0, c0 + nc) of an int4 tensor, cut into pieces (quant_par.c):
 * each piece gathers its columns from a (the whole [K, N] MatMul weight)
 * or reads them as rows of the [N, K] tensor in fd, into its own K floats
 * of col, and packs them into packed and sc at the column's place. */
struct int4_job {
	const float *a;
	int fd;
	uint64_t off, k, n, nb, c0, nc;
	unsigned block, pieces;
	float *col, *sc;
	unsigned char *packed;
	struct qfail fail[QPIECES];
};

static void int4_piece(void *ctx, unsigned piece, unsigned npieces)
{
	struct int4_job *j = ctx;
	uint64_t lo = j->c0 + j->nc * piece / npieces, hi = j->c0 + j->nc * (piece + 1) / npieces;
	uint64_t c, r, per = j->nb * j->block / 2;
	float *col = j->col + piece * j->k;
	struct qfail *f = &j->fail[piece];

	memset(f, 0, sizeof(*f));
	for (c = lo; c < hi; c++) {
		if (!j->a) {
			if ((f->err = pread_all(j->fd, col, (size_t)j->k * 4, j->off + c * j->k * 4)) != 0)
				return;
			for (r = 0; r < j->k; r++)
				if (!isfinite(col[r])) {
					f->bad = true;
					f->at = c * j->k + r;
					f->v = col[r];
					return;
				}
		} else {
			for (r = 0; r < j->k; r++)
				col[r] = j->a[r * j->n + c];
		}
		nx_quant_int4_column(col, j->k, j->block, j->packed + (c - j->c0) * per,
				     j->sc + (c - j->c0) * j->nb);
	}
}

/*
 * A MatMul weight W[K, N] as MatMulNBits wants it: per column n, blocks of
 * `block` values along K, packed [N, nblocks, block / 2] uint8 (zero point
 * 8 by default), scales [N * nblocks].  The column order needs the whole
 * tensor: it is read at once (memory: the largest such tensor).  A Gemm's
 * transposed W[N, K] has those columns as its rows: read a row at a time;
 * so has an embedding E[V, D] for GatherBlockQuantized, whose data is
 * [V, D / 2] and scales [V, D / block] (gather_int4).  The columns of
 * each buffer are packed by the export's threads (int4_piece).
 */
static int int4_tensor(struct ex *x, const struct ex_qinit *q, int fd, const char *path,
		       uint64_t off, uint64_t field, const char *name, bool external,
		       struct pw_msg *m)
{
	unsigned block = qblock(x);
	bool trans = q->kind != EX_Q_MATMUL, gather = q->kind == EX_Q_GATHER;
	uint64_t k = trans ? q->cols : q->rows, n = trans ? q->rows : q->cols;
	uint64_t nb = (k + block - 1) / block, c, r, dims[3];
	uint64_t bytes = n * nb * block / 2;
	struct qout vo = { 0 }, so = { 0 };
	struct int4_job j = { 0 };
	float *a = NULL, *col = NULL, *sc = NULL;
	unsigned char *packed = NULL;
	char qn[QNAME_MAX];
	int rc;

	if (k > INT32_MAX || n > INT32_MAX || nb > UINT64_MAX / n / block)
		return nx_error_set(x->err, NX_ELIMIT, x->path, 0, (long long)field,
				    "%s: tensor '%s' [%llu, %llu] is too big for the int4 block "
				    "layout of MatMulNBits (K and N at most 2^31 - 1): list it in "
				    "export.quantize_exclude or use int8", x->path, name,
				    (unsigned long long)k, (unsigned long long)n);
	if ((rc = qout_begin(&vo, x, (external || x->externalize) && bytes >= NX_EXPORT_EXTERNAL_MIN,
			     bytes, field, name)) != 0 ||
	    (rc = qout_begin(&so, x, false, n * nb * 4, field, name)) != 0)
		goto out;
	if (!x->dry) {
		/* columns a buffer at a time, about QBUF of packed values; one
		 * column buffer of K floats per piece (a single piece when K is
		 * so large that QPIECES of them would pass QBUF16) */
		uint64_t per = nb * block / 2, cols = QBUF / per ? QBUF / per : 1;

		j.pieces = (uint64_t)k * 4 * QPIECES <= QBUF16 ? QPIECES : 1;
		j.fd = fd;
		j.off = off;
		j.k = k;
		j.n = n;
		j.nb = nb;
		j.block = block;
		if ((!trans && !(a = malloc((size_t)(k * n * 4)))) ||
		    !(col = malloc((size_t)k * 4 * j.pieces)) ||
		    !(sc = malloc((size_t)(nb * 4 * cols))) || !(packed = malloc((size_t)(per * cols)))) {
			rc = nx_export__oom(x);
			goto out;
		}
		if (!trans && (rc = rd(x, fd, path, a, (size_t)(k * n * 4), off)) != 0)
			goto out;
		for (r = 0; !trans && r < k * n; r++)
			if (!isfinite(a[r])) {
				rc = not_finite(x, name, r, a[r], field);
				goto out;
			}
		j.a = a;
		j.col = col;
		j.packed = packed;
		j.sc = sc;
		for (c = 0; c < n; c += j.nc) {
			j.c0 = c;
			j.nc = n - c < cols ? n - c : cols;
			nx_export__par_run(x, int4_piece, &j, j.pieces);
			if ((rc = qfail_check(x, j.fail, path, name, field, not_finite)) != 0 ||
			    (rc = qout_write(&vo, packed, (size_t)(per * j.nc))) != 0 ||
			    (rc = qout_write(&so, sc, (size_t)(nb * 4 * j.nc))) != 0)
				goto out;
		}
	}
	dims[0] = n;
	dims[1] = gather ? nb * block / 2 : nb;
	dims[2] = block / 2;
	if ((rc = qout_tensor(&vo, m, nm(qn, name, "/int4"), 2, dims, gather ? 2 : 3)) != 0)
		goto out;
	dims[0] = gather ? n : n * nb;
	dims[1] = nb;
	if ((rc = qout_tensor(&so, m, nm(qn, name, "/scale"), 1, dims, gather ? 2 : 1)) != 0)
		goto out;
	x->res->quantized++;
	x->res->quantized_int4++;
	x->res->quant_float_bytes += k * n * 4;
out:
	free(vo.inl);
	free(so.inl);
	free(a);
	free(col);
	free(sc);
	free(packed);
	return rc;
}

/* fp16: one buffer of a tensor, cut into parts (quant_par.c). */
struct fp16_job {
	int fd;
	uint64_t off, i0;      /* the tensor in fd; this buffer's first element */
	size_t n;
	uint32_t *buf;
	uint16_t *h;
	struct qfail fail[QPIECES];
};

static void fp16_piece(void *ctx, unsigned piece, unsigned npieces)
{
	struct fp16_job *j = ctx;
	size_t lo = j->n * piece / npieces, hi = j->n * (piece + 1) / npieces, k;
	struct qfail *f = &j->fail[piece];

	memset(f, 0, sizeof(*f));
	if (lo == hi || (f->err = pread_all(j->fd, j->buf + lo, (hi - lo) * 4,
					     j->off + (j->i0 + lo) * 4)) != 0)
		return;
	for (k = lo; k < hi; k++) {
		j->h[k] = nx_quant_fp16(j->buf[k]);
		if ((j->h[k] & 0x7c00) == 0x7c00) {
			f->bad = true;
			f->at = j->i0 + k;
			memcpy(&f->v, &j->buf[k], 4);
			return;
		}
	}
}

/* A value fp16 has no form for: not finite, or past 65504. */
static int fp16_refused(struct ex *x, const char *name, uint64_t elem, float v, uint64_t field)
{
	if (!isfinite(v))
		return not_finite(x, name, elem, v, field);
	return nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)field,
			    "%s: tensor '%s' holds %g at element %llu, past float16's largest "
			    "value (65504): list '%s' in export.quantize_exclude, or use int8",
			    x->path, name, (double)v, (unsigned long long)elem, name);
}

/*
 * fp16: the n float32 values at (fd, off) as float16, streamed through
 * the QBUF buffer into vo, each buffer converted by the export's threads.
 * A value that is not finite, or too large for float16 (past 65504, which
 * would become an infinity), is refused like int8's NaN: a weight of that
 * size is a training fault, and an infinity in the served model hides it.
 */
static int fp16_values(struct ex *x, const char *name, int fd, const char *path, uint64_t off,
		       uint64_t n, struct qout *vo, uint64_t field)
{
	size_t cap = QBUF / 4;
	struct fp16_job j = { .fd = fd, .off = off };
	void *buf = NULL;
	int rc = 0;

	if (posix_memalign(&buf, 4096, cap * 4))
		buf = NULL;
	j.buf = buf;
	j.h = malloc(cap * 2);
	if (!j.buf || !j.h) {
		rc = nx_export__oom(x);
		goto out;
	}
	for (j.i0 = 0; j.i0 < n && !rc; j.i0 += cap) {
		j.n = n - j.i0 < cap ? (size_t)(n - j.i0) : cap;
		nx_export__par_run(x, fp16_piece, &j, QPIECES);
		if ((rc = qfail_check(x, j.fail, path, name, field, fp16_refused)) == 0)
			rc = qout_write(vo, j.h, j.n * 2);
	}
out:
	free(buf);
	free(j.h);
	return rc;
}

/* fp16: the float16 tensor "name/fp16" of the float32 initializer (field
 * fld, read by r), its dims copied as they are, added to graph m. */
static int fp16_tensor(struct ex *x, const struct ex_qinit *q, const struct nx_pb_reader *parent,
		       const struct nx_pb_field *fld, int fd, const char *path, uint64_t off,
		       bool external, struct pw_msg *m)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	uint64_t dims[QDIMS_MAX];
	int ndims = 0, rc;
	struct qout vo;
	char qn[QNAME_MAX];

	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc)
		if (f.num == 1 && f.wire == NX_PB_VARINT && ndims < QDIMS_MAX)
			dims[ndims++] = f.value;
	if (rc)
		return rc;
	if ((rc = qout_begin(&vo, x, (external || x->externalize) &&
				       q->nelem * 2 >= NX_EXPORT_EXTERNAL_MIN,
			     q->nelem * 2, fld->tag_offset, q->name)) != 0)
		return rc;
	if (!x->dry &&
	    (rc = fp16_values(x, q->name, fd, path, off, q->nelem, &vo, fld->tag_offset)) != 0) {
		free(vo.inl);
		return rc;
	}
	if ((rc = qout_tensor(&vo, m, nm(qn, q->name, "/fp16"), 10, dims, ndims)) != 0)
		return rc;
	x->res->quantized++;
	x->res->quant_float_bytes += q->nelem * 4;
	return 0;
}

int nx_export__quant_tensor(struct ex *x, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		    const char *name, struct pw_msg *m, bool *done)
{
	const struct ex_qinit *q = x->qinits ? qinit_find(x, name) : NULL;
	struct nx_pb_reader r;
	struct nx_pb_field raw = { 0 };
	struct ext_ref e = { NULL, -1, -1 };
	struct ex_src src = { -1, NULL, 0, 0 };
	struct qout vo = { 0 }, so = { 0 };
	bool external = false, has_raw = false, to_file;
	uint64_t n, nscale, dims[3];
	char qn[QNAME_MAX];
	int fd, rc;
	const char *path;
	uint64_t off, len;

	*done = false;
	if (!q || q->kind == EX_Q_NONE)
		return 0;
	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	if ((rc = nx_export__tensor_payload(x, &r, &e, &external, &raw, &has_raw, NULL)) != 0)
		goto out;
	n = q->kind == EX_Q_FP16 ? q->nelem : q->rows * q->cols;
	if (external && e.location) {
		if ((rc = nx_export__external(x, name, e.location, e.offset, e.length, fld->tag_offset,
				      &src)) != 0)
			goto out;
		fd = src.fd;
		path = src.path;
		off = src.off;
		len = src.len;
	} else if (has_raw && !external) {
		fd = x->src_fd;
		path = x->path;
		off = raw.offset;
		len = raw.len;
	} else {
		rc = nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)fld->tag_offset,
				  "%s: tensor '%s' has no readable float32 payload to quantize",
				  x->path, name);
		goto out;
	}
	if (!x->dry && (len / 4 != n || len % 4)) {
		rc = nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)fld->tag_offset,
				  "%s: tensor '%s' has %llu bytes where its shape takes %llu",
				  x->path, name, (unsigned long long)len, (unsigned long long)(n * 4));
		goto out;
	}
	if (q->kind == EX_Q_FP16) {
		if (strlen(name) + 16 > QNAME_MAX)
			rc = nx_error_set(x->err, NX_ELIMIT, x->path, 0, (long long)fld->tag_offset,
					  "%s: tensor name '%.64s...' too long to quantize", x->path,
					  name);
		else
			rc = fp16_tensor(x, q, parent, fld, fd, path, off, external, m);
		goto out;
	}
	if ((q->kind != EX_Q_GATHER && x->o->quantize == NX_EXPORT_QUANT_INT4) || gather_int4(x, q)) {
		rc = int4_tensor(x, q, fd, path, off, fld->tag_offset, name, external, m);
		goto out;
	}
	to_file = (external || x->externalize) && n >= NX_EXPORT_EXTERNAL_MIN;
	nscale = q->kind == EX_Q_MATMUL ? q->cols : q->rows;   /* Gemm transB: per row N */
	if (strlen(name) + 16 > QNAME_MAX) {
		rc = nx_error_set(x->err, NX_ELIMIT, x->path, 0, (long long)fld->tag_offset,
				  "%s: tensor name '%.64s...' too long to quantize", x->path, name);
		goto out;
	}
	/* the values first (streamed to the file), the scales after them */
	if ((rc = qout_begin(&vo, x, to_file, n, fld->tag_offset, name)) != 0)
		goto out;
	if ((rc = qout_begin(&so, x, false, nscale * 4, fld->tag_offset, name)) != 0)
		goto out;
	if (!x->dry && (rc = quantize(x, q, fd, path, off, &vo, &so, fld->tag_offset)) != 0)
		goto out;
	dims[0] = q->kind == EX_Q_GEMM_T ? q->cols : q->rows;   /* written [K, N] */
	dims[1] = q->kind == EX_Q_GEMM_T ? q->rows : q->cols;
	if ((rc = qout_tensor(&vo, m, nm(qn, name, "/int8"), 3, dims, 2)) != 0)
		goto out;
	/* the scales of a big embedding go to the data file too */
	if (!x->dry && (external || x->externalize) && nscale * 4 >= NX_EXPORT_EXTERNAL_MIN) {
		struct qout big;

		if ((rc = qout_begin(&big, x, true, nscale * 4, fld->tag_offset, name)) != 0 ||
		    (rc = qout_write(&big, so.inl, (size_t)(nscale * 4))) != 0)
			goto out;
		free(so.inl);
		so.inl = NULL;
		so = big;
	}
	dims[0] = nscale;
	dims[1] = 1;
	rc = qout_tensor(&so, m, nm(qn, name, "/scale"), 1, dims, q->kind == EX_Q_GATHER ? 2 : 1);
	if (rc)
		goto out;
	x->res->quantized++;
	x->res->quant_float_bytes += n * 4;
out:
	*done = !rc;
	free(vo.inl);
	free(so.inl);
	free(e.location);
	nx_export__src_release(&src);
	return rc;
}
