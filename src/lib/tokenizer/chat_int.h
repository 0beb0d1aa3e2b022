/*
 * chat_int.h - what the chat template files share.  Private to libnexus.
 *
 * Hand-written because Debian ships no Jinja engine for C (nor does any
 * well-kept C library implement Jinja's whitespace rules exactly), and a
 * prompt rendered one byte off changes the model's answer; the test suite
 * checks every construct against python3-jinja2 byte for byte.
 *
 * chat_template.c: template text -> tokens (with Jinja's trim_blocks /
 * lstrip_blocks / {%- -%} rules) -> tree; chat_render.c walks the tree;
 * chat_value.c holds Python's semantics for values (str(), json.dumps,
 * strip, ...).  Values are jansson values; NULL is Jinja's Undefined.
 *
 * Supported filters: trim, length, count, tojson, string, first, last,
 * join, default (d), items, list, reverse, replace.  Tests: defined,
 * undefined, none, string, number, integer, boolean, true, false, mapping,
 * sequence, iterable, odd, even.  Globals: raise_exception, namespace,
 * range.  Methods: strip lstrip rstrip startswith endswith replace split
 * (strings), items keys values get (dicts).
 */
#ifndef NEXUS_CHAT_INT_H
#define NEXUS_CHAT_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "nexus/chat_template.h"
#include "util/array_int.h"

enum chat_expr_kind {
	CE_LIT, CE_NAME, CE_ATTR, CE_INDEX, CE_SLICE, CE_LIST, CE_DICT, CE_NOT, CE_NEG,
	CE_BIN, CE_AND, CE_OR, CE_COND, CE_FILTER, CE_TEST, CE_CALL, CE_METHOD
};
enum chat_binop {
	CB_ADD, CB_SUB, CB_MUL, CB_FLOORDIV, CB_MOD, CB_CONCAT,
	CB_EQ, CB_NE, CB_LT, CB_LE, CB_GT, CB_GE, CB_IN, CB_NOTIN
};

struct chat_expr {
	int kind, op, line;
	json_t *lit;               /* CE_LIT */
	char *name;                /* name, attribute, filter, test, function, method */
	struct chat_expr *a, *b, *c; /* operands; CE_SLICE: a[b:c] with step in args[0] */
	struct chat_expr **args;   /* call / filter / test arguments, list items, dict k,v,k,v */
	char **kw;                 /* keyword of each argument, or NULL */
	size_t nargs, cap_args, cap_kw;
	bool negate;               /* CE_TEST: `is not` */
};

enum chat_node_kind { CN_TEXT, CN_OUT, CN_IF, CN_FOR, CN_SET, CN_BREAK, CN_CONTINUE };

struct chat_body {
	struct chat_node **v;
	size_t n, cap;
};

struct chat_node {
	int kind, line;
	char *text;                /* CN_TEXT */
	size_t len;
	struct chat_expr *e;       /* CN_OUT, CN_IF condition, CN_FOR iterable, CN_SET value */
	struct chat_expr *filter;  /* CN_FOR `if` */
	char *vars[4];             /* CN_FOR targets; CN_SET: vars[0] name, vars[1] attribute */
	size_t nvars;
	struct chat_body body, orelse; /* CN_IF: elif is an CN_IF alone in orelse */
};

struct nx_chat_template {
	struct chat_body root;
	json_t *globals;           /* bos_token, ... from tokenizer_config.json */
	char *path;
};

void nx_chat__body_free(struct chat_body *b);

/* chat_value.c: a growing string capped at NX_CHAT_OUTPUT_MAX (NX_ELIMIT past it) */
struct chat_sb {
	char *p;
	size_t n, cap;
};
int nx_chat__sb_put(struct chat_sb *b, const char *s, size_t len);

/* chat_value.c: Python's behaviour on the values */
bool nx_chat__truthy(const json_t *v);
bool nx_chat__equal(const json_t *a, const json_t *b);
size_t nx_chat__utf8_len(const char *s, size_t n);
size_t nx_chat__utf8_offset(const char *s, size_t n, size_t cp);
bool nx_chat__is_space(const char *s, size_t n, size_t i, size_t *clen);
size_t nx_chat__space_before(const char *s, size_t n, size_t end);
size_t nx_chat__space_after(const char *s, size_t n, size_t start);
int nx_chat__str(const json_t *v, char **out, size_t *len, const char **why);
int nx_chat__tojson(const json_t *v, int indent, char **out, size_t *len, const char **why);

#endif
