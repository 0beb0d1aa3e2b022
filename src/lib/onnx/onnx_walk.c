/* onnx_walk.c - walkers of GraphProto, NodeProto, AttributeProto and
 * FunctionProto; their field helpers are in onnx_field.c. */
#include "onnx_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOOP_FIELDS(w, r, fld, rc) while (((rc) = nx_pb_next((r), (fld), (w)->err)) > 0)

/* OperatorSetIdProto: domain = 1, version = 2. */
int nx_onnx__walk_opset(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	       bool keep)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct nx_onnx_opset o = { NULL, 0 };
	nx_onnx_summary *s = w->sum;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		if (f.num == 1)
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_DOMAIN, NX_ONNX_NAME_MAX,
					 keep ? &o.domain : NULL);
		else if (f.num == 2 && !(rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT)))
			o.version = (int64_t)f.value;
		else if (f.num != 2)
			rc = nx_onnx__walk_unknown(w, &f);
		if (rc)
			goto out;
	}
	if (rc || !keep)
		goto out;
	if (!o.domain && !(o.domain = strdup(""))) {
		rc = nx_error_oom(w->err, w->f.path);
		goto out;
	}
	if ((rc = nx_onnx__walk_grow(w, (void **)&s->opsets, &w->cap_opsets, s->nopsets, sizeof(o),
			    NX_ONNX_ENTRIES_MAX)) != 0)
		goto out;
	s->opsets[s->nopsets++] = o;
	o.domain = NULL;
out:
	free(o.domain);
	return rc;
}

static bool is_quant_op(const char *op)
{
	return !strcmp(op, "QuantizeLinear") || !strcmp(op, "DequantizeLinear") ||
	       !strcmp(op, "DynamicQuantizeLinear") || !strncmp(op, "QLinear", 7) ||
	       !strcmp(op, "MatMulInteger") || !strcmp(op, "ConvInteger");
}

static int add_domain(struct walk *w, const char *domain)
{
	nx_onnx_summary *s = w->sum;
	size_t i;
	int rc;

	for (i = 0; i < s->nop_domains; i++)
		if (!strcmp(s->op_domains[i], domain))
			return 0;
	if ((rc = nx_onnx__walk_grow(w, (void **)&s->op_domains, &w->cap_domains, s->nop_domains,
			    sizeof(char *), NX_ONNX_ENTRIES_MAX)) != 0)
		return rc;
	if (!(s->op_domains[s->nop_domains] = strdup(domain)))
		return nx_error_oom(w->err, w->f.path);
	s->nop_domains++;
	return 0;
}

/* A short string read without visiting it (names used to build scopes). */
static int peek_string(struct walk *w, const struct nx_pb_field *fld, char **out)
{
	int rc;

	if ((rc = nx_onnx__walk_expect(w, fld, NX_PB_LEN)) != 0)
		return rc;
	free(*out);
	*out = NULL;
	return nx_pb_read_string(&w->f, fld, NX_ONNX_NAME_MAX, out, NULL, w->err);
}

/*
 * AttributeProto.  Tensors and graphs inside it are walked with the scope
 * "<scope>/<node>:<attribute>" so findings can name where they are.
 */
