/*
 * export_rewrite.c - the second pass: build the rewritten message tree.
 *
 * Each rewriter walks one message and, field by field, copies it (as a
 * source range), drops it (into the report), or rewrites it (a child
 * message).  A rewritten child that came out unchanged is turned back into a
 * copied range by nx_export__add_sub, so an export that changes nothing writes the
 * source byte for byte.
 */
#include "export_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/fingerprint.h"

static int nx_export__add_sub(struct pw_msg *parent, const struct nx_pb_field *fld, struct pw_msg *child);
static int nx_export__rewrite_tensor_as(struct ex *x, const struct nx_pb_reader *parent,
			 const struct nx_pb_field *fld, const char *rename, struct pw_msg **out);
static int nx_export__alias_emit(struct ex *x, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
		  const char *name, struct pw_msg *m);

/* rc is 0 inside the body, 0 or an error after the loop */
#define LOOP(x, r, f, rc) while (((rc) = nx_pb_next((r), (f), (x)->err)) > 0 && ((rc) = 0) == 0)
#define TRAINING_DOMAIN "ai.onnx.preview.training"

static int rewrite_graph(struct ex *x, const struct nx_pb_reader *parent,
			 const struct nx_pb_field *fld, bool main_graph, struct pw_msg **out);

static uint64_t field_bytes(const struct nx_pb_field *f)
{
	return f->offset + f->len - f->tag_offset;
}

static int keep(struct pw_msg *m, const struct nx_pb_field *f)
{
	return nx_pw__copy(m, f->num, f->tag_offset, field_bytes(f));
}

static int nx_export__add_sub(struct pw_msg *parent, const struct nx_pb_field *fld, struct pw_msg *child)
{
	bool same = (child->n == 0 && fld->len == 0) ||
		    (child->n == 1 && child->p[0].kind == PW_COPY &&
		     child->p[0].off == fld->offset && child->p[0].len == fld->len);

	if (same) {
		nx_pw__msg_free(child);
		return keep(parent, fld);
	}
	return nx_pw__child(parent, fld->num, child);
}

static int doc(struct ex *x, struct pw_msg *m, const struct nx_pb_field *f)
{
	if (!x->o->strip_metadata)
		return keep(m, f);
	x->res->doc_strings++;
	x->res->removed_bytes += field_bytes(f);
	return 0;
}

static int unknown(struct ex *x, const struct nx_pb_field *f)
{
	char name[32];

	snprintf(name, sizeof(name), "field %u", f->num);
	return nx_export__report(x, NX_EXPORT_UNKNOWN_FIELD, name, field_bytes(f), f->tag_offset);
}

static int oom(struct ex *x, int rc)
{
	return rc == NX_ENOMEM ? nx_export__oom(x) : rc;
}

/* A rewriter of one kind of sub-message; *out only on success. */
typedef int (*rewriter)(struct ex *x, const struct nx_pb_reader *parent,
			const struct nx_pb_field *fld, struct pw_msg **out);

/* Rewrite the sub-message f with fn and add it to m. */
static int add_rewritten(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
			 const struct nx_pb_field *f, rewriter fn)
{
	struct pw_msg *c = NULL;
	int rc = fn(x, r, f, &c);

	return rc ? rc : oom(x, nx_export__add_sub(m, f, c));
}

/* The same for a field that is a message only when length-delimited. */
static int add_if_message(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
			  const struct nx_pb_field *f, rewriter fn)
{
	return f->wire == NX_PB_LEN ? add_rewritten(x, m, r, f, fn) : keep(m, f);
}

/* What a rewriter does with one field of its message: add it to m or report. */
typedef int (*field_fn)(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
			const struct nx_pb_field *f, void *ctx);

/* The frame of a one-pass rewriter: a new message made of what fn does with
 * each field of the sub-message fld.  *out only on success. */
