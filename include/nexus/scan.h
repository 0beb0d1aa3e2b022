/*
 * nexus/scan.h - the forbidden-term scanner of TRV-2 (`nexus verify`, check
 * `code`).
 *
 * Each scanner splits a file into tokens and searches every token for every
 * term, case-insensitively (ASCII case folding; terms are matched as byte
 * substrings).  For each (token, term) that matches it calls `fn` once with
 * where the token was found, so that the verifier can decide the severity:
 * code, strings, keys and values FAIL, comments and docstrings WARN,
 * dynamic imports FAIL.
 *
 * All buffers and terms are borrowed.  A scanner returns 0 when it finished,
 * fn's value when fn returned non-zero (scanning stops there), or a negative
 * NX_E* code with *err filled: NX_EFORMAT for input that does not tokenize
 * (an unterminated string or quoted scalar; err->line set), NX_ENOMEM.
 * path (may be NULL) is only used in messages and err->path.
 */
#ifndef NEXUS_SCAN_H
#define NEXUS_SCAN_H

#include <stddef.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of a token passed as `excerpt` (a NUL-terminated copy, newlines and
 * other control bytes turned into spaces). */
#define NX_SCAN_EXCERPT_MAX 80
/* Largest run of adjacent string literals joined for the search. */
#define NX_SCAN_CONCAT_MAX (4u << 20)
/* Largest Python file scanned (bytes). */
#define NX_SCAN_SRC_MAX (64u << 20)

enum nx_term_where {
	NX_TERM_CODE,       /* identifier, keyword argument, import name */
	NX_TERM_STRING,     /* string literal (adjacent literals joined), plain text */
	NX_TERM_COMMENT,
	NX_TERM_DOCSTRING,
	NX_TERM_KEY,        /* YAML/JSON key */
	NX_TERM_VALUE,      /* YAML/JSON scalar value */
	NX_TERM_DYNAMIC_IMPORT
	/* importlib.import_module / __import__ / exec / eval / compile called
	 * with anything but one plain string literal, or with a literal that
	 * contains a term; getattr(__import__(...), ...) always.  For these,
	 * `term` is the name of the function called (e.g. "__import__") unless
	 * a literal argument contained a term, then it is that term. */
};

typedef int (*nx_term_fn)(void *ctx, const char *term, enum nx_term_where where,
			  long line, long col, const char *excerpt);

/*
 * Python source.  line/col (1-based, col in bytes) are where the token
 * starts; for adjacent string literals that match only once joined, the
 * first literal of the run.  A term inside an f-string's replacement field
 * is found as NX_TERM_STRING (the whole f-string is one token), and each
 * field's expression is also scanned as code (NX_TERM_CODE, dynamic
 * imports), since Python runs it.
 */
int nx_scan_python(const char *buf, size_t len, const char *const *terms, size_t nterms,
		   nx_term_fn fn, void *ctx, const char *path, nx_error *err);

/*
 * YAML text (also JSON, which is YAML flow syntax): keys, values (plain,
 * single/double quoted over several lines, block scalars line by line,
 * flow collections) and comments ('#' at line start or after whitespace,
 * outside quotes).  A line-oriented lexer, not libyaml, because libyaml
 * drops comments.
 */
int nx_scan_yaml(const char *buf, size_t len, const char *const *terms, size_t nterms,
		 nx_term_fn fn, void *ctx, const char *path, nx_error *err);

/* Plain text (README, LICENSE): every occurrence is NX_TERM_STRING, the
 * excerpt is its line. */
int nx_scan_text(const char *buf, size_t len, const char *const *terms, size_t nterms,
		 nx_term_fn fn, void *ctx, const char *path, nx_error *err);

/* "code", "string", "comment", "docstring", "key", "value", "dynamic-import";
 * "unknown" for anything else.  Never NULL. */
const char *nx_term_where_name(enum nx_term_where w);

/* Does hay[0..n) contain term (ASCII case-insensitive)?  Offset of the
 * first match, or -1.  An empty term never matches.  The one term matcher:
 * export, verify and the scanners all use it, so a name that one of them
 * refuses the others refuse too (bytes after a NUL included; the folding
 * does not depend on the locale). */
long long nx_scan_find(const char *hay, size_t n, const char *term);

/* The forbidden terms every export and verify checks, before the user's:
 * "teacher", "distillation", "soft_targets". */
#define NX_SCAN_BUILTIN_TERMS 3
extern const char *const nx_scan_builtin_terms[NX_SCAN_BUILTIN_TERMS];

/*
 * Search one token tok[0..n) for every term and call fn once per term found,
 * with the given where/line/col and an excerpt of the token.  For other
 * modules that split their own input (ONNX names, metadata).  Returns 0 or
 * fn's non-zero value.
 */
int nx_scan_token(const char *tok, size_t n, const char *const *terms, size_t nterms,
		  enum nx_term_where where, long line, long col, nx_term_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