static int walk_attr(struct walk *w, const struct nx_pb_reader *parent,
		     const struct nx_pb_field *fld, const char *node, uint32_t graph,
		     struct strset *used)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	char *name = NULL;
	size_t mark = (size_t)-1, ngraph = 0;
	uint32_t once = 0;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc)
		if (f.num == 1 && (rc = peek_string(w, &f, &name)) != 0)
			goto out;
	if (rc)
		goto out;
	mark = nx_onnx__scope_push(w, "/%s:%s", node, name ? name : "");
	r.pos = fld->offset;
	LOOP_FIELDS(w, &r, &f, rc) {
		/* t, g and sparse_tensor are single messages: protobuf would
		 * merge a second one into the first (two halves of a tensor
		 * become one), which no reader of fields one by one sees */
		if ((f.num == 5 || f.num == 6 || f.num == 22) && (once & (1u << (f.num % 32)))) {
			rc = nx_error_set(w->err, NX_EFORMAT, w->f.path, 0, (long long)f.tag_offset,
					  "attribute %s has field %u twice: not a valid ONNX model",
					  name ? name : "", f.num);
			goto out;
		}
		if (f.num == 5 || f.num == 6 || f.num == 22)
			once |= 1u << (f.num % 32);
		switch (f.num) {
		case 1: case 21:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_ATTR_NAME, 0, NULL);
			break;
		case 4: case 9:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_ATTR_STRING, 0, NULL);
			break;
		case 20: case 3:
			rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT);
			break;
		case 2:
			rc = nx_onnx__walk_expect(w, &f, NX_PB_I32);
			break;
		case 7:
			rc = f.wire == NX_PB_LEN ? 0 : nx_onnx__walk_expect(w, &f, NX_PB_I32);
			break;
		case 8:
			rc = f.wire == NX_PB_LEN ? 0 : nx_onnx__walk_expect(w, &f, NX_PB_VARINT);
			break;
		case 5: case 10:
			rc = nx_onnx__walk_tensor(w, &r, &f, graph, true);
			break;
		case 22: case 23:
			rc = nx_onnx__walk_sparse(w, &r, &f, graph, true);
			break;
		case 6: case 11: {
			size_t m2 = f.num == 11 ? nx_onnx__scope_push(w, "[%zu]", ngraph++) : strlen(w->scope);

			rc = nx_onnx__walk_graph(w, &r, &f, used, false);
			nx_onnx__scope_pop(w, m2);
			break;
		}
		case 14: case 15:
			rc = nx_onnx__walk_type(w, &r, &f, NULL);
			break;
		default:
			rc = nx_onnx__walk_common(w, &r, &f, 13, 0);
		}
		if (rc)
			goto out;
	}
out:
	if (mark != (size_t)-1)
		nx_onnx__scope_pop(w, mark);
	free(name);
	return rc;
}

/* NodeProto.  A first pass reads name and op_type to label the scope of the
 * node's subgraphs whatever the field order. */
static int walk_node(struct walk *w, const struct nx_pb_reader *parent,
		     const struct nx_pb_field *fld, size_t index, uint32_t graph,
		     struct strset *used, struct strset *defs)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	char *name = NULL, *op = NULL, *domain = NULL, *input = NULL, label[160];
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		rc = 0;
		if (f.num == 3)
			rc = peek_string(w, &f, &name);
		else if (f.num == 4)
			rc = peek_string(w, &f, &op);
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	if (name && name[0])
		snprintf(label, sizeof(label), "%s", name);
	else
		snprintf(label, sizeof(label), "%s_%zu", op ? op : "node", index);
	r.pos = fld->offset;
	LOOP_FIELDS(w, &r, &f, rc) {
		switch (f.num) {
		case 1:
			/* every input is kept: it may name an initializer */
			if (!(rc = nx_onnx__walk_string(w, &f, NX_ONNX_EDGE, NX_ONNX_NAME_MAX, &input)) &&
			    input[0])
				rc = nx_onnx__strset_add(w, used, input);
			if (input) {
				w->held -= strlen(input) + 1;
				free(input);
				input = NULL;
			}
			break;
		case 2:
			/* outputs are kept: one may take an initializer's name */
			if (!(rc = nx_onnx__walk_string(w, &f, NX_ONNX_EDGE, NX_ONNX_NAME_MAX, &input)) &&
			    input[0] && defs)
				rc = nx_onnx__strset_add(w, defs, input);
			if (input) {
				w->held -= strlen(input) + 1;
				free(input);
				input = NULL;
			}
			break;
		case 3:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_NODE_NAME, 0, NULL);
			break;
		case 4:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_OP_TYPE, 0, NULL);
			break;
		case 7:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_NODE_DOMAIN, NX_ONNX_NAME_MAX, &domain);
			break;
		case 8:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_OTHER, 0, NULL);
			break;
		case 5:
			rc = walk_attr(w, &r, &f, label, graph, used);
			break;
		default:
			rc = nx_onnx__walk_common(w, &r, &f, 6, 9);
		}
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	w->sum->nnodes++;
	if (op && is_quant_op(op))
		w->quant_op = true;
	if (op && !strcmp(op, "MatMulNBits"))
		w->nbits_op = true;
	rc = add_domain(w, domain ? domain : "");