static int rewrite_fields(struct ex *x, const struct nx_pb_reader *parent,
			  const struct nx_pb_field *fld, field_fn fn, void *ctx,
			  struct pw_msg **out)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct pw_msg *m = nx_pw__msg_new();
	int rc;

	if (!m)
		return nx_export__oom(x);
	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		goto out;
	LOOP(x, &r, &f, rc)
		if ((rc = fn(x, m, &r, &f, ctx)) != 0)
			goto out;
	if (rc)
		goto out;
	*out = m;
	m = NULL;
out:
	nx_pw__msg_free(m);
	return rc;
}

/* StringStringEntryProto of metadata_props: kept or reported by key. */
static int meta(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *parent,
		const struct nx_pb_field *fld)
{
	char *key = NULL;
	int rc;

	if (!x->o->strip_metadata)
		return keep(m, fld);
	rc = nx_export__read_strings(x, parent, fld, 1, &key, 0, NULL);
	if (!rc)
		rc = nx_export__keep_meta(x, key ? key : "")
			     ? keep(m, fld)
			     : nx_export__report(x, NX_EXPORT_METADATA, key, field_bytes(fld), fld->tag_offset);
	free(key);
	return oom(x, rc);
}

/*
 * TensorProto.  A first look finds data_location, external_data and
 * raw_data.  Where the bytes end up:
 *  - external, NX_EXPORT_EXTERNAL_MIN or more: copied into the bundle's data
 *    file, the entries rewritten to it;
 *  - external but smaller: read and put inline as raw_data (a tensor ONNX
 *    shape inference may need to read, such as an axes input, must be);
 *  - inline raw_data of an initializer, NX_EXPORT_EXTERNAL_MIN or more, when
 *    x->externalize: moved into the data file the same way;
 *  - otherwise the fields stay as they were.
 * *name_out (may be NULL) receives the tensor name.
 */
static int rewrite_tensor(struct ex *x, const struct nx_pb_reader *parent,
			  const struct nx_pb_field *fld, struct pw_msg **out, char **name_out,
			  bool initializer, const char *rename)
{
	struct nx_pb_reader r;
	struct nx_pb_field f, raw = { 0 };
	struct pw_msg *m = NULL;
	struct ext_ref e = { NULL, -1, -1 };
	struct ex_src src = { -1, NULL, 0, 0 };
	unsigned char *inl = NULL;
	char *name = NULL;
	bool external = false, has_raw = false, to_file = false, to_inline = false;
	uint64_t noff = 0, nlen = 0;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	if ((rc = nx_export__tensor_payload(x, &r, &e, &external, &raw, &has_raw, &name)) != 0)
		goto out;
	if (external) {
		if (!e.location) {
			rc = nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)fld->tag_offset,
					  "%s: tensor '%s' is external but names no location",
					  x->path, name ? name : "");
			goto out;
		}
		if ((rc = nx_export__external(x, name ? name : "", e.location, e.offset, e.length,
				      fld->tag_offset, &src)) != 0)
			goto out;
		if (src.fd >= 0 && src.len < NX_EXPORT_EXTERNAL_MIN) {
			to_inline = true;
			if (!x->dry && (rc = nx_export__read_small(x, &src, &inl)) != 0)
				goto out;
		} else {
			to_file = true;
			nlen = src.len;
			if ((rc = nx_export__data_copy(x, src.fd, src.path, src.off, src.len,
					       fld->tag_offset, name ? name : "", &noff)) != 0)
				goto out;
		}
	} else if (initializer && has_raw && x->externalize && raw.len >= NX_EXPORT_EXTERNAL_MIN) {
		to_file = true;
		nlen = raw.len;
		if ((rc = nx_export__data_copy(x, x->src_fd, x->path, raw.offset, raw.len,
				       fld->tag_offset, name ? name : "", &noff)) != 0)
			goto out;
	}
	if (!(m = nx_pw__msg_new())) {
		rc = nx_export__oom(x);
		goto out;
	}
	r.pos = fld->offset;
	LOOP(x, &r, &f, rc) {
		switch (f.num) {
		case 12:
			rc = doc(x, m, &f);
			break;
		case 13: case 14:
			rc = external ? 0 : keep(m, &f);
			break;
		case 9:
			rc = to_file || to_inline ? 0 : keep(m, &f);
			break;
		case 16:
			rc = meta(x, m, &r, &f);
			break;
		case 8:
			rc = rename ? oom(x, nx_pw__string(m, 8, rename, strlen(rename))) : keep(m, &f);
			break;
		case 1: case 2: case 3: case 4: case 5: case 6: case 7:
		case 10: case 11:
			rc = keep(m, &f);
			break;
		default:
			rc = unknown(x, &f);
		}
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	if (to_inline && !x->dry)
		rc = oom(x, nx_pw__string(m, 9, (const char *)inl, (size_t)src.len));
	else if (to_file)
		rc = oom(x, nx_export__ext_fields(m, noff, nlen));
	if (rc)
		goto out;
	*out = m;
	m = NULL;
	if (name_out) {
		*name_out = name;
		name = NULL;
	}
out:
	nx_pw__msg_free(m);
	free(name);
	free(e.location);
	free(inl);
	nx_export__src_release(&src);
	return rc;
}

