/*
 * config_workspace.c - nexus.yaml, the workspace schema of nexus.yaml(5) (docs/man/nexus.yaml.5).
 *
 * Parsing fills a zeroed nx_workspace key by key; on any error the partly
 * filled struct is freed, so a caller sees either a complete, validated
 * workspace or none.
 */
#include "lib/format/config_priv.h"
#include "nexus/budget.h"
#include "nexus/export.h"
#include "nexus/sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/array_int.h"

static const char *const top_keys[] = {
	"bundle_id", "architecture", "student", "teacher", "tokenizer",
	"runtime_config", "source", "forbidden_imports", "forbidden_terms",
	"metadata_keep", "allow_shared_tensors", "limits", "selftest", "readme",
	"license", "export", NULL
};
static const char *const student_keys[] = { "model", "outputs", "inputs", NULL };
static const char *const source_keys[] = { "dir", "files", "follow_links_within", NULL };
static const char *const shared_keys[] = { "name", "reason", NULL };
static const char *const limits_keys[] = { "max_model_bytes", "size_slack", "max_leak_bytes",
	"sandbox_memory", NULL };
static const char *const export_keys[] = { "extract", "strip_metadata", "external_data",
					   "quantize", "quantize_exclude", "quantize_min_elements",
					   "quantize_tolerance", "quantize_block", NULL };

void nx_workspace_free(nx_workspace *ws)
{
	size_t i;

	if (!ws)
		return;
	free(ws->bundle_id);
	free(ws->architecture);
	free(ws->student.model);
	for (i = 0; i < NX_INPUT_ROLES; i++)
		free(ws->student.inputs[i]);
	nx_cfg__strv_free(ws->student.outputs, ws->student.noutputs);
	nx_cfg__strv_free(ws->teacher, ws->nteacher);
	free(ws->tokenizer);
	free(ws->runtime_config);
	free(ws->source_dir);
	nx_cfg__strv_free(ws->source_files, ws->nsource_files);
	nx_cfg__strv_free(ws->follow_roots, ws->nfollow_roots);
	nx_cfg__strv_free(ws->forbidden_imports, ws->nforbidden_imports);
	nx_cfg__strv_free(ws->forbidden_terms, ws->nforbidden_terms);
	nx_cfg__strv_free(ws->metadata_keep, ws->nmetadata_keep);
	nx_cfg__strv_free(ws->quantize_exclude, ws->nquantize_exclude);
	for (i = 0; i < ws->nallow_shared; i++) {
		free(ws->allow_shared[i].name);
		free(ws->allow_shared[i].reason);
	}
	free(ws->allow_shared);
	nx_cfg__strv_free(ws->selftest, ws->nselftest);
	free(ws->readme);
	free(ws->license);
	free(ws);
}

static int check_bundle_id(struct cfg *c, const nx_yaml_node *n, const char *key)
{
	if (n->len && n->len <= NX_CONFIG_BUNDLE_ID_MAX &&
	    strspn(n->value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789._-") == n->len &&
	    strcmp(n->value, ".") && strcmp(n->value, ".."))
		return 0;
	return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
			    "bundle_id \"%s\" must be 1-%d characters of [A-Za-z0-9._-] "
			    "and not \".\" or \"..\"", n->value, NX_CONFIG_BUNDLE_ID_MAX);
}

/* A directory: a path that may end in '/', stored without it. */
static int dir_string(struct cfg *c, const nx_yaml_node *n, const char *key,
		      char **out)
{
	char *s = NULL;
	size_t len;
	int rc;

	if ((rc = nx_cfg__string(c, n, key, nx_cfg__dir, &s)))
		return rc;
	len = strlen(s);
	while (len > 1 && s[len - 1] == '/')
		s[--len] = '\0';
	*out = s;
	return 0;
}

/*
 * A required key is absent: the error lists every absent required key, so
 * that a new user writing nexus.yaml by hand learns them all at once.
 */