out:
	free(name);
	free(op);
	free(domain);
	free(input);
	return rc;
}

/* Mark the initializers of graph `id` used by a node or output of it or of
 * an enclosed graph (whose uses were merged into `used`).  A name another
 * initializer or a node output (`dups`) of the graph also takes is no use
 * of it: ONNX Runtime reads one definition, the other is dead weight. */
static void resolve_refs(struct walk *w, size_t first, uint32_t id, const struct strset *used,
			 const struct strset *dups)
{
	nx_onnx_summary *s = w->sum;
	size_t i;

	for (i = first; i < s->ntensors; i++) {
		struct nx_onnx_tensor *t = &s->tensors[i];

		if (w->tensor_graph[i] != id || t->attribute)
			continue;
		t->duplicate = t->name && nx_onnx__strset_has(dups, t->name);
		t->referenced = t->name && !t->duplicate && nx_onnx__strset_has(used, t->name);
	}
}

/* Initializer `name` of a graph: remember it, and whether it is defined twice. */
static int add_init(struct walk *w, struct strset *inits, struct strset *dups, const char *name)
{
	if (nx_onnx__strset_has(inits, name))
		return nx_onnx__strset_has(dups, name) ? 0 : nx_onnx__strset_add(w, dups, name);
	return nx_onnx__strset_add(w, inits, name);
}

/* Keep only the main graph inputs that are not initializers. */
static void drop_initializer_inputs(struct walk *w, const struct strset *inits)
{
	nx_onnx_summary *s = w->sum;
	size_t i, n = 0;

	for (i = 0; i < s->ninputs; i++) {
		if (s->inputs[i].name && nx_onnx__strset_has(inits, s->inputs[i].name))
			nx_onnx__value_release(&s->inputs[i]);
		else
			s->inputs[n++] = s->inputs[i];
	}
	s->ninputs = n;
}

static int add_value(struct walk *w, const struct nx_pb_reader *r, const struct nx_pb_field *f,
		     struct nx_onnx_value **arr, size_t *n, size_t *cap)
{
	int rc;

	if ((rc = nx_onnx__walk_grow(w, (void **)arr, cap, *n, sizeof(**arr), NX_ONNX_VALUES_MAX)) != 0)
		return rc;
	if ((rc = nx_onnx__walk_value(w, r, f, &(*arr)[*n])) != 0) {
		nx_onnx__value_release(&(*arr)[*n]);
		return rc;
	}
	(*n)++;
	return 0;
}

/*
 * GraphProto.  Names used inside the graph (node inputs, outputs, and those of
 * enclosed subgraphs, which may refer to outer initializers) are merged into
 * parent_used so that enclosing graphs can resolve their initializers too.
 */
