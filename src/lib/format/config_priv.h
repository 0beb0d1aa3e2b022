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
};

/* Validates one string of a list or key; 0 or an error set on c. */
typedef int (*cfg_check_fn)(struct cfg *c, const nx_yaml_node *n, const char *key);

/* Every key of map must be in valid[] (NULL-terminated). */
int cfg_check_keys(struct cfg *c, const nx_yaml_node *map, const char *where,
		   const char *const *valid);
int cfg_missing(struct cfg *c, const nx_yaml_node *map, const char *key);
int cfg_want(struct cfg *c, const nx_yaml_node *n, const char *key,
	     enum nx_yaml_type type, const char *what);

int cfg_string(struct cfg *c, const nx_yaml_node *n, const char *key,
	       cfg_check_fn check, char **out);
int cfg_string_list(struct cfg *c, const nx_yaml_node *n, const char *key,
		    cfg_check_fn check, bool unique, char ***out, size_t *nout);
int cfg_bool(struct cfg *c, const nx_yaml_node *n, const char *key, bool *out);
int cfg_int(struct cfg *c, const nx_yaml_node *n, const char *key, long min,
	    long max, int *out);
int cfg_number(struct cfg *c, const nx_yaml_node *n, const char *key,
	       double min, double max, double *out);
/* Index of n's plain value in names[] (NULL-terminated). */
int cfg_enum(struct cfg *c, const nx_yaml_node *n, const char *key,
	     const char *const *names, int *out);

/* Checks for cfg_string / cfg_string_list. */
int cfg_nonempty(struct cfg *c, const nx_yaml_node *n, const char *key);
int cfg_path(struct cfg *c, const nx_yaml_node *n, const char *key);
int cfg_dir(struct cfg *c, const nx_yaml_node *n, const char *key);
int cfg_module(struct cfg *c, const nx_yaml_node *n, const char *key);

int cfg_oom(struct cfg *c);
int cfg_strdup(struct cfg *c, const char *s, char **out);
void cfg_strv_free(char **v, size_t n);

/* Read a whole config file under dirfd into a malloc'd buffer. */
int cfg_read_file(char **out, size_t *len, int dirfd, const char *name,
		  nx_error *err);

#endif
