/*
 * export_analyze.c - the first pass of the export: read the names of the main
 * graph's nodes and decide which nodes the requested outputs need.
 *
 * A node is kept when one of its outputs is needed; its inputs, and every
 * name used inside its subgraphs (a branch may read an outer-scope value),
 * become needed in turn.  Nodes are walked backwards until nothing changes,
 * so a graph that is not topologically sorted is handled too.
 */
#include "export_int.h"

#include <stdlib.h>
#include <string.h>

/* rc is 0 inside the body, 0 or an error after the loop */
#define LOOP(x, r, f, rc) while (((rc) = nx_pb_next((r), (f), (x)->err)) > 0 && ((rc) = 0) == 0)

static int push_name(struct ex *x, char ***arr, size_t *n, char *s)
{
	if (NX_ARRAY_PUSH_EXACT(*arr, *n)) {
		free(s);
		return nx_export__oom(x);
	}
	(*arr)[(*n)++] = s;
	return 0;
}

/* Every name read inside graph fld (node inputs, graph outputs, at any depth). */
static int graph_uses(struct ex *x, const struct nx_pb_reader *parent,
		      const struct nx_pb_field *fld, struct ex_node *node);

static int node_sub_uses(struct ex *x, const struct nx_pb_reader *nr, const struct nx_pb_field *nf,
			 struct ex_node *node, bool inputs)
{
	struct nx_pb_reader r, a;
	struct nx_pb_field f, af;
	char *s = NULL;
	int rc;

	if ((rc = nx_pb_sub(&r, nr, nf, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc) {
		if (f.num == 1 && inputs) {
			if ((rc = nx_export__read_name(x, &f, &s)) != 0)
				return rc;
			if (s[0] && (rc = push_name(x, &node->in, &node->nin, s)) != 0)
				return rc;
			if (!s[0])
				free(s);
			s = NULL;
		} else if (f.num == 5 && f.wire == NX_PB_LEN) {
			if ((rc = nx_pb_sub(&a, &r, &f, x->err)) != 0)
				return rc;
			LOOP(x, &a, &af, rc)
				if ((af.num == 6 || af.num == 11) && af.wire == NX_PB_LEN &&
				    (rc = graph_uses(x, &a, &af, node)) != 0)
					return rc;
			if (rc)
				return rc;
		}
	}
	return rc;
}

static int graph_uses(struct ex *x, const struct nx_pb_reader *parent,
		      const struct nx_pb_field *fld, struct ex_node *node)
{
	struct nx_pb_reader r, v;
	struct nx_pb_field f, vf;
	char *s = NULL;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc) {
		if (f.num == 1 && f.wire == NX_PB_LEN) {
			if ((rc = node_sub_uses(x, &r, &f, node, true)) != 0)
				return rc;
		} else if (f.num == 12 && f.wire == NX_PB_LEN) {
			if ((rc = nx_pb_sub(&v, &r, &f, x->err)) != 0)
				return rc;
			LOOP(x, &v, &vf, rc) {
				if (vf.num != 1)
					continue;
				if ((rc = nx_export__read_name(x, &vf, &s)) != 0 ||
				    (rc = push_name(x, &node->in, &node->nin, s)) != 0)
					return rc;
				s = NULL;
			}
			if (rc)
				return rc;
		}
	}
	return rc;
}

/* An attribute axis or transA that is not 0 (the int8 forms assume Gather
 * on axis 0), transB, and a Gemm's alpha or beta that is not 1. */
static int read_axis(struct ex *x, const struct nx_pb_reader *nr, const struct nx_pb_field *af,
		     struct ex_node *node)
{
	struct nx_pb_reader a;
	struct nx_pb_field f;
	char *name = NULL;
	int64_t v = 0;
	bool fval = false;
	float fv = 1.0f;
	int rc;