int nx_onnx__walk_graph(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	       struct strset *parent_used, bool main_graph)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct strset used = { 0 }, inits = { 0 }, defs = { 0 }, dups = { 0 };
	nx_onnx_summary *s = w->sum;
	size_t first = s->ntensors, nodes = 0, i;
	uint32_t id = w->next_graph++;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	s->ngraphs++;
	LOOP_FIELDS(w, &r, &f, rc) {
		switch (f.num) {
		case 1:
			rc = walk_node(w, &r, &f, nodes++, id, &used, &defs);
			break;
		case 2:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_GRAPH_NAME, 0, NULL);
			break;
		case 5:
			if (!(rc = nx_onnx__walk_tensor(w, &r, &f, id, false)))
				rc = add_init(w, &inits, &dups, s->tensors[s->ntensors - 1].name);
			break;
		case 15:
			if (!(rc = nx_onnx__walk_sparse(w, &r, &f, id, false)))
				rc = add_init(w, &inits, &dups, s->tensors[s->ntensors - 1].name);
			break;
		case 11:
			if (main_graph)
				rc = add_value(w, &r, &f, &s->inputs, &s->ninputs, &w->cap_inputs);
			else
				rc = nx_onnx__walk_value(w, &r, &f, NULL);
			break;
		case 12:
			if (main_graph) {
				if (!(rc = add_value(w, &r, &f, &s->outputs, &s->noutputs,
						     &w->cap_outputs)) &&
				    s->outputs[s->noutputs - 1].name)
					rc = nx_onnx__strset_add(w, &used, s->outputs[s->noutputs - 1].name);
			} else {
				struct nx_onnx_value v;

				memset(&v, 0, sizeof(v));
				if (!(rc = nx_onnx__walk_value(w, &r, &f, &v)) && v.name)
					rc = nx_onnx__strset_add(w, &used, v.name);
				nx_onnx__value_release(&v);
			}
			break;
		case 13:
			rc = nx_onnx__walk_value(w, &r, &f, NULL);
			break;
		case 14: {
			/* TensorAnnotation: tensor_name = 1, quant_parameter_tensor_names = 2 */
			struct nx_pb_reader a;
			struct nx_pb_field af;

			if ((rc = nx_pb_sub(&a, &r, &f, w->err)) != 0)
				break;
			LOOP_FIELDS(w, &a, &af, rc) {
				if (af.num == 1)
					rc = nx_onnx__walk_string(w, &af, NX_ONNX_OTHER, 0, NULL);
				else if (af.num == 2)
					rc = nx_onnx__walk_kv(w, &a, &af, NX_ONNX_OTHER, NX_ONNX_OTHER,
						     NULL, NULL);
				else
					rc = nx_onnx__walk_unknown(w, &af);
				if (rc)
					break;
			}
			break;
		}
		default:
			rc = nx_onnx__walk_common(w, &r, &f, 10, 16);
		}
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	for (i = 0; i < defs.cap; i++)
		if (defs.slots[i] && nx_onnx__strset_has(&inits, defs.slots[i]) &&
		    !nx_onnx__strset_has(&dups, defs.slots[i]) && (rc = nx_onnx__strset_add(w, &dups, defs.slots[i])))
			goto out;
	resolve_refs(w, first, id, &used, &dups);
	if (main_graph)
		drop_initializer_inputs(w, &inits);
	if (parent_used)
		rc = nx_onnx__strset_merge(w, parent_used, &used);
out:
	nx_onnx__strset_release(&used);
	nx_onnx__strset_release(&inits);
	nx_onnx__strset_release(&defs);
	nx_onnx__strset_release(&dups);
	return rc;
}

/* FunctionProto.  Its nodes count towards nnodes and op domains; names used
 * inside are resolved against nothing (functions hold no initializers). */
int nx_onnx__walk_function(struct walk *w, const struct nx_pb_reader *parent,
		  const struct nx_pb_field *fld)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct strset used = { 0 };
	size_t nodes = 0;
	uint32_t id = w->next_graph++;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		switch (f.num) {
		case 1:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_FUNCTION_NAME, 0, NULL);
			break;
		case 4: case 5:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_EDGE, 0, NULL);
			break;
		case 6:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_ATTR_NAME, 0, NULL);
			break;
		case 11:
			rc = walk_attr(w, &r, &f, "attribute", id, &used);
			break;
		case 7:
			rc = walk_node(w, &r, &f, nodes++, id, &used, NULL);
			break;
		case 9:
			rc = nx_onnx__walk_opset(w, &r, &f, false);
			break;
		case 10:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_DOMAIN, 0, NULL);
			break;
		case 12:
			rc = nx_onnx__walk_value(w, &r, &f, NULL);
			break;
		case 13:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_OTHER, 0, NULL);
			break;
		default:
			rc = nx_onnx__walk_common(w, &r, &f, 8, 14);
		}
		if (rc)
			break;
	}
	if (!rc)
		w->sum->nfunctions++;
	nx_onnx__strset_release(&used);
	return rc;
}