static int missing(struct cfg *c)
{
	static const char *const keys[] = { "student", "student.model", "tokenizer",
		"runtime_config", "source", "source.dir", "source.files" };
	const nx_yaml_node *root = c->root;
	long line = 0;
	char list[256] = "";
	size_t i, n = 0;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *dot = strchr(keys[i], '.');
		const nx_yaml_node *v;

		if (dot) {
			char parent[16];

			snprintf(parent, sizeof(parent), "%.*s", (int)(dot - keys[i]), keys[i]);
			v = nx_yaml_map_get(root, parent);
			/* under an absent parent the parent is what is missing; a
			 * parent of the wrong type is reported by its own check */
			if (!v || v->type != NX_YAML_MAPPING || nx_yaml_map_get(v, dot + 1))
				continue;
			if (!n)
				line = v->line;
		} else if (nx_yaml_map_get(root, keys[i])) {
			continue;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", n ? ", " : "",
			 keys[i]);
		n++;
	}
	if (!n)  /* not reached: called for a key that is missing */
		return nx_error_set(c->err, NX_EINTERNAL, c->path, 0, -1, "no key is missing");
	return nx_error_set(c->err, NX_ECONFIG, c->path, line ? line : root->line, -1,
			    "missing required key%s %s; add %s (nexus.yaml(5), or 'nexus init' "
			    "writes a commented one)", n > 1 ? "s" : "", list, n > 1 ? "them" : "it");
}

/* A mapping value that must be present. */
static int need(struct cfg *c, const nx_yaml_node *map, const char *key,
		const nx_yaml_node **out)
{
	const nx_yaml_node *n = nx_yaml_map_get(map, key);

	if (!n)
		return missing(c);
	*out = n;
	return 0;
}

static int parse_student(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const nx_yaml_node *v;
	int rc;

	if ((rc = nx_cfg__want(c, n, "student", NX_YAML_MAPPING,
					"a mapping {model, outputs, inputs}")) ||
	    (rc = nx_cfg__check_keys(c, n, "student", student_keys)))
		return rc;
	if (!(v = nx_yaml_map_get(n, "model")))
		return missing(c);
	if ((rc = nx_cfg__string(c, v, "student.model", nx_cfg__path, &ws->student.model)))
		return rc;
	if ((v = nx_yaml_map_get(n, "outputs")))
		rc = nx_cfg__string_list(c, v, "student.outputs", nx_cfg__nonempty, true,
				     &ws->student.outputs, &ws->student.noutputs);
	if (!rc && (v = nx_yaml_map_get(n, "inputs")))
		rc = nx_cfg__inputs(c, v, "student.inputs", ws->student.inputs);
	return rc;
}

static int parse_source(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const nx_yaml_node *v;
	int rc;

	if ((rc = nx_cfg__want(c, n, "source", NX_YAML_MAPPING,
			       "a mapping {dir, files, follow_links_within}")) ||
	    (rc = nx_cfg__check_keys(c, n, "source", source_keys)))
		return rc;
	if (!(v = nx_yaml_map_get(n, "dir")))
		return missing(c);
	if ((rc = dir_string(c, v, "source.dir", &ws->source_dir)))
		return rc;
	if (!(v = nx_yaml_map_get(n, "files")))
		return missing(c);
	if ((rc = nx_cfg__string_list(c, v, "source.files", nx_cfg__path, true,
				      &ws->source_files, &ws->nsource_files)))
		return rc;
	if ((v = nx_yaml_map_get(n, "follow_links_within")))
		rc = nx_cfg__string_list(c, v, "source.follow_links_within", nx_cfg__nonempty, true,
					 &ws->follow_roots, &ws->nfollow_roots);
	return rc;
}

static int parse_shared(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const char *key = "allow_shared_tensors";
	size_t i;
	int rc;

	if ((rc = nx_cfg__want(c, n, key, NX_YAML_SEQUENCE, "a list of {name, reason}")))
		return rc;
	if (!n->nitems)
		return 0;
	if (!(ws->allow_shared = calloc(n->nitems, sizeof(*ws->allow_shared))))
		return nx_cfg__oom(c);
	for (i = 0; i < n->nitems; i++) {
		const nx_yaml_node *item = n->items[i], *v;
		struct nx_shared_tensor *t = &ws->allow_shared[i];

		/* Count first so that a failure frees what was filled. */
		ws->nallow_shared = i + 1;
		if ((rc = nx_cfg__want(c, item, key, NX_YAML_MAPPING, "a list of {name, reason}")) ||
		    (rc = nx_cfg__check_keys(c, item, key, shared_keys)))
			return rc;
		if (!(v = nx_yaml_map_get(item, "name")))
			return nx_cfg__missing(c, item, "allow_shared_tensors[].name");
		if ((rc = nx_cfg__string(c, v, "allow_shared_tensors[].name", nx_cfg__nonempty, &t->name)))
			return rc;
		if (!(v = nx_yaml_map_get(item, "reason")))
			return nx_cfg__missing(c, item, "allow_shared_tensors[].reason");
		if ((rc = nx_cfg__string(c, v, "allow_shared_tensors[].reason", nx_cfg__nonempty,
				     &t->reason)))
			return rc;
	}
	return 0;
}

