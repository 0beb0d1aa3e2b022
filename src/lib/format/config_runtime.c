/*
 * config_runtime.c - config/runtime.yaml, the bundle's inference settings
 * read by nexus_cli and copied verbatim into the bundle.
 */
#include "config_priv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const keys[] = {
	"task", "labels", "scores", "pooling", "output_dims", "normalize", "max_sequence_length",
	"batch_size", "threads", "integrity", "graph_optimization", "output",
	"python_packages", "inputs", "generation", NULL
};
static const char *const gen_keys[] = {
	"max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
	"seed", "eos_token_id", "stop", NULL
};
/* Indexed by enum nx_task / nx_pooling / nx_integrity. */
static const char *const tasks[] = { "classification", "embedding", "raw", "rerank",
				     "generation", NULL };
static const char *const poolings[] = { "mean", "cls", "last", NULL };
static const char *const score_forms[] = { "list", "map", NULL };
static const char *const integrities[] = { "full", "size", NULL };
static const char *const optimizations[] = { "disable", "basic", "extended", "all", NULL };

void nx_runtime_config_free(nx_runtime_config *rc)
{
	if (!rc)
		return;
	nx_cfg__strv_free(rc->labels, rc->nlabels);
	free(rc->graph_optimization);
	free(rc->output);
	nx_cfg__strv_free(rc->python_packages, rc->npython_packages);
	for (int i = 0; i < NX_INPUT_ROLES; i++)
		free(rc->inputs[i]);
	free(rc->gen.eos_token_id);
	nx_cfg__strv_free(rc->gen.stop, rc->gen.nstop);
	free(rc);
}

/* A key that only means something for one task must not appear otherwise. */
static int only_for(struct cfg *c, const nx_yaml_node *root, const char *key,
		    const char *task, int actual, int wanted)
{
	const nx_yaml_node *v = nx_yaml_map_get(root, key);

	if (!v || actual == wanted)
		return 0;
	return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
			    "%s is only valid with task: %s; remove it", key, task);
}

/* eos_token_id: one id or a list of ids, as generation_config.json has it */
static int eos_ids(struct cfg *c, const nx_yaml_node *v, struct nx_generation_defaults *g)
{
	const nx_yaml_node *const *items = v->type == NX_YAML_SEQUENCE
					   ? (const nx_yaml_node *const *)v->items : &v;
	size_t n = v->type == NX_YAML_SEQUENCE ? v->nitems : 1, i;
	int id, r;

	if (!n || n > 64)
		return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
				    "generation.eos_token_id must be an id or a list of 1 to 64 ids");
	if (!(g->eos_token_id = calloc(n, sizeof(*g->eos_token_id))))
		return nx_cfg__oom(c);
	for (i = 0; i < n; i++) {
		if ((r = nx_cfg__int(c, items[i], "generation.eos_token_id", 0, 0x7fffffff, &id)))
			return r;
		g->eos_token_id[g->neos_token_id++] = id;
	}
	return 0;
}

/* The `generation:` mapping (task: generation only). */
static int parse_generation(struct cfg *c, const nx_yaml_node *m, struct nx_generation_defaults *g)
{
	const nx_yaml_node *v;
	bool b;
	int i, r;

	if ((r = nx_cfg__want(c, m, "generation", NX_YAML_MAPPING, "a mapping")) ||
	    (r = nx_cfg__check_keys(c, m, "generation", gen_keys)))
		return r;
	if ((v = nx_yaml_map_get(m, "max_new_tokens")) &&
	    (r = nx_cfg__int(c, v, "generation.max_new_tokens", 1, NX_GEN_NEW_TOKENS_MAX,
			     &g->max_new_tokens)))
		return r;
	if ((v = nx_yaml_map_get(m, "do_sample"))) {
		if ((r = nx_cfg__bool(c, v, "generation.do_sample", &b)))
			return r;
		g->do_sample = b;
	}
	if ((v = nx_yaml_map_get(m, "temperature")) &&
	    (r = nx_cfg__number(c, v, "generation.temperature", 0, 100, &g->temperature)))
		return r;
	if ((v = nx_yaml_map_get(m, "top_k")) &&
	    (r = nx_cfg__int(c, v, "generation.top_k", 0, 1 << 24, &g->top_k)))
		return r;
	if ((v = nx_yaml_map_get(m, "top_p")) &&
	    (r = nx_cfg__number(c, v, "generation.top_p", 0, 1, &g->top_p)))
		return r;
	if ((v = nx_yaml_map_get(m, "repetition_penalty")) &&
	    (r = nx_cfg__number(c, v, "generation.repetition_penalty", 0.01, 100,
				&g->repetition_penalty)))
		return r;
	if ((v = nx_yaml_map_get(m, "seed"))) {
		if ((r = nx_cfg__int(c, v, "generation.seed", 0, 0x7fffffff, &i)))
			return r;
		g->seed = i;
	}
	if ((v = nx_yaml_map_get(m, "eos_token_id")) && (r = eos_ids(c, v, g)))
		return r;
	if ((v = nx_yaml_map_get(m, "stop")) &&
	    (r = nx_cfg__string_list(c, v, "generation.stop", nx_cfg__nonempty, true, &g->stop,
				     &g->nstop)))
		return r;
	return 0;
}