static int nx_export__rewrite_tensor_as(struct ex *x, const struct nx_pb_reader *parent,
			 const struct nx_pb_field *fld, const char *rename, struct pw_msg **out)
{
	return rewrite_tensor(x, parent, fld, out, NULL, true, rename);
}

/* A tensor or sparse tensor as a plain rewriter, its name not needed. */
static int tensor_msg(struct ex *x, const struct nx_pb_reader *parent,
		      const struct nx_pb_field *fld, struct pw_msg **out)
{
	return rewrite_tensor(x, parent, fld, out, NULL, false, NULL);
}

/* SparseTensorProto: values = 1, indices = 2 (tensors), dims = 3. */
static int sparse_field(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
			const struct nx_pb_field *f, void *ctx)
{
	struct pw_msg *t = NULL;
	int rc;

	if ((f->num == 1 || f->num == 2) && f->wire == NX_PB_LEN) {
		rc = rewrite_tensor(x, r, f, &t, f->num == 1 ? (char **)ctx : NULL, false, NULL);
		return rc ? rc : oom(x, nx_export__add_sub(m, f, t));
	}
	return f->num == 3 ? keep(m, f) : unknown(x, f);
}

static int rewrite_sparse(struct ex *x, const struct nx_pb_reader *parent,
			  const struct nx_pb_field *fld, struct pw_msg **out, char **name_out)
{
	char *name = NULL;
	int rc;

	rc = rewrite_fields(x, parent, fld, sparse_field, &name, out);
	if (!rc && name_out) {
		*name_out = name;
		name = NULL;
	}
	free(name);
	return rc;
}

/* The name of a SparseTensorProto: that of its values tensor (field 1). */
static int sparse_name(struct ex *x, const struct nx_pb_reader *parent,
		       const struct nx_pb_field *fld, char **name)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc) {
		if (f.num == 1 && f.wire == NX_PB_LEN && (rc = nx_export__read_strings(x, &r, &f, 8, name,
									   0, NULL)) != 0)
			break;
	}
	return rc;
}

static int sparse_msg(struct ex *x, const struct nx_pb_reader *parent,
		      const struct nx_pb_field *fld, struct pw_msg **out)
{
	return rewrite_sparse(x, parent, fld, out, NULL);
}

/* ValueInfoProto: name = 1, type = 2, doc_string = 3, metadata_props = 4. */
static int value_field(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
		       const struct nx_pb_field *f, void *ctx)
{
	switch (f->num) {
	case 1:
		return nx_export__read_name(x, f, ctx) ?: keep(m, f);
	case 2:
		return keep(m, f);
	case 3:
		return doc(x, m, f);
	case 4:
		return meta(x, m, r, f);
	default:
		return unknown(x, f);
	}
}