/* A size key (nx_parse_size grammar) of at least min bytes. */
static int cfg_size(struct cfg *c, const nx_yaml_node *v, const char *key, uint64_t min,
		    uint64_t *out)
{
	uint64_t n = 0;
	nx_error e;
	int rc;

	if ((rc = nx_cfg__want(c, v, key, NX_YAML_SCALAR, "a size")))
		return rc;
	if (nx_parse_size(&n, v->value, &e))
		return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1, "%s: %s", key, e.message);
	if (n < min)
		return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
				    "%s: must be %s %llu bytes", key, min == 1 ? "greater than" : "at least",
				    (unsigned long long)(min == 1 ? 0 : min));
	*out = n;
	return 0;
}

static int parse_limits(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const nx_yaml_node *v;
	int rc;

	if ((rc = nx_cfg__want(c, n, "limits", NX_YAML_MAPPING,
			   "a mapping {max_model_bytes, size_slack, max_leak_bytes, sandbox_memory}")) ||
	    (rc = nx_cfg__check_keys(c, n, "limits", limits_keys)))
		return rc;
	if ((v = nx_yaml_map_get(n, "max_model_bytes")) &&
	    (rc = cfg_size(c, v, "limits.max_model_bytes", 1, &ws->max_model_bytes)))
		return rc;
	if ((v = nx_yaml_map_get(n, "max_leak_bytes"))) {
		nx_error e;

		if ((rc = nx_cfg__want(c, v, "limits.max_leak_bytes", NX_YAML_SCALAR, "a size")))
			return rc;
		/* the leak budget can be lowered, never raised (docs/TRV.md) */
		if (nx_parse_size(&ws->max_leak_bytes, v->value, &e) || !ws->max_leak_bytes ||
		    ws->max_leak_bytes > NX_BUDGET_DEFAULT)
			return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
					    "limits.max_leak_bytes: '%s' is not a size from 1 byte to "
					    "64KiB (the leak budget can only be lowered)", v->value);
	}
	if ((v = nx_yaml_map_get(n, "size_slack")))
		rc = nx_cfg__number(c, v, "limits.size_slack", 0.0, 1.0, &ws->size_slack);
	if (!rc && (v = nx_yaml_map_get(n, "sandbox_memory")))
		rc = cfg_size(c, v, "limits.sandbox_memory", NX_SANDBOX_MEMORY_MIN, &ws->sandbox_memory);
	return rc;
}

static int parse_export(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const nx_yaml_node *v;
	int rc;

	if ((rc = nx_cfg__want(c, n, "export", NX_YAML_MAPPING,
			   "a mapping {extract, strip_metadata, external_data, quantize, "
			   "quantize_exclude, quantize_min_elements, quantize_tolerance, quantize_block}")) ||
	    (rc = nx_cfg__check_keys(c, n, "export", export_keys)))
		return rc;
	if ((v = nx_yaml_map_get(n, "extract")) &&
	    (rc = nx_cfg__bool(c, v, "export.extract", &ws->export_extract)))
		return rc;
	if ((v = nx_yaml_map_get(n, "strip_metadata")) &&
	    (rc = nx_cfg__bool(c, v, "export.strip_metadata", &ws->export_strip_metadata)))
		return rc;
	if ((v = nx_yaml_map_get(n, "external_data"))) {
		int mode;

		if ((rc = nx_cfg__enum(c, v, "export.external_data", nx_export_external_names, &mode)))
			return rc;
		ws->export_external = mode;
	}
	if ((v = nx_yaml_map_get(n, "quantize"))) {
		int mode;

		if ((rc = nx_cfg__enum(c, v, "export.quantize", nx_export_quantize_names, &mode)))
			return rc;
		ws->export_quantize = mode;
	}
	if ((v = nx_yaml_map_get(n, "quantize_exclude")) &&
	    (rc = nx_cfg__string_list(c, v, "export.quantize_exclude", nx_cfg__nonempty, true,
				  &ws->quantize_exclude, &ws->nquantize_exclude)))
		return rc;
	if ((v = nx_yaml_map_get(n, "quantize_min_elements"))) {
		int min;

		if ((rc = nx_cfg__int(c, v, "export.quantize_min_elements", 1, INT32_MAX, &min)))
			return rc;
		ws->quantize_min_elements = (uint64_t)min;
	}
	if ((v = nx_yaml_map_get(n, "quantize_block"))) {
		int block;

		if ((rc = nx_cfg__int(c, v, "export.quantize_block", 32, 128, &block)))
			return rc;
		if (block != 32 && block != 64 && block != 128)
			return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
					    "export.quantize_block: %d is not 32, 64 or 128", block);
		ws->quantize_block = (unsigned)block;
	}
	if ((v = nx_yaml_map_get(n, "quantize_tolerance")) &&
	    (rc = nx_cfg__number(c, v, "export.quantize_tolerance", 0.0, 1.0, &ws->quantize_tolerance)))
		return rc;
	return 0;
}