	if ((rc = nx_pb_sub(&a, nr, af, x->err)) != 0)
		return rc;
	LOOP(x, &a, &f, rc) {
		if (f.num == 1) {
			rc = nx_export__read_name(x, &f, &name);
		} else if (f.num == 3 && f.wire == NX_PB_VARINT) {
			v = (int64_t)f.value;
		} else if (f.num == 2 && f.wire == NX_PB_I32) {
			uint32_t u = (uint32_t)f.value;

			memcpy(&fv, &u, sizeof(fv));
			fval = true;
		}
		if (rc)
			break;
	}
	if (!rc && name && v != 0 && (!strcmp(name, "axis") || !strcmp(name, "transA")))
		node->nonzero_axis = true;
	if (!rc && name && !strcmp(name, "transB"))
		node->trans_b = v != 0;
	if (!rc && name && fval && fv != 1.0f && (!strcmp(name, "alpha") || !strcmp(name, "beta")))
		node->scaled = true;
	free(name);
	return rc;
}

static int read_node(struct ex *x, const struct nx_pb_reader *gr, const struct nx_pb_field *nf)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct ex_node *node;
	char *s = NULL;
	int rc;

	if (x->nnodes >= NX_EXPORT_NODES_MAX)
		return nx_error_set(x->err, NX_ELIMIT, x->path, 0, (long long)nf->tag_offset,
				    "%s: more than %u nodes in the main graph", x->path,
				    NX_EXPORT_NODES_MAX);
	if (NX_ARRAY_PUSH(x->nodes, x->cap_nodes, x->nnodes))
		return nx_export__oom(x);
	node = &x->nodes[x->nnodes++];
	memset(node, 0, sizeof(*node));
	if ((rc = nx_pb_sub(&r, gr, nf, x->err)) != 0)
		return rc;
	/* the node's own inputs first, in order (quant.c reads them by position) */
	LOOP(x, &r, &f, rc) {
		if (f.num != 1)
			continue;
		if ((rc = nx_export__read_name(x, &f, &s)) != 0)
			return rc;
		if (!s[0]) {
			node->holes = true;
			free(s);
		} else if ((rc = push_name(x, &node->in, &node->nin, s)) != 0) {
			return rc;
		}
		s = NULL;
	}
	if (rc)
		return rc;
	node->ndirect = node->nin;
	if ((rc = node_sub_uses(x, gr, nf, node, false)) != 0)
		return rc;
	r.pos = nf->offset;
	LOOP(x, &r, &f, rc) {
		if (f.num == 4 && (rc = nx_export__read_name(x, &f, &node->op)) != 0)
			return rc;
		if (f.num == 3 && (rc = nx_export__read_name(x, &f, &node->name)) != 0)
			return rc;
		if (f.num == 5 && f.wire == NX_PB_LEN && (rc = read_axis(x, &r, &f, node)) != 0)
			return rc;
		if (f.num != 2)
			continue;
		if ((rc = nx_export__read_name(x, &f, &s)) != 0 ||
		    (rc = push_name(x, &node->out, &node->nout, s)) != 0)
			return rc;
		s = NULL;
	}
	return rc;
}

static bool produced(const struct ex *x, const char *name)
{
	size_t i, j;

	for (i = 0; i < x->nnodes; i++)
		for (j = 0; j < x->nodes[i].nout; j++)
			if (!strcmp(x->nodes[i].out[j], name))
				return true;
	return false;
}

/* Collect graph output names and the names with a value_info, then check
 * that each requested output exists. */