static int rewrite_value(struct ex *x, const struct nx_pb_reader *parent,
			 const struct nx_pb_field *fld, struct pw_msg **out, char **name_out)
{
	struct pw_msg *m = NULL;
	char *name = NULL;
	int rc;

	rc = rewrite_fields(x, parent, fld, value_field, &name, &m);
	if (rc)
		goto out;
	*name_out = name ? name : strdup("");
	name = NULL;
	if (!*name_out) {
		rc = nx_export__oom(x);
		goto out;
	}
	*out = m;
	m = NULL;
out:
	nx_pw__msg_free(m);
	free(name);
	return rc;
}

/* A value_info as a plain rewriter, its name not needed. */
static int value_msg(struct ex *x, const struct nx_pb_reader *parent,
		     const struct nx_pb_field *fld, struct pw_msg **out)
{
	char *name = NULL;
	int rc = rewrite_value(x, parent, fld, out, &name);

	free(name);
	return rc;
}

/* A subgraph (of an attribute): kept whole but for doc strings/metadata. */
static int subgraph_msg(struct ex *x, const struct nx_pb_reader *parent,
			const struct nx_pb_field *fld, struct pw_msg **out)
{
	return rewrite_graph(x, parent, fld, false, out);
}

/* AttributeProto: subgraphs and tensors are rewritten, doc_string dropped. */
static int attr_field(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
		      const struct nx_pb_field *f, void *ctx)
{
	(void)ctx;
	switch (f->num) {
	case 13:
		return doc(x, m, f);
	case 5: case 10:
		return add_if_message(x, m, r, f, tensor_msg);
	case 22: case 23:
		return add_if_message(x, m, r, f, sparse_msg);
	case 6: case 11:
		return add_if_message(x, m, r, f, subgraph_msg);
	case 1: case 2: case 3: case 4: case 7: case 8: case 9: case 14: case 15:
	case 20: case 21:
		return keep(m, f);
	default:
		return unknown(x, f);
	}
}

static int rewrite_attr(struct ex *x, const struct nx_pb_reader *parent,
			const struct nx_pb_field *fld, struct pw_msg **out)
{
	return rewrite_fields(x, parent, fld, attr_field, NULL, out);
}

static bool training_op(const char *op)
{
	return !strcmp(op, "Gradient") || !strcmp(op, "Momentum") || !strcmp(op, "Adagrad") ||
	       !strcmp(op, "Adam");
}

struct node_names {
	char *op, *domain, *name;
};

/* NodeProto: op_type/domain checked, name checked for forbidden terms. */
static int node_field(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
		      const struct nx_pb_field *f, void *ctx)
{
	struct node_names *n = ctx;
	int rc;

	switch (f->num) {
	case 3:
		if ((rc = nx_export__read_name(x, f, &n->name)) != 0 ||
		    (rc = nx_export__check_term(x, "node", n->name, f->offset)) != 0)
			return rc;
		return keep(m, f);
	case 4:
		return nx_export__read_name(x, f, &n->op) ?: keep(m, f);
	case 7:
		return nx_export__read_name(x, f, &n->domain) ?: keep(m, f);
	case 6:
		return doc(x, m, f);
	case 9:
		return meta(x, m, r, f);
	case 5:
		return add_if_message(x, m, r, f, rewrite_attr);
	case 1: case 2: case 8:
		return keep(m, f);
	default:
		return unknown(x, f);
	}
}

static int rewrite_node(struct ex *x, const struct nx_pb_reader *parent,
			const struct nx_pb_field *fld, struct pw_msg **out)
{
	struct node_names n = { NULL, NULL, NULL };
	const char *domain;
	struct pw_msg *m = NULL;
	int rc;

	rc = rewrite_fields(x, parent, fld, node_field, &n, &m);
	if (rc)
		goto out;
	domain = n.domain;
	if ((domain && !strcmp(domain, TRAINING_DOMAIN)) ||
	    ((!domain || !domain[0] || !strcmp(domain, "ai.onnx")) && n.op && training_op(n.op))) {
		rc = nx_error_set(x->err, NX_ECHECK, x->path, 0, (long long)fld->tag_offset,
				  "%s: node '%s' is the training operator %s%s%s, which has no "
				  "place in an inference bundle; export the model for inference",
				  x->path, n.name ? n.name : "", domain && domain[0] ? domain : "",
				  domain && domain[0] ? "." : "", n.op ? n.op : "");
		goto out;
	}
	*out = m;
	m = NULL;
out:
	nx_pw__msg_free(m);
	free(n.op);
	free(n.domain);
	free(n.name);
	return rc;
}