static const char *const required_imports[] = { "teacher_model", "training_modules" };
#define NREQUIRED_IMPORTS (sizeof(required_imports) / sizeof(required_imports[0]))

/*
 * The spec's forbidden imports always apply: a configured list adds to them
 * and can never switch them off (`forbidden_imports: []` must not disable
 * the filter).
 */
static int add_required_imports(struct cfg *c, nx_workspace *ws)
{
	size_t i, j;
	char **l;
	int rc;

	for (i = 0; i < NREQUIRED_IMPORTS; i++) {
		for (j = 0; j < ws->nforbidden_imports; j++)
			if (!strcmp(ws->forbidden_imports[j], required_imports[i]))
				break;
		if (j < ws->nforbidden_imports)
			continue;
		if (NX_ARRAY_PUSH_EXACT(ws->forbidden_imports, ws->nforbidden_imports))
			return nx_cfg__oom(c);
		l = ws->forbidden_imports;
		if ((rc = nx_cfg__strdup(c, required_imports[i], &l[ws->nforbidden_imports])))
			return rc;
		ws->nforbidden_imports++;
	}
	return 0;
}

static int set_defaults(struct cfg *c, nx_workspace *ws)
{
	const char *const *imports = required_imports;
	size_t i;
	int rc;

	ws->max_model_bytes = NX_CONFIG_DEFAULT_MAX_MODEL_BYTES;
	ws->size_slack = 0.05;
	ws->export_extract = true;
	ws->export_strip_metadata = true;
	ws->quantize_min_elements = NX_QUANT_MIN_ELEMENTS;
	ws->quantize_tolerance = NX_QUANT_TOLERANCE;
	if ((rc = nx_cfg__strdup(c, "nexus_bundle_v1", &ws->bundle_id)) ||
	    (rc = nx_cfg__strdup(c, "student", &ws->architecture)) ||
	    (rc = nx_cfg__strdup(c, "README.md", &ws->readme)) ||
	    (rc = nx_cfg__strdup(c, "LICENSE", &ws->license)))
		return rc;
	if (!(ws->forbidden_imports = calloc(2, sizeof(char *))))
		return nx_cfg__oom(c);
	ws->nforbidden_imports = 2;
	for (i = 0; i < 2; i++)
		if ((rc = nx_cfg__strdup(c, imports[i], &ws->forbidden_imports[i])))
			return rc;
	return 0;
}

/* Replace a default string with the configured one, if present. */
static int opt_string(struct cfg *c, const nx_yaml_node *root, const char *key,
		      cfg_check_fn check, char **field)
{
	const nx_yaml_node *v = nx_yaml_map_get(root, key);
	char *s = NULL;
	int rc;

	if (!v)
		return 0;
	if ((rc = nx_cfg__string(c, v, key, check, &s)))
		return rc;
	free(*field);
	*field = s;
	return 0;
}

static int opt_list(struct cfg *c, const nx_yaml_node *root, const char *key,
		    cfg_check_fn check, bool unique, char ***field, size_t *nfield)
{
	const nx_yaml_node *v = nx_yaml_map_get(root, key);
	char **l = NULL;
	size_t n = 0;
	int rc;

	if (!v)
		return 0;
	if ((rc = nx_cfg__string_list(c, v, key, check, unique, &l, &n)))
		return rc;
	nx_cfg__strv_free(*field, *nfield);
	*field = l;
	*nfield = n;
	return 0;
}

