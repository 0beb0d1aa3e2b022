/*
 * config_priv.h - typed accessors shared by config_workspace.c and
 * config_runtime.c.  Private to src/lib/.
 *
 * Every accessor takes the node it types (never NULL) and the dotted key it
 * came from (for messages), writes *out only on success and reports errors
 * through c->err with c->path and the node's line.
 */
#ifndef NEXUS_CONFIG_PRIV_H
#define NEXUS_CONFIG_PRIV_H

#include "nexus/config.h"
#include "nexus/yaml.h"

struct cfg {
	const char *path;
	nx_error *err;
	const nx_yaml_node *root;  /* the document (nexus.yaml: for all-missing-keys errors) */
};

/* Validates one string of a list or key; 0 or an error set on c. */
typedef int (*cfg_check_fn)(struct cfg *c, const nx_yaml_node *n, const char *key);

/* Every key of map must be in valid[] (NULL-terminated). */
int nx_cfg__check_keys(struct cfg *c, const nx_yaml_node *map, const char *where,
		   const char *const *valid);
/* A YAML syntax error (NX_EFORMAT) of a configuration file is a configuration
 * error (NX_ECONFIG, exit 2), as an unknown key is; other codes unchanged. */
int nx_cfg__syntax_is_config(int rc, nx_error *err);
/* An `inputs:` mapping {ids, mask, type_ids, positions} of input names
 * into names[] (unset roles stay NULL; the caller frees the strings). */
int nx_cfg__inputs(struct cfg *c, const nx_yaml_node *n, const char *key,
		   char *names[NX_INPUT_ROLES]);
int nx_cfg__missing(struct cfg *c, const nx_yaml_node *map, const char *key);
int nx_cfg__want(struct cfg *c, const nx_yaml_node *n, const char *key,
	     enum nx_yaml_type type, const char *what);

int nx_cfg__string(struct cfg *c, const nx_yaml_node *n, const char *key,
	       cfg_check_fn check, char **out);
int nx_cfg__string_list(struct cfg *c, const nx_yaml_node *n, const char *key,
		    cfg_check_fn check, bool unique, char ***out, size_t *nout);
int nx_cfg__bool(struct cfg *c, const nx_yaml_node *n, const char *key, bool *out);
int nx_cfg__int(struct cfg *c, const nx_yaml_node *n, const char *key, long min,
	    long max, int *out);
int nx_cfg__number(struct cfg *c, const nx_yaml_node *n, const char *key,
	       double min, double max, double *out);
/* Index of n's plain value in names[] (NULL-terminated). */
int nx_cfg__enum(struct cfg *c, const nx_yaml_node *n, const char *key,
	     const char *const *names, int *out);

/* Checks for nx_cfg__string / nx_cfg__string_list. */
int nx_cfg__nonempty(struct cfg *c, const nx_yaml_node *n, const char *key);
int nx_cfg__path(struct cfg *c, const nx_yaml_node *n, const char *key);
int nx_cfg__dir(struct cfg *c, const nx_yaml_node *n, const char *key);
int nx_cfg__module(struct cfg *c, const nx_yaml_node *n, const char *key);

int nx_cfg__oom(struct cfg *c);
int nx_cfg__strdup(struct cfg *c, const char *s, char **out);
void nx_cfg__strv_free(char **v, size_t n);

/* Read a whole config file under dirfd into a malloc'd buffer. */
int nx_cfg__read_file(char **out, size_t *len, int dirfd, const char *name,
		  nx_error *err);

#endif
