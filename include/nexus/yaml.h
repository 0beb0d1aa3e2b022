/*
 * nexus/yaml.h - strict YAML: one document parsed into a small tree.
 *
 * Nexus configuration files are small and written by people, so the parser
 * refuses every YAML feature that makes a file mean something other than
 * what it looks like: anchors, aliases, merge keys (`<<`), tags (`!!str`,
 * `!foo`), %TAG directives, duplicate keys, non-scalar keys and more than one
 * document.  Syntax is checked by libyaml (the event API); this module adds
 * the policy and the caps below.
 *
 * Errors: NX_EFORMAT for a syntax error, NUL bytes or invalid UTF-8;
 * NX_ECONFIG for a refused feature; NX_ELIMIT when a cap is exceeded;
 * NX_ENOMEM.  err->path is the `path` given, err->line the 1-based line.
 */
#ifndef NEXUS_YAML_H
#define NEXUS_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_YAML_INPUT_MAX (1024 * 1024) /* bytes of one file */
#define NX_YAML_DEPTH_MAX 32            /* nested collections */
#define NX_YAML_NODES_MAX 16384         /* nodes of one document; keeps the
                                          * quadratic duplicate-key check cheap */

enum nx_yaml_type { NX_YAML_SCALAR, NX_YAML_SEQUENCE, NX_YAML_MAPPING };

/* How a scalar was written: `123` (plain) is not the same as `"123"`. */
enum nx_yaml_style {
	NX_YAML_PLAIN,
	NX_YAML_SINGLE_QUOTED,
	NX_YAML_DOUBLE_QUOTED,
	NX_YAML_LITERAL, /* | block */
	NX_YAML_FOLDED   /* > block */
};

typedef struct nx_yaml_node nx_yaml_node;

struct nx_yaml_pair {
	nx_yaml_node *key;   /* always a scalar */
	nx_yaml_node *value;
};

struct nx_yaml_node {
	enum nx_yaml_type type;
	long line;   /* 1-based */
	long column; /* 1-based */
	/* NX_YAML_SCALAR: NUL-terminated text (never contains a NUL byte). */
	char *value;
	size_t len;
	enum nx_yaml_style style;
	/* NX_YAML_SEQUENCE: items in order. */
	nx_yaml_node **items;
	size_t nitems;
	/* NX_YAML_MAPPING: pairs in file order, keys unique. */
	struct nx_yaml_pair *pairs;
	size_t npairs;
};

/*
 * Parse buf[0..len) (need not be NUL-terminated; borrowed) into a tree that
 * *out owns; free it with nx_yaml_free().  A stream with no document at all
 * (empty, or only comments) gives an empty mapping at line 1.  path is used
 * only in errors.  On error *out is untouched.
 */
int nx_yaml_parse(nx_yaml_node **out, const char *buf, size_t len,
		  const char *path, nx_error *err);

/* Free a tree from nx_yaml_parse(). Accepts NULL. */
void nx_yaml_free(nx_yaml_node *node);

/* Value of `key` in a mapping node, or NULL if absent or not a mapping. */
const nx_yaml_node *nx_yaml_map_get(const nx_yaml_node *map, const char *key);

/* "scalar", "sequence" or "mapping", for messages. */
const char *nx_yaml_type_name(enum nx_yaml_type type);

/* True if node is a plain (unquoted) scalar equal to s. */
bool nx_yaml_is_plain(const nx_yaml_node *node, const char *s);

#ifdef __cplusplus
}
#endif
#endif