static int node_label(struct ex *x, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		      size_t index, char **out)
{
	char *name = NULL, *op = NULL, buf[300];
	int rc;

	rc = nx_export__read_strings(x, parent, fld, 3, &name, 4, &op);
	if (!rc && name && name[0]) {
		*out = name;
		name = NULL;
	} else if (!rc) {
		snprintf(buf, sizeof(buf), "%s#%zu", op ? op : "node", index);
		if (!(*out = strdup(buf)))
			rc = nx_export__oom(x);
	}
	free(name);
	free(op);
	return rc;
}

/* GraphProto.  In the main graph the analysis decides what is kept; a
 * subgraph of a kept node is kept whole (minus doc strings/metadata). */
static int rewrite_graph(struct ex *x, const struct nx_pb_reader *parent,
			 const struct nx_pb_field *fld, bool main_graph, struct pw_msg **out)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct pw_msg *m = nx_pw__msg_new(), *c = NULL;
	char *name = NULL;
	size_t nodes = 0;
	int rc;

	if (!m)
		return nx_export__oom(x);
	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		goto out;
	LOOP(x, &r, &f, rc) {
		bool drop, quantized = false;

		c = NULL;
		switch (f.num) {
		case 1:
			if (main_graph && !nodes && x->o->quantize == NX_EXPORT_QUANT_FP16 &&
			    (rc = nx_export__quant_casts(x, m)) != 0)
				break;
			if (main_graph && nodes < x->nnodes && !x->keep_node[nodes]) {
				if (!(rc = node_label(x, &r, &f, nodes, &name)))
					rc = nx_export__report(x, NX_EXPORT_NODE, name, field_bytes(&f),
						       f.tag_offset);
			} else if (main_graph && x->qnode && x->qnode[nodes]) {
				rc = nx_export__quant_node(x, &f, nodes, m);
			} else {
				rc = add_rewritten(x, m, &r, &f, rewrite_node);
			}
			nodes++;
			break;
		case 2:
			if (!(rc = nx_export__read_name(x, &f, &name)) &&
			    !(rc = nx_export__check_term(x, "graph", name, f.offset)))
				rc = keep(m, &f);
			break;
		case 10:
			rc = doc(x, m, &f);
			break;
		case 5: case 15:
			/* an initializer is rewritten (its data copied) only once
			 * it is known to be kept: a dropped one's bytes never
			 * reach the data file */
			rc = f.num == 5 ? nx_export__read_strings(x, &r, &f, 8, &name, 0, NULL)
					: sparse_name(x, &r, &f, &name);
			if (rc)
				break;
			if (f.num == 5 && main_graph &&
			    (rc = nx_export__alias_emit(x, &r, &f, name ? name : "", m)) != 0)
				break;
			if (main_graph && !nx_strset_has(&x->needed, name ? name : "")) {
				nx_pw__msg_free(c);
				rc = nx_export__report(x, NX_EXPORT_INITIALIZER, name, field_bytes(&f),
					       f.tag_offset);
			} else if ((rc = nx_export__check_term(x, "initializer", name ? name : "",
						       f.offset)) != 0) {
				nx_pw__msg_free(c);
			} else if (f.num == 5 && main_graph &&
				   ((rc = nx_export__quant_tensor(x, &r, &f, name ? name : "", m, &quantized)) != 0 ||
				    quantized)) {
				x->res->kept_initializers += !rc;
			} else if ((rc = f.num == 5 ? rewrite_tensor(x, &r, &f, &c, NULL, true, NULL)
						    : rewrite_sparse(x, &r, &f, &c, NULL)) != 0) {
				break;
			} else {
				x->res->kept_initializers += main_graph;
				rc = oom(x, nx_export__add_sub(m, &f, c));
			}
			break;
		case 11: case 12: case 13:
			/* the names were checked by the reader; terms only for kept ones */
			if ((rc = rewrite_value(x, &r, &f, &c, &name)) != 0)
				break;
			if (f.num == 12)
				drop = main_graph && !nx_strset_has(&x->requested, name);
			else
				drop = main_graph && !nx_strset_has(&x->needed, name);
			if (drop) {
				nx_pw__msg_free(c);
				rc = nx_export__report(x, f.num == 11 ? NX_EXPORT_INPUT :
						  f.num == 12 ? NX_EXPORT_OUTPUT : NX_EXPORT_VALUE_INFO,
					       name, field_bytes(&f), f.tag_offset);
			} else if (!(rc = nx_export__check_term(x, "value", name, f.offset))) {
				rc = oom(x, nx_export__add_sub(m, &f, c));
			} else {
				nx_pw__msg_free(c);
			}
			break;
		case 14:
			rc = keep(m, &f);
			break;
		case 16:
			rc = meta(x, m, &r, &f);
			break;
		default:
			rc = unknown(x, &f);
		}
		free(name);
		name = NULL;
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	if (main_graph) {
		size_t i;

		x->res->kept_nodes = 0;
		for (i = 0; i < x->nnodes; i++)
			x->res->kept_nodes += x->keep_node[i];
		/* requested intermediate values become outputs, typed by their value_info */
		r.pos = fld->offset;
		for (i = 0; i < x->nextra && !rc; i++) {
			r.pos = fld->offset;
			LOOP(x, &r, &f, rc) {
				if (f.num != 13)
					continue;
				if ((rc = rewrite_value(x, &r, &f, &c, &name)) != 0)
					break;
				if (!strcmp(name, x->extra_outputs[i])) {
					free(name);
					name = NULL;
					rc = oom(x, nx_pw__child(m, 12, c));
					break;
				}
				free(name);
				name = NULL;
				nx_pw__msg_free(c);
			}
			if (rc > 0)
				rc = 0;
		}
		if (rc)
			goto out;
	}
	*out = m;
	m = NULL;
out:
	nx_pw__msg_free(m);
	free(name);
	return rc;
}