static int parse_root(struct cfg *c, const nx_yaml_node *root, nx_runtime_config *rc)
{
	const nx_yaml_node *v;
	int task, e, r;

	if (root->type != NX_YAML_MAPPING)
		return nx_error_set(c->err, NX_ECONFIG, c->path, root->line, -1,
				    "the top level must be a mapping of keys (task:, ...)");
	if ((r = nx_cfg__check_keys(c, root, "the top level", keys)))
		return r;
	if (!(v = nx_yaml_map_get(root, "task")))
		return nx_cfg__missing(c, root, "task");
	if ((r = nx_cfg__enum(c, v, "task", tasks, &task)))
		return r;
	rc->task = (enum nx_task)task;
	if ((r = only_for(c, root, "labels", "classification", task, NX_TASK_CLASSIFICATION)) ||
	    (r = only_for(c, root, "scores", "classification", task, NX_TASK_CLASSIFICATION)) ||
	    (r = only_for(c, root, "pooling", "embedding", task, NX_TASK_EMBEDDING)) ||
	    (r = only_for(c, root, "output_dims", "embedding", task, NX_TASK_EMBEDDING)) ||
	    (r = only_for(c, root, "normalize", "embedding", task, NX_TASK_EMBEDDING)) ||
	    (r = only_for(c, root, "generation", "generation", task, NX_TASK_GENERATION)))
		return r;
	if ((v = nx_yaml_map_get(root, "generation")) && (r = parse_generation(c, v, &rc->gen)))
		return r;

	if (task == NX_TASK_CLASSIFICATION) {
		if (!(v = nx_yaml_map_get(root, "labels")))
			return nx_cfg__missing(c, root, "labels (required with task: classification)");
		if ((r = nx_cfg__string_list(c, v, "labels", nx_cfg__nonempty, true, &rc->labels,
					 &rc->nlabels)))
			return r;
		if (!rc->nlabels)
			return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
					    "labels must list at least one label");
	}
	if ((v = nx_yaml_map_get(root, "scores"))) {
		if ((r = nx_cfg__enum(c, v, "scores", score_forms, &e)))
			return r;
		rc->scores_map = e == 1;
	}
	if ((v = nx_yaml_map_get(root, "output_dims")) &&
	    (r = nx_cfg__int(c, v, "output_dims", 1, 65536, &rc->output_dims)))
		return r;
	if ((v = nx_yaml_map_get(root, "pooling"))) {
		if ((r = nx_cfg__enum(c, v, "pooling", poolings, &e)))
			return r;
		rc->pooling = (enum nx_pooling)e;
	}
	if ((v = nx_yaml_map_get(root, "normalize")) &&
	    (r = nx_cfg__bool(c, v, "normalize", &rc->normalize)))
		return r;
	if ((v = nx_yaml_map_get(root, "max_sequence_length")) &&
	    (r = nx_cfg__int(c, v, "max_sequence_length", 1, 8192, &rc->max_sequence_length)))
		return r;
	if ((v = nx_yaml_map_get(root, "batch_size")) &&
	    (r = nx_cfg__int(c, v, "batch_size", 1, 1024, &rc->batch_size)))
		return r;
	if ((v = nx_yaml_map_get(root, "threads")) &&
	    (r = nx_cfg__int(c, v, "threads", 0, 256, &rc->threads)))
		return r;
	if ((v = nx_yaml_map_get(root, "integrity"))) {
		if ((r = nx_cfg__enum(c, v, "integrity", integrities, &e)))
			return r;
		rc->integrity = (enum nx_integrity)e;
	}
	if ((v = nx_yaml_map_get(root, "graph_optimization"))) {
		if ((r = nx_cfg__enum(c, v, "graph_optimization", optimizations, &e)))
			return r;
		free(rc->graph_optimization);
		rc->graph_optimization = NULL;
		if ((r = nx_cfg__strdup(c, optimizations[e], &rc->graph_optimization)))
			return r;
	}
	if ((v = nx_yaml_map_get(root, "output")) &&
	    (r = nx_cfg__string(c, v, "output", nx_cfg__nonempty, &rc->output)))
		return r;
	if ((v = nx_yaml_map_get(root, "python_packages")) &&
	    (r = nx_cfg__string_list(c, v, "python_packages", nx_cfg__module, true,
				 &rc->python_packages, &rc->npython_packages)))
		return r;
	if ((v = nx_yaml_map_get(root, "inputs")) && (r = nx_cfg__inputs(c, v, "inputs", rc->inputs)))
		return r;
	return 0;
}

int nx_runtime_config_parse(nx_runtime_config **out, const char *buf,
			    size_t len, const char *path, nx_error *err)
{
	struct cfg c = { .path = path, .err = err };
	nx_yaml_node *root = NULL;
	nx_runtime_config *rc = NULL;
	int r;

	if ((r = nx_yaml_parse(&root, buf, len, path, err)))
		return nx_cfg__syntax_is_config(r, err);
	if (!(rc = calloc(1, sizeof(*rc)))) {
		r = nx_cfg__oom(&c);
		goto out_root;
	}
	rc->pooling = NX_POOL_MEAN;
	rc->normalize = true;
	rc->max_sequence_length = 128;
	rc->batch_size = 8;
	rc->threads = 1;
	rc->integrity = NX_INTEGRITY_FULL;
	rc->gen.max_new_tokens = rc->gen.do_sample = rc->gen.top_k = -1;
	rc->gen.seed = -1;
	rc->gen.temperature = rc->gen.top_p = rc->gen.repetition_penalty = NAN;
	if ((r = nx_cfg__strdup(&c, "all", &rc->graph_optimization)) ||
	    (r = parse_root(&c, root, rc)))
		goto out_rc;
	*out = rc;
	rc = NULL;
out_rc:
	nx_runtime_config_free(rc);
out_root:
	nx_yaml_free(root);
	return r;
}

int nx_runtime_config_load(nx_runtime_config **out, int dirfd,
			   const char *name, nx_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	int r;

	if ((r = nx_cfg__read_file(&buf, &len, dirfd, name, err)))
		return r;
	r = nx_runtime_config_parse(out, buf, len, name, err);
	free(buf);
	return r;
}
