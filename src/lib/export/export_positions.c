/*
 * export_positions.c - where the student's graph shows how many token
 * positions it holds (issue #17): a Gather along axis 0 over a constant
 * table whose indices are the token positions.  The build compares the
 * table's rows with runtime.yaml's max_sequence_length, so a runtime.yaml
 * that promises more positions than the model has fails at `nexus build`
 * naming both numbers, whatever the tokenizer (the selftest's long case
 * only reaches max_sequence_length where the tokenizer gives one token
 * per character it is fed).
 *
 * Positions are recognised where they are made: the positions input, a
 * Range (torch.arange over the sequence length), a CumSum (of the mask,
 * as RoBERTa and decoders compute them), through ops that keep the values
 * or add a constant; or a Slice of a constant buffer (transformers'
 * registered position_ids), whose length then bounds them too.  Anything
 * else is not claimed: the check only refuses what is sure to fail, and
 * the selftest's long case remains for what it does not see.
 */
#include "export_int.h"

#include <stdlib.h>
#include <string.h>

#define POS_DEPTH_MAX 32    /* ops walked back from a Gather's indices */
#define POS_STEPS_MAX 4096  /* ops looked at per Gather (Add and Mul branch) */

/* The kept nodes' outputs, sorted by name: who makes a value, in log time
 * (a graph may hold millions of nodes). */
struct made { const char *name; const struct ex_node *node; };
struct walk { const struct ex *x; struct made *by_name; size_t n, steps; };

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct made *)a)->name, ((const struct made *)b)->name);
}

/* The kept node of the main graph that outputs `name`, or NULL. */
static const struct ex_node *producer(const struct walk *w, const char *name)
{
	struct made key = { name, NULL }, *m = bsearch(&key, w->by_name, w->n, sizeof(key), by_name);

	return m ? m->node : NULL;
}

static bool op_is(const struct ex_node *n, const char *op)
{
	return n->op && !strcmp(n->op, op);
}

static bool constant(const struct walk *w, const char *name)
{
	const struct ex_node *p = producer(w, name);

	return p ? op_is(p, "Constant") : nx_strset_has(&w->x->initializers, name);
}

/* Ops whose first input's values come out unchanged (reshaped, cast). */
static bool keeps_values(const struct ex_node *n)
{
	static const char *const ops[] = { "Unsqueeze", "Squeeze", "Cast", "Expand", "Reshape",
					   "Identity", "Flatten" };
	size_t i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (op_is(n, ops[i]))
			return true;
	return false;
}

/* Whether `name` holds token positions; a Slice of a constant buffer sets
 * *buffer to the buffer's name. */
static bool positions(struct walk *w, const char *name, const char **buffer, int depth)
{
	const struct ex *x = w->x;
	const char *input = x->o->positions_input ? x->o->positions_input : "position_ids";
	const struct ex_node *p;
	size_t j;

	if (depth > POS_DEPTH_MAX || ++w->steps > POS_STEPS_MAX)
		return false;
	if (!(p = producer(w, name)))   /* a graph input or an initializer */
		return !strcmp(name, input) && !nx_strset_has(&x->initializers, name);
	if (op_is(p, "Range") || op_is(p, "CumSum"))
		return true;
	if (!p->ndirect)
		return false;
	if (keeps_values(p))
		return positions(w, p->in[0], buffer, depth + 1);
	if (op_is(p, "Slice")) {
		if (!nx_strset_has(&x->initializers, p->in[0]))
			return positions(w, p->in[0], buffer, depth + 1);
		*buffer = p->in[0];
		return true;
	}
	/* positions plus (or times the mask, or minus) something else */
	if (p->ndirect == 2 && (op_is(p, "Add") || op_is(p, "Mul") || op_is(p, "Sub")))
		for (j = 0; j < (op_is(p, "Sub") ? 1u : 2u); j++)
			if (!constant(w, p->in[j]) && positions(w, p->in[j], buffer, depth + 1))
				return true;
	return false;
}

int nx_export__positions(struct ex *x)
{
	struct walk w = { x, NULL, 0, 0 };
	size_t i, j, k, n = 0;
	int rc = 0;

	for (i = 0; i < x->nnodes; i++)
		n += x->keep_node[i] ? x->nodes[i].nout : 0;
	if (!(w.by_name = calloc(n ? n : 1, sizeof(*w.by_name))))
		return nx_export__oom(x);
	for (i = 0; i < x->nnodes; i++)
		for (j = 0; x->keep_node[i] && j < x->nodes[i].nout; j++)
			w.by_name[w.n++] = (struct made){ x->nodes[i].out[j], &x->nodes[i] };
	qsort(w.by_name, w.n, sizeof(*w.by_name), by_name);
	for (i = 0; i < x->nnodes; i++) {
		const struct ex_node *g = &x->nodes[i];
		const char *buffer = NULL;

		w.steps = 0;
		if (!x->keep_node[i] || !op_is(g, "Gather") || g->nonzero_axis || g->ndirect != 2 ||
		    !nx_strset_has(&x->initializers, g->in[0]) ||
		    !positions(&w, g->in[1], &buffer, 0))
			continue;
		k = x->res->npos++;
		if (!(x->res->pos_table[k] = strdup(g->in[0])) ||
		    (buffer && !(x->res->pos_buffer[k] = strdup(buffer)))) {
			rc = nx_export__oom(x);
			break;
		}
		if (x->res->npos == NX_EXPORT_POS_MAX)
			break;
	}
	free(w.by_name);
	return rc;
}