/* FunctionProto: nodes and value_info rewritten, doc_string dropped. */
static int function_field(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *r,
			  const struct nx_pb_field *f, void *ctx)
{
	(void)ctx;
	switch (f->num) {
	case 7:
		return add_rewritten(x, m, r, f, rewrite_node);
	case 11:
		return add_rewritten(x, m, r, f, rewrite_attr);
	case 12:
		return add_rewritten(x, m, r, f, value_msg);
	case 8:
		return doc(x, m, f);
	case 14:
		return meta(x, m, r, f);
	case 1: case 4: case 5: case 6: case 9: case 10: case 13:
		return keep(m, f);
	default:
		return unknown(x, f);
	}
}

static int rewrite_function(struct ex *x, const struct nx_pb_reader *parent,
			    const struct nx_pb_field *fld, struct pw_msg **out)
{
	return rewrite_fields(x, parent, fld, function_field, NULL, out);
}

static int main_graph_msg(struct ex *x, const struct nx_pb_reader *parent,
			  const struct nx_pb_field *fld, struct pw_msg **out)
{
	return rewrite_graph(x, parent, fld, true, out);
}

/* OperatorSetIdProto: the training domain's import goes with its nodes. */
static int opset(struct ex *x, struct pw_msg *m, const struct nx_pb_reader *parent,
		 const struct nx_pb_field *fld)
{
	char *domain = NULL;
	int rc;

	rc = nx_export__read_strings(x, parent, fld, 1, &domain, 0, NULL);
	if (domain && !strcmp(domain, "com.microsoft"))
		x->ms_opset = true;
	if (!rc)
		rc = domain && !strcmp(domain, TRAINING_DOMAIN)
			     ? nx_export__report(x, NX_EXPORT_OPSET, domain, field_bytes(fld), fld->tag_offset)
			     : keep(m, fld);
	free(domain);
	return oom(x, rc);
}