static int parse_root(struct cfg *c, const nx_yaml_node *root, nx_workspace *ws)
{
	const nx_yaml_node *v = NULL;
	int rc;

	if (root->type != NX_YAML_MAPPING)
		return nx_error_set(c->err, NX_ECONFIG, c->path, root->line, -1,
				    "the top level must be a mapping of keys (student:, tokenizer:, ...)");
	if ((rc = nx_cfg__check_keys(c, root, "the top level", top_keys)) ||
	    (rc = set_defaults(c, ws)))
		return rc;
	if ((rc = need(c, root, "student", &v)) || (rc = parse_student(c, v, ws)) ||
	    (rc = need(c, root, "tokenizer", &v)) ||
	    (rc = dir_string(c, v, "tokenizer", &ws->tokenizer)) ||
	    (rc = need(c, root, "runtime_config", &v)) ||
	    (rc = nx_cfg__string(c, v, "runtime_config", nx_cfg__path, &ws->runtime_config)) ||
	    (rc = need(c, root, "source", &v)) || (rc = parse_source(c, v, ws)))
		return rc;
	if ((rc = opt_string(c, root, "bundle_id", check_bundle_id, &ws->bundle_id)) ||
	    (rc = opt_string(c, root, "architecture", nx_cfg__nonempty, &ws->architecture)) ||
	    (rc = opt_string(c, root, "readme", nx_cfg__path, &ws->readme)) ||
	    (rc = opt_string(c, root, "license", nx_cfg__path, &ws->license)) ||
	    (rc = opt_list(c, root, "teacher", nx_cfg__path, true, &ws->teacher, &ws->nteacher)) ||
	    (rc = opt_list(c, root, "forbidden_imports", nx_cfg__module, true,
			   &ws->forbidden_imports, &ws->nforbidden_imports)) ||
	    (rc = add_required_imports(c, ws)) ||
	    (rc = opt_list(c, root, "forbidden_terms", nx_cfg__nonempty, true,
			   &ws->forbidden_terms, &ws->nforbidden_terms)) ||
	    (rc = opt_list(c, root, "metadata_keep", nx_cfg__nonempty, true,
			   &ws->metadata_keep, &ws->nmetadata_keep)) ||
	    (rc = opt_list(c, root, "selftest", NULL, false, &ws->selftest, &ws->nselftest)))
		return rc;
	ws->readme_given = nx_yaml_map_get(root, "readme") != NULL;
	ws->license_given = nx_yaml_map_get(root, "license") != NULL;
	if ((v = nx_yaml_map_get(root, "allow_shared_tensors")) &&
	    (rc = parse_shared(c, v, ws)))
		return rc;
	if ((v = nx_yaml_map_get(root, "limits")) && (rc = parse_limits(c, v, ws)))
		return rc;
	if ((v = nx_yaml_map_get(root, "export")) && (rc = parse_export(c, v, ws)))
		return rc;
	return 0;
}

int nx_workspace_parse(nx_workspace **out, const char *buf, size_t len,
		       const char *path, nx_error *err)
{
	struct cfg c = { .path = path, .err = err };
	nx_yaml_node *root = NULL;
	nx_workspace *ws = NULL;
	int rc;

	/* a syntax error is a configuration error (exit 2), as an unknown key is */
	if ((rc = nx_yaml_parse(&root, buf, len, path, err)))
		return nx_cfg__syntax_is_config(rc, err);
	c.root = root;
	if (!(ws = calloc(1, sizeof(*ws)))) {
		rc = nx_cfg__oom(&c);
		goto out_root;
	}
	if ((rc = parse_root(&c, root, ws)))
		goto out_ws;
	*out = ws;
	ws = NULL;
out_ws:
	nx_workspace_free(ws);
out_root:
	nx_yaml_free(root);
	return rc;
}

int nx_workspace_load(nx_workspace **out, int dirfd, const char *name,
		      nx_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if ((rc = nx_cfg__read_file(&buf, &len, dirfd, name, err)))
		return rc;
	rc = nx_workspace_parse(out, buf, len, name, err);
	free(buf);
	return rc;
}