static int check_outputs(struct ex *x, const struct nx_pb_reader *gr, const struct nx_pb_field *gf)
{
	struct nx_pb_reader r, v;
	struct nx_pb_field f, vf;
	struct strset typed = { 0 }, defined = { 0 };
	const struct nx_export_opts *o = x->o;
	char *s = NULL;
	size_t i;
	int rc;

	if ((rc = nx_pb_sub(&r, gr, gf, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc) {
		struct strset *into;

		if (f.num == 12)
			into = &x->graph_outputs;
		else if (f.num == 13)
			into = &typed;
		else if (f.num == 11)
			into = &defined;
		else if (f.num == 5)
			into = &defined;
		else
			continue;
		if (f.wire != NX_PB_LEN || (rc = nx_pb_sub(&v, &r, &f, x->err)) != 0)
			goto out;
		LOOP(x, &v, &vf, rc) {
			if (vf.num != (f.num == 5 ? 8u : 1u))
				continue;
			if ((rc = nx_export__read_name(x, &vf, &s)) != 0)
				goto out;
			if (nx_strset_add(into, s, NULL) ||
			    (f.num == 5 && nx_strset_add(&x->initializers, s, NULL))) {
				rc = nx_export__oom(x);
				goto out;
			}
		}
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	for (i = 0; i < o->noutputs; i++) {
		const char *name = o->outputs[i];

		if (nx_strset_add(&x->requested, name, NULL)) {
			rc = nx_export__oom(x);
			goto out;
		}
		if (nx_strset_has(&x->graph_outputs, name))
			continue;
		if (!produced(x, name) && !nx_strset_has(&defined, name)) {
			rc = nx_error_set(x->err, NX_ECONFIG, x->path, 0, -1,
					  "%s has no output or value named '%s': fix "
					  "student.outputs in nexus.yaml (see nexus inspect)",
					  x->path, name);
			goto out;
		}
		if (!nx_strset_has(&typed, name)) {
			rc = nx_error_set(x->err, NX_ECONFIG, x->path, 0, -1,
					  "%s: '%s' is not a graph output and has no value_info "
					  "giving its type, so it cannot become one: export the "
					  "model with shape inference or list a graph output",
					  x->path, name);
			goto out;
		}
		if ((rc = push_name(x, &x->extra_outputs, &x->nextra, strdup(name))) != 0)
			goto out;
		if (!x->extra_outputs[x->nextra - 1]) {
			rc = nx_export__oom(x);
			goto out;
		}
	}
out:
	free(s);
	nx_strset_release(&typed);
	nx_strset_release(&defined);
	return rc;
}

static int reach(struct ex *x)
{
	bool changed = true;
	size_t i, j;

	if (!(x->keep_node = calloc(x->nnodes ? x->nnodes : 1, sizeof(bool))))
		return nx_export__oom(x);
	while (changed) {
		changed = false;
		for (i = x->nnodes; i-- > 0;) {
			struct ex_node *n = &x->nodes[i];
			bool need = !x->o->extract;

			if (x->keep_node[i] || n->materialise)
				continue;
			for (j = 0; j < n->nout && !need; j++)
				need = nx_strset_has(&x->needed, n->out[j]);
			if (!need)
				continue;
			/* an alias becomes an initializer: the teacher name is not read */
			if (n->alias) {
				n->materialise = true;
				continue;
			}
			x->keep_node[i] = changed = true;
			for (j = 0; j < n->nin; j++)
				if (nx_strset_add(&x->needed, n->in[j], NULL))
					return nx_export__oom(x);
		}
	}
	/* a kept node's own outputs keep their value_info */
	for (i = 0; i < x->nnodes; i++)
		for (j = 0; x->keep_node[i] && j < x->nodes[i].nout; j++)
			if (nx_strset_add(&x->needed, x->nodes[i].out[j], NULL))
				return nx_export__oom(x);
	return 0;
}

int nx_export__analyze(struct ex *x, const struct nx_pb_reader *model)
{
	struct nx_pb_reader top = *model, g;
	struct nx_pb_field f, gf, graph;
	bool have = false;
	size_t i;
	int rc;

	LOOP(x, &top, &f, rc)
		if (f.num == 7 && f.wire == NX_PB_LEN) {
			graph = f;
			have = true;
		}
	if (rc)
		return rc;
	if (!have)
		return nx_error_set(x->err, NX_EFORMAT, x->path, 0, -1, "%s has no graph", x->path);
	if ((rc = nx_pb_sub(&g, model, &graph, x->err)) != 0)
		return rc;
	LOOP(x, &g, &gf, rc)
		if (gf.num == 1 && gf.wire == NX_PB_LEN && (rc = read_node(x, &g, &gf)) != 0)
			return rc;
	if (rc)
		return rc;
	if ((rc = check_outputs(x, model, &graph)) != 0)
		return rc;
	nx_export__alias_mark(x);
	/* no outputs requested: every graph output is */
	if (!x->o->noutputs)
		for (i = 0; i < x->graph_outputs.cap; i++)
			if (x->graph_outputs.slots[i] &&
			    nx_strset_add(&x->requested, x->graph_outputs.slots[i], NULL))
				return nx_export__oom(x);
	for (i = 0; i < x->requested.cap; i++)
		if (x->requested.slots[i] && nx_strset_add(&x->needed, x->requested.slots[i], NULL))
			return nx_export__oom(x);
	if ((rc = reach(x)) != 0 || (rc = nx_export__positions(x)) != 0)
		return rc;
	return nx_export__quant_plan(x, model, &graph);
}