int nx_export__rewrite_model(struct ex *x, struct pw_msg **out)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct pw_msg *m = nx_pw__msg_new();
	const char *version = x->o->producer_version ? x->o->producer_version : "unknown";
	size_t training = 0;
	int rc;

	if (!m)
		return nx_export__oom(x);
	if ((rc = nx_pb_reader_init(&r, &x->f, 0, x->f.size, x->err)) != 0)
		goto out;
	LOOP(x, &r, &f, rc) {
		switch (f.num) {
		case 2: case 3:
			rc = x->o->strip_metadata ? 0 : keep(m, &f);
			if (x->o->strip_metadata)
				x->res->removed_bytes += field_bytes(&f);
			break;
		case 6:
			rc = doc(x, m, &f);
			break;
		case 7:
			rc = add_rewritten(x, m, &r, &f, main_graph_msg);
			break;
		case 8:
			rc = opset(x, m, &r, &f);
			break;
		case 14:
			rc = meta(x, m, &r, &f);
			break;
		case 20: {
			char label[32];

			snprintf(label, sizeof(label), "training_info[%zu]", training++);
			rc = nx_export__report(x, NX_EXPORT_TRAINING_INFO, label, field_bytes(&f),
				       f.tag_offset);
			break;
		}
		case 25:
			rc = add_rewritten(x, m, &r, &f, rewrite_function);
			break;
		case 1: case 4: case 5:
			rc = keep(m, &f);
			break;
		default:
			rc = unknown(x, &f);
		}
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	/* MatMulNBits (int4) is a com.microsoft contrib op */
	if (x->res->quantized_int4 && !x->ms_opset) {
		struct pw_msg *o = nx_pw__msg_new();

		if (!o || nx_pw__string(o, 1, "com.microsoft", 13) || nx_pw__varint_field(o, 2, 1) ||
		    nx_pw__child(m, 8, o)) {
			nx_pw__msg_free(o);
			rc = nx_export__oom(x);
			goto out;
		}
	}
	if (x->o->strip_metadata &&
	    ((rc = nx_pw__string(m, 2, "nexus", 5)) != 0 ||
	     (rc = nx_pw__string(m, 3, version, strlen(version))) != 0)) {
		rc = nx_export__oom(x);
		goto out;
	}
	*out = m;
	m = NULL;
out:
	nx_pw__msg_free(m);
	return rc;
}

static int nx_export__alias_emit(struct ex *x, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
		  const char *name, struct pw_msg *m)
{
	struct pw_msg *c = NULL;
	bool judged = false, flat = false;
	uint64_t bytes = 0;
	size_t i;
	int rc = 0;

	for (i = 0; i < x->nnodes && !rc; i++) {
		const struct ex_node *n = &x->nodes[i];

		if (!n->materialise || strcmp(n->in[0], name))
			continue;
		if (!judged && (rc = nx_export__alias_flat(x, r, fld, &flat, &bytes, name)) != 0)
			break;
		judged = true;
		if (!flat && bytes >= NX_FP_MIN_BYTES) {
			rc = nx_error_set(x->err, NX_ECHECK, x->path, 0, (long long)fld->tag_offset,
					  "%s: the student's tensor '%s' is the teacher's '%s' (the "
					  "exporter stored equal tensors once), and its %" PRIu64
					  " bytes are not a constant fill: the student computes with "
					  "teacher weights; give the student its own values and "
					  "re-export", x->path, n->out[0], name, bytes);
			break;
		}
		if ((rc = nx_export__check_term(x, "initializer", n->out[0], fld->offset)) != 0 ||
		    (rc = nx_export__rewrite_tensor_as(x, r, fld, n->out[0], &c)) != 0)
			break;
		if ((rc = nx_pw__child(m, fld->num, c)) != 0) {
			rc = nx_export__oom(x);
			break;
		}
		x->res->kept_initializers++;
	}
	return rc;
}
