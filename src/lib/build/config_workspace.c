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

#include <stdlib.h>
#include <string.h>

static const char *const top_keys[] = {
	"bundle_id", "architecture", "student", "teacher", "tokenizer",
	"runtime_config", "source", "forbidden_imports", "forbidden_terms",
	"metadata_keep", "allow_shared_tensors", "limits", "selftest", "readme",
	"license", "export", NULL
};
static const char *const student_keys[] = { "model", "outputs", NULL };
static const char *const source_keys[] = { "dir", "files", NULL };
static const char *const shared_keys[] = { "name", "reason", NULL };
static const char *const limits_keys[] = { "max_model_bytes", "size_slack", "max_leak_bytes",
	"sandbox_memory", NULL };
static const char *const export_keys[] = { "extract", "strip_metadata", "external_data", NULL };

void nx_workspace_free(nx_workspace *ws)
{
	size_t i;

	if (!ws)
		return;
	free(ws->bundle_id);
	free(ws->architecture);
	free(ws->student.model);
	cfg_strv_free(ws->student.outputs, ws->student.noutputs);
	cfg_strv_free(ws->teacher, ws->nteacher);
	free(ws->tokenizer);
	free(ws->runtime_config);
	free(ws->source_dir);
	cfg_strv_free(ws->source_files, ws->nsource_files);
	cfg_strv_free(ws->forbidden_imports, ws->nforbidden_imports);
	cfg_strv_free(ws->forbidden_terms, ws->nforbidden_terms);
	cfg_strv_free(ws->metadata_keep, ws->nmetadata_keep);
	for (i = 0; i < ws->nallow_shared; i++) {
		free(ws->allow_shared[i].name);
		free(ws->allow_shared[i].reason);
	}
	free(ws->allow_shared);
	cfg_strv_free(ws->selftest, ws->nselftest);
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

	if ((rc = cfg_string(c, n, key, cfg_dir, &s)))
		return rc;
	len = strlen(s);
	while (len > 1 && s[len - 1] == '/')
		s[--len] = '\0';
	*out = s;
	return 0;
}

/* A mapping value that must be present. */
static int need(struct cfg *c, const nx_yaml_node *map, const char *key,
		const nx_yaml_node **out)
{
	const nx_yaml_node *n = nx_yaml_map_get(map, key);

	if (!n)
		return cfg_missing(c, map, key);
	*out = n;
	return 0;
}

static int parse_student(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const nx_yaml_node *v;
	int rc;

	if ((rc = cfg_want(c, n, "student", NX_YAML_MAPPING, "a mapping {model, outputs}")) ||
	    (rc = cfg_check_keys(c, n, "student", student_keys)))
		return rc;
	if (!(v = nx_yaml_map_get(n, "model")))
		return cfg_missing(c, n, "student.model");
	if ((rc = cfg_string(c, v, "student.model", cfg_path, &ws->student.model)))
		return rc;
	if ((v = nx_yaml_map_get(n, "outputs")))
		rc = cfg_string_list(c, v, "student.outputs", cfg_nonempty, true,
				     &ws->student.outputs, &ws->student.noutputs);
	return rc;
}

static int parse_source(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const nx_yaml_node *v;
	int rc;

	if ((rc = cfg_want(c, n, "source", NX_YAML_MAPPING, "a mapping {dir, files}")) ||
	    (rc = cfg_check_keys(c, n, "source", source_keys)))
		return rc;
	if (!(v = nx_yaml_map_get(n, "dir")))
		return cfg_missing(c, n, "source.dir");
	if ((rc = dir_string(c, v, "source.dir", &ws->source_dir)))
		return rc;
	if (!(v = nx_yaml_map_get(n, "files")))
		return cfg_missing(c, n, "source.files");
	return cfg_string_list(c, v, "source.files", cfg_path, true,
			       &ws->source_files, &ws->nsource_files);
}

static int parse_shared(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const char *key = "allow_shared_tensors";
	size_t i;
	int rc;

	if ((rc = cfg_want(c, n, key, NX_YAML_SEQUENCE, "a list of {name, reason}")))
		return rc;
	if (!n->nitems)
		return 0;
	if (!(ws->allow_shared = calloc(n->nitems, sizeof(*ws->allow_shared))))
		return cfg_oom(c);
	for (i = 0; i < n->nitems; i++) {
		const nx_yaml_node *item = n->items[i], *v;
		struct nx_shared_tensor *t = &ws->allow_shared[i];

		/* Count first so that a failure frees what was filled. */
		ws->nallow_shared = i + 1;
		if ((rc = cfg_want(c, item, key, NX_YAML_MAPPING, "a list of {name, reason}")) ||
		    (rc = cfg_check_keys(c, item, key, shared_keys)))
			return rc;
		if (!(v = nx_yaml_map_get(item, "name")))
			return cfg_missing(c, item, "allow_shared_tensors[].name");
		if ((rc = cfg_string(c, v, "allow_shared_tensors[].name", cfg_nonempty, &t->name)))
			return rc;
		if (!(v = nx_yaml_map_get(item, "reason")))
			return cfg_missing(c, item, "allow_shared_tensors[].reason");
		if ((rc = cfg_string(c, v, "allow_shared_tensors[].reason", cfg_nonempty,
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

	if ((rc = cfg_want(c, v, key, NX_YAML_SCALAR, "a size")))
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

	if ((rc = cfg_want(c, n, "limits", NX_YAML_MAPPING,
			   "a mapping {max_model_bytes, size_slack, max_leak_bytes, sandbox_memory}")) ||
	    (rc = cfg_check_keys(c, n, "limits", limits_keys)))
		return rc;
	if ((v = nx_yaml_map_get(n, "max_model_bytes")) &&
	    (rc = cfg_size(c, v, "limits.max_model_bytes", 1, &ws->max_model_bytes)))
		return rc;
	if ((v = nx_yaml_map_get(n, "max_leak_bytes"))) {
		nx_error e;

		if ((rc = cfg_want(c, v, "limits.max_leak_bytes", NX_YAML_SCALAR, "a size")))
			return rc;
		/* the leak budget can be lowered, never raised (docs/TRV.md) */
		if (nx_parse_size(&ws->max_leak_bytes, v->value, &e) || !ws->max_leak_bytes ||
		    ws->max_leak_bytes > NX_BUDGET_DEFAULT)
			return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
					    "limits.max_leak_bytes: '%s' is not a size from 1 byte to "
					    "64KiB (the leak budget can only be lowered)", v->value);
	}
	if ((v = nx_yaml_map_get(n, "size_slack")))
		rc = cfg_number(c, v, "limits.size_slack", 0.0, 1.0, &ws->size_slack);
	if (!rc && (v = nx_yaml_map_get(n, "sandbox_memory")))
		rc = cfg_size(c, v, "limits.sandbox_memory", NX_SANDBOX_MEMORY_MIN, &ws->sandbox_memory);
	return rc;
}

static int parse_export(struct cfg *c, const nx_yaml_node *n, nx_workspace *ws)
{
	const nx_yaml_node *v;
	int rc;

	if ((rc = cfg_want(c, n, "export", NX_YAML_MAPPING,
			   "a mapping {extract, strip_metadata, external_data}")) ||
	    (rc = cfg_check_keys(c, n, "export", export_keys)))
		return rc;
	if ((v = nx_yaml_map_get(n, "extract")) &&
	    (rc = cfg_bool(c, v, "export.extract", &ws->export_extract)))
		return rc;
	if ((v = nx_yaml_map_get(n, "strip_metadata")) &&
	    (rc = cfg_bool(c, v, "export.strip_metadata", &ws->export_strip_metadata)))
		return rc;
	if ((v = nx_yaml_map_get(n, "external_data"))) {
		int mode;

		if ((rc = cfg_enum(c, v, "export.external_data", nx_export_external_names, &mode)))
			return rc;
		ws->export_external = mode;
	}
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
		l = realloc(ws->forbidden_imports, (ws->nforbidden_imports + 1) * sizeof(*l));
		if (!l)
			return cfg_oom(c);
		ws->forbidden_imports = l;
		if ((rc = cfg_strdup(c, required_imports[i], &l[ws->nforbidden_imports])))
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
	if ((rc = cfg_strdup(c, "nexus_bundle_v1", &ws->bundle_id)) ||
	    (rc = cfg_strdup(c, "student", &ws->architecture)) ||
	    (rc = cfg_strdup(c, "README.md", &ws->readme)) ||
	    (rc = cfg_strdup(c, "LICENSE", &ws->license)))
		return rc;
	if (!(ws->forbidden_imports = calloc(2, sizeof(char *))))
		return cfg_oom(c);
	ws->nforbidden_imports = 2;
	for (i = 0; i < 2; i++)
		if ((rc = cfg_strdup(c, imports[i], &ws->forbidden_imports[i])))
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
	if ((rc = cfg_string(c, v, key, check, &s)))
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
	if ((rc = cfg_string_list(c, v, key, check, unique, &l, &n)))
		return rc;
	cfg_strv_free(*field, *nfield);
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
	if ((rc = cfg_check_keys(c, root, "the top level", top_keys)) ||
	    (rc = set_defaults(c, ws)))
		return rc;
	if ((rc = need(c, root, "student", &v)) || (rc = parse_student(c, v, ws)) ||
	    (rc = need(c, root, "tokenizer", &v)) ||
	    (rc = dir_string(c, v, "tokenizer", &ws->tokenizer)) ||
	    (rc = need(c, root, "runtime_config", &v)) ||
	    (rc = cfg_string(c, v, "runtime_config", cfg_path, &ws->runtime_config)) ||
	    (rc = need(c, root, "source", &v)) || (rc = parse_source(c, v, ws)))
		return rc;
	if ((rc = opt_string(c, root, "bundle_id", check_bundle_id, &ws->bundle_id)) ||
	    (rc = opt_string(c, root, "architecture", cfg_nonempty, &ws->architecture)) ||
	    (rc = opt_string(c, root, "readme", cfg_path, &ws->readme)) ||
	    (rc = opt_string(c, root, "license", cfg_path, &ws->license)) ||
	    (rc = opt_list(c, root, "teacher", cfg_path, true, &ws->teacher, &ws->nteacher)) ||
	    (rc = opt_list(c, root, "forbidden_imports", cfg_module, true,
			   &ws->forbidden_imports, &ws->nforbidden_imports)) ||
	    (rc = add_required_imports(c, ws)) ||
	    (rc = opt_list(c, root, "forbidden_terms", cfg_nonempty, true,
			   &ws->forbidden_terms, &ws->nforbidden_terms)) ||
	    (rc = opt_list(c, root, "metadata_keep", cfg_nonempty, true,
			   &ws->metadata_keep, &ws->nmetadata_keep)) ||
	    (rc = opt_list(c, root, "selftest", NULL, false, &ws->selftest, &ws->nselftest)))
		return rc;
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

	if ((rc = nx_yaml_parse(&root, buf, len, path, err)))
		return rc;
	if (!(ws = calloc(1, sizeof(*ws)))) {
		rc = cfg_oom(&c);
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

	if ((rc = cfg_read_file(&buf, &len, dirfd, name, err)))
		return rc;
	rc = nx_workspace_parse(out, buf, len, name, err);
	free(buf);
	return rc;
}
